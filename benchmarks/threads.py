"""Seconds per step of `fit` with 1 torch thread vs all cores, on a small and a large image, quiet and loaded.

Each run is the denoising config (skip net width 64, depth 5) for a fixed number of steps in its own process,
`OMP_NUM_THREADS` set; "loaded" starts `--load` busy-looping processes beside it (another job sharing the
cores). The figure is the fit time of metrics.json (`seconds`: imports and start-up excluded) per step.

    python benchmarks/threads.py --sizes 64 256 --steps 200 60 --load 1
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


def seconds_per_step(crop: int, steps: int, threads: int, root: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "dip_lightning", "fit", "--config", "denoise.yaml", f"--data.crop={crop}",
               "--model.strategy.stopping=fixed", f"--trainer.max_steps={steps}", "--trainer.logger=false",
               "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
               f"--trainer.default_root_dir={root}"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    run_dir = Path(out.strip().splitlines()[-1].split("outputs: ", 1)[1])
    return json.loads((run_dir / "metrics.json").read_text())["seconds"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="crop sides (pixels)")
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 60], help="steps per run, one per size")
    parser.add_argument("--load", type=int, default=1, help="busy processes for the loaded runs (0: quiet only)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting (the fastest is reported)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, load average at start {os.getloadavg()[0]:.2f}")
    print("| image | steps | load | 1 thread ms/step | all cores ms/step | 1 thread / all |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for loaded in ([False, True] if args.load else [False]):
            spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load if loaded else 0)]
            for spinner in spinners:
                spinner.start()
            try:
                for crop, steps in zip(args.sizes, args.steps):
                    times = {t: min(seconds_per_step(crop, steps, t, Path(tmp)) for _ in range(args.repeats))
                             for t in (1, cores)}
                    print(f"| {crop}x{crop} | {steps} | {'+' + str(args.load) + ' busy' if loaded else 'quiet'} | "
                          f"{1000 * times[1]:.1f} | {1000 * times[cores]:.1f} | {times[1] / times[cores]:.2f} |",
                          flush=True)
            finally:
                for spinner in spinners:
                    spinner.terminate()


if __name__ == "__main__":
    main()
