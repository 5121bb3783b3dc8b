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


README = (CONFIGS.parent / "README.md").read_text()


@pytest.mark.parametrize("config", FIT_CONFIGS)
def test_shipped_config_runs_and_the_readme_explains_what_it_writes(capsys, tmp_path, config):
    # samplers: two samples in 4 steps, kept whatever a tiny net's first steps do (no band guard)
    schedule = (["--model.strategy.burn_in=2", "--model.strategy.thin=1", "--model.strategy.max_mse_ratio=.inf"]
                if "sgld" in config else [])
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--trainer.max_steps=4", *schedule, config=config)
    assert metrics["steps"] == 4
    assert math.isfinite(metrics["psnr_selected"])
    assert not [key for key in metrics if f"`{key}`" not in README], "metrics.json keys the README does not explain"
    assert not [path.name for path in run_dir.iterdir() if f"`{path.name}" not in README], "files it does not explain"
