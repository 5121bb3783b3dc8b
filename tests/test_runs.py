"""Whole runs: Ctrl+C and resuming into the same run directory, checkpoints, the W&B offline record, CUDA."""

import json
import signal

import pytest
import torch

from conftest import TINY, fit_tiny, run_cli
from dip_lightning.images import load_image

STOPPING = {
    "fixed": ["--model.strategy.stopping=fixed", "--trainer.max_steps=40"],
    # ES-WMV stops by itself here (window 5, patience 10), well before max_steps
    "wmv": ["--model.strategy.stopping=wmv", "--model.strategy.window=5", "--model.strategy.patience=10",
            "--trainer.max_steps=300"],
}
SAME = ("steps", "psnr_final", "psnr_ema_final", "psnr_best", "step_best", "psnr_selected", "step_selected")


def _fit(capsys, root, *args):
    return run_cli(capsys, "fit", "--config", "denoise", *TINY, f"--trainer.default_root_dir={root}", *args)


@pytest.mark.parametrize("stopping", STOPPING)
def test_ctrl_c_stops_after_the_step_and_a_resume_continues_the_same_run_exactly(capsys, tmp_path, recwarn,
                                                                                  stopping):
    args = STOPPING[stopping]
    _, straight = fit_tiny(capsys, tmp_path / "straight", *args)
    assert straight["steps"] == 40 if stopping == "fixed" else 23 < straight["steps"] < 300  # wmv: its own stop
    run_dir, out, err, code = _fit(capsys, tmp_path / "runs", *args, "--trainer.callbacks+=conftest.CtrlCAt",
                                   "--trainer.callbacks.step=23")
    assert code == 130 and run_dir is not None, err
    assert "stopping after this step" in err and f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}" in out
    partial = json.loads((run_dir / "metrics.json").read_text())
    assert partial["interrupted"] is True and partial["steps"] == 23
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["last.ckpt"]
    saved_seconds = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]["RunArtifacts"]

    resumed_dir, out, err, code = _fit(capsys, tmp_path / "elsewhere", *args,
                                       f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert code == 0 and resumed_dir == run_dir, err  # the same run directory, not a new one
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message) or "resuming" in str(w.message)]
    assert not (tmp_path / "elsewhere").exists() and len(list((tmp_path / "runs").iterdir())) == 1
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert "interrupted" not in resumed
    assert {key: resumed[key] for key in SAME} == {key: straight[key] for key in SAME}
    assert resumed["seconds"] > saved_seconds["seconds"] > 0  # both parts counted
    assert "ckpt_path: null" in (run_dir / "config.yaml").read_text()  # rerunning the config starts afresh


def test_a_second_ctrl_c_stops_at_once_and_still_keeps_results_and_one_checkpoint(capsys, tmp_path):
    try:
        run_dir, out, err, code = _fit(capsys, tmp_path, "--trainer.max_steps=40",
                                       "--trainer.callbacks+=conftest.CtrlCAt", "--trainer.callbacks.step=15",
                                       "--trainer.callbacks.times=2")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl+C after one
    assert code == 130 and run_dir is not None and "interrupted" in out
    partial = json.loads((run_dir / "metrics.json").read_text())
    assert partial["interrupted"] is True and partial["steps"] <= 15
    assert (run_dir / "restored.png").is_file() and (run_dir / "summary.png").is_file()
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["last.ckpt"]
    _, resumed = fit_tiny(capsys, tmp_path, "--trainer.max_steps=40",
                          f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert resumed["steps"] == 40 and not resumed.get("interrupted")


def test_resuming_from_a_periodic_checkpoint_reproduces_the_uninterrupted_run(capsys, tmp_path):
    args = ["--trainer.max_steps=40", "--model.strategy.stopping=wmv", "--model.strategy.window=5",
            "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps=20",
            "--trainer.callbacks.save_top_k=-1"]
    straight_dir, straight = fit_tiny(capsys, tmp_path / "a", *args)
    (checkpoint,) = straight_dir.rglob("*step=20.ckpt")
    _, resumed = fit_tiny(capsys, tmp_path / "b", *args, f"--ckpt_path={checkpoint}")
    for key in SAME:
        assert resumed[key] == straight[key], key


def test_checkpoints_hold_only_what_a_resume_needs(capsys, tmp_path):
    run_dir, _ = fit_tiny(capsys, tmp_path, "--model.strategy.stopping=wmv", "--model.strategy.window=5",
                          "--trainer.max_steps=30", "--trainer.callbacks+=RunCheckpoint",
                          f"--trainer.callbacks.dirpath={tmp_path / 'every10'}",
                          "--trainer.callbacks.every_n_train_steps=10")
    assert [p.name for p in (tmp_path / "every10").iterdir()] == ["last.ckpt"]  # one file, however many saves
    checkpoint = torch.load(tmp_path / "every10" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 30
    tensors = [t for t in checkpoint["state_dict"].values()]
    for state in checkpoint["callbacks"].values():
        tensors += [t for t in state.values() if isinstance(t, torch.Tensor)]
    # no tensor drags a larger storage along (a crop view would carry the whole 512x512 image)
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in tensors)
    payload = sum(t.numel() * t.element_size() for t in tensors)
    payload += sum(t.numel() * t.element_size() for s in checkpoint["optimizer_states"]
                   for p in s["state"].values() for t in p.values() if isinstance(t, torch.Tensor))
    assert (tmp_path / "every10" / "last.ckpt").stat().st_size < 1.1 * payload + 100_000


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
    assert "anonymous setting" not in out + err and "litlogger" not in out + err and "LeafSpec" not in out + err
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    record = next(offline_run.glob("run-*.wandb")).read_bytes()
    for key in (b"psnr/ground_truth", b"psnr/observation", b"psnr/ema", b"final/psnr_selected"):
        assert key in record, key
    assert b'"width"' in record and b'"depth"' in record  # the resolved config, net included
    (logged,) = (offline_run / "files" / "media" / "images").rglob("restored_*.png")
    assert torch.equal(load_image(logged), load_image(run_dir / "restored.png"))
    assert list((offline_run / "files" / "media" / "images").rglob("summary_*.png"))

    resumed_dir, out, err, code = run_cli(capsys, "fit", "--config", "denoise", *args, "--trainer.max_steps=30",
                                          f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert code == 0 and resumed_dir == run_dir, err
    records = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(records) == 2 and len({path.name.rsplit("-", 1)[1] for path in records}) == 1  # one W&B run id


@pytest.mark.cuda
def test_cuda_run_matches_the_cpu_pipeline(capsys, tmp_path):
    _, gpu = fit_tiny(capsys, tmp_path, "--trainer.accelerator=gpu", "--trainer.devices=1")
    _, cpu = fit_tiny(capsys, tmp_path, "--trainer.accelerator=cpu")
    assert gpu["steps"] == cpu["steps"] == 30
    assert gpu["psnr_observation_input"] == pytest.approx(cpu["psnr_observation_input"], abs=1e-4)
    assert abs(gpu["psnr_best"] - cpu["psnr_best"]) < 1.0
