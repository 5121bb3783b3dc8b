"""Every shipped `fit` config runs through the real CLI (at a tiny size): a renamed option or a value a
task refuses shows up here, not in a user's first run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import run_cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FIT_CONFIGS = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml")
                     if not p.name.startswith("gp_"))  # gp_* configs are read by `gp` (tests/test_gp_cli.py)
TINY_RUN = ["--trainer.max_steps=4", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]


def tiny(config: str) -> list[str]:
    """Overrides that shrink a config's problem, network and schedule to a few seconds of CPU."""
    size = ["--data.length=64"] if "signal1d" in config else ["--data.crop=32"]
    schedule = ["--model.strategy.burn_in=2", "--model.strategy.thin=1"] if "sgld" in config else []
    return [*size, "--model.net.width=8", "--model.net.depth=2", *schedule, *TINY_RUN]


def test_every_fit_config_is_found():
    assert {"denoise.yaml", "sgld_inpaint.yaml", "signal1d.yaml", "paper/sgld_denoise.yaml"} <= set(FIT_CONFIGS)


@pytest.mark.parametrize("config", FIT_CONFIGS)
def test_shipped_config_runs(capsys, tmp_path, config):
    run_dir, out, err, code = run_cli(capsys, "fit", "--config", config, *tiny(config),
                                      f"--trainer.default_root_dir={tmp_path}")
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4
    assert math.isfinite(metrics["psnr_selected"])
