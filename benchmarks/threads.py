"""Seconds per step of `fit` with 1 torch thread against all cores, by image size, quiet and loaded.

Each run is configs/denoise.yaml (skip net width 32, depth 5, the whole astronaut photo resized to
`--sizes` pixels) for a fixed number of steps in its own process, with OMP_NUM_THREADS set. "Loaded"
starts `--load` busy-looping processes beside it (another job sharing the cores). The figure is the fit
time of metrics.json (`seconds`: imports and start-up excluded) per step, the fastest of `--repeats`;
the load average (1 minute) at each row's start says how quiet the machine really was.

    python benchmarks/threads.py --sizes 64 128 256 --steps 300 150 40 --load 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _spin() -> None:
    while True:
        pass


def seconds_per_step(size: int, steps: int, threads: int, root: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "dip_lightning", "fit", "--config", "denoise.yaml", f"--data.size={size}",
               "--model.strategy.stopping=fixed", f"--trainer.max_steps={steps}", "--trainer.logger=false",
               "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
               f"--trainer.default_root_dir={root}"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    run_dir = Path(out.strip().splitlines()[-1].split("outputs: ", 1)[1])
    return json.loads((run_dir / "metrics.json").read_text())["seconds"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="image sides (pixels)")
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 150, 40], help="steps per run, one per size")
    parser.add_argument("--load", type=int, default=1, help="busy processes for the loaded runs (0: quiet only)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting (the fastest is reported)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; ms/step, fastest of {args.repeats}")
    print("| image | steps | extra load | load average | 1 thread | all cores | 1 thread / all cores |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for loaded in ([False, True] if args.load else [False]):
            spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load if loaded else 0)]
            for spinner in spinners:
                spinner.start()
            try:
                for size, steps in zip(args.sizes, args.steps):
                    load = os.getloadavg()[0]
                    times = {t: min(seconds_per_step(size, steps, t, Path(tmp)) for _ in range(args.repeats))
                             for t in (1, cores)}
                    extra = f"{args.load} busy process" if loaded else "none"
                    print(f"| {size}x{size} | {steps} | {extra} | {load:.1f} | {1000 * times[1]:.1f} | "
                          f"{1000 * times[cores]:.1f} | {times[1] / times[cores]:.2f} |", flush=True)
            finally:
                for spinner in spinners:
                    spinner.terminate()


if __name__ == "__main__":
    main()
