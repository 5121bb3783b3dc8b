"""How long each shipped config takes on this machine: seconds per step of a short run, and the whole run's
length (the config's max_steps) at that pace.

Each config runs `--steps` steps in its own process with the CLI's thread default and no logger; the
figure is metrics.json's fit time per step (imports and start-up excluded, so the estimate for a whole run
is that pace times max_steps, plus 10-25 s of start-up and W&B). ES-WMV configs may stop earlier. A short
run of a sampler stays in its burn-in; sampling (every `thin`-th step) adds little to a step's cost.

    python benchmarks/config_times.py --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def seconds_per_step(config: Path, steps: int, root: Path) -> float:
    strategy = yaml.safe_load(config.read_text())["model"]["init_args"].get("strategy", {})
    # a sampler's short run must take posterior samples: its burn-in ends halfway (sample steps are timed too),
    # and its band guard checks as shipped but cannot stop a net that has not fit yet
    burn_in = ([f"--model.strategy.burn_in={steps // 2}", "--model.strategy.max_mse_ratio=1e9"]
               if "burn_in" in strategy.get("init_args", {}) else [])
    command = [sys.executable, "-m", "dip_lightning", "fit", "--config", str(config), f"--trainer.max_steps={steps}",
               *burn_in,
               "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
               f"--trainer.default_root_dir={root}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    run_dir = Path(out.strip().splitlines()[-1].split("outputs: ", 1)[1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["seconds"] / metrics["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps of each short run")
    parser.add_argument("configs", nargs="*", help="config names (default: every config in configs/)")
    args = parser.parse_args()
    names = args.configs or sorted(p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("gp_"))
    print(f"load average at start {os.getloadavg()[0]:.1f}")
    print("| config | ms/step | max_steps | whole run at that pace |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            config = CONFIGS / name
            pace = seconds_per_step(config, args.steps, Path(tmp))
            max_steps = yaml.safe_load(config.read_text())["trainer"]["max_steps"]
            print(f"| {name} | {1000 * pace:.0f} | {max_steps} | {pace * max_steps / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    main()
