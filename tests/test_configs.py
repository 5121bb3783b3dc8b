"""Every shipped `fit` config runs through the real CLI (at a tiny size): a renamed option or a value a
task refuses shows up here, not in a user's first run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import fit_tiny

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FIT_CONFIGS = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml")
                     if not p.name.startswith("gp_"))  # gp_* configs are read by `gp` (tests/test_gp_cli.py)


def test_every_fit_config_is_found():
    assert {"denoise.yaml", "sgld_inpaint.yaml", "signal1d.yaml", "paper/sgld_denoise.yaml"} <= set(FIT_CONFIGS)


@pytest.mark.parametrize("config", FIT_CONFIGS)
def test_shipped_config_runs(capsys, tmp_path, config):
    schedule = ["--model.strategy.burn_in=2", "--model.strategy.thin=1"] if "sgld" in config else []
    _, metrics = fit_tiny(capsys, tmp_path, "--trainer.max_steps=4", *schedule, config=config)
    assert metrics["steps"] == 4
    assert math.isfinite(metrics["psnr_selected"])
