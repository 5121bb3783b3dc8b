"""A task written outside the package (tests/external_task/colorize.py) runs from YAML by class path,
through the real CLI, with both strategies: adding a task needs no edit of dip_lightning."""

import json
from pathlib import Path

from conftest import TINY, run_cli

from dip_lightning.images import load_image

EXTERNAL = Path(__file__).parent / "external_task"
CONFIG = str(EXTERNAL / "colorize.yaml")


def test_external_task_runs_under_sgd(capsys, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(EXTERNAL))  # as PYTHONPATH=tests/external_task would
    run_dir, _, err, code = run_cli(capsys, "fit", "--config", CONFIG, *TINY, f"--trainer.default_root_dir={tmp_path}")
    assert code == 0, err
    assert run_dir.name.endswith("colorize-sgd")
    assert load_image(run_dir / "observation.png").shape == (1, 32, 32)  # grey in ...
    assert load_image(run_dir / "restored.png").shape == (3, 32, 32)  # ... colour out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["psnr_selected"] > 5


def test_external_task_runs_under_sgld_with_a_posterior(capsys, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(EXTERNAL))
    run_dir, _, err, code = run_cli(capsys, "fit", "--config", CONFIG, *TINY, f"--trainer.default_root_dir={tmp_path}",
                                    "--model.strategy=dip_lightning.strategies.SGLD", "--model.strategy.burn_in=10",
                                    "--model.strategy.thin=2",
                                    "--model.strategy.max_mse_ratio=.inf")  # 30 tiny steps do not reach sigma²
    assert code == 0, err
    assert run_dir.name.endswith("colorize-sgld")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["samples"] == 10 and "psnr_posterior_mean" in metrics
    assert load_image(run_dir / "posterior_mean.png").shape == (3, 32, 32) and (run_dir / "uncertainty.png").is_file()
