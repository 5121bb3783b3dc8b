"""Whole runs: interruption and resumption, the W&B offline record, CUDA."""

import json
import signal

import pytest
import torch

from conftest import TINY, fit_tiny, run_cli
from dip_lightning.images import load_image


def test_interrupted_run_keeps_its_results_and_resumes_to_the_same_end(capsys, tmp_path):
    args = ["fit", "--config", "denoise", *TINY, "--trainer.max_steps=40", "--model.strategy.stopping=fixed"]
    try:
        run_dir, out, _, code = run_cli(capsys, *args, f"--trainer.default_root_dir={tmp_path / 'a'}",
                                        "--trainer.callbacks+=conftest.InterruptAt", "--trainer.callbacks.step=15")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl+C after one
    assert code == 1 and run_dir is not None and "interrupted" in out
    partial = json.loads((run_dir / "metrics.json").read_text())
    assert partial["interrupted"] is True and partial["steps"] == 15
    assert (run_dir / "restored.png").is_file()
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()  # saved at the interruption
    resumed_dir, resumed = fit_tiny(capsys, tmp_path / "b", *args[3:], f"--ckpt_path={checkpoint}")
    assert resumed["steps"] == 40 and not resumed.get("interrupted")


def test_resuming_from_a_periodic_checkpoint_reproduces_the_uninterrupted_run(capsys, tmp_path):
    args = ["--trainer.max_steps=40", "--model.strategy.stopping=wmv", "--model.strategy.window=5",
            "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps=20",
            "--trainer.callbacks.save_top_k=-1"]
    straight_dir, straight = fit_tiny(capsys, tmp_path / "a", *args)
    (checkpoint,) = straight_dir.rglob("*step=20.ckpt")
    _, resumed = fit_tiny(capsys, tmp_path / "b", *args, f"--ckpt_path={checkpoint}")
    for key in ("psnr_final", "psnr_best", "step_best", "psnr_selected", "step_selected", "steps"):
        assert resumed[key] == straight[key], key

def test_wandb_runs_offline_without_an_account_and_records_curves_config_and_images(capsys, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no account
    for variable in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(variable, raising=False)
    args = [a for a in TINY if not a.startswith("--trainer.logger")]
    run_dir, out, err, code = run_cli(capsys, "fit", "--config", "denoise", *args, "--trainer.max_steps=20",
                                      "--trainer.log_every_n_steps=5", f"--trainer.default_root_dir={tmp_path}")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"outputs: {run_dir}"
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    record = next(offline_run.glob("run-*.wandb")).read_bytes()
    for key in (b"psnr/ground_truth", b"psnr/observation", b"psnr/ema", b"final/psnr_selected"):
        assert key in record, key
    assert b'"width"' in record and b'"depth"' in record  # the resolved config, net included
    (logged,) = (offline_run / "files" / "media" / "images").rglob("restored_*.png")
    assert torch.equal(load_image(logged), load_image(run_dir / "restored.png"))


@pytest.mark.cuda
def test_cuda_run_matches_the_cpu_pipeline(capsys, tmp_path):
    _, gpu = fit_tiny(capsys, tmp_path, "--trainer.accelerator=gpu", "--trainer.devices=1")
    _, cpu = fit_tiny(capsys, tmp_path, "--trainer.accelerator=cpu")
    assert gpu["steps"] == cpu["steps"] == 30
    assert gpu["psnr_observation_input"] == pytest.approx(cpu["psnr_observation_input"], abs=1e-4)
    assert abs(gpu["psnr_best"] - cpu["psnr_best"]) < 1.0
