"""Whole runs: Ctrl+C and resuming into the same run directory, checkpoints, the W&B offline record, CUDA."""

import json
import os
import shutil
import signal

import pytest
import torch

from conftest import TINY, file_hashes, fit_tiny, run_cli
from dip_lightning.cli import main
from dip_lightning.images import load_image
from dip_lightning.resume import CONFIG_KEY

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
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert "stopping after this step" in err
    assert f"resume with: python -m dip_lightning fit --ckpt_path={checkpoint}\n" in out  # the whole command
    partial = json.loads((run_dir / "metrics.json").read_text())
    assert partial["interrupted"] is True and partial["steps"] == 23
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["last.ckpt"]
    saved_seconds = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]["RunArtifacts"]

    # the checkpoint alone: the run's own config (the tiny net, the crop, the stopping rule) comes with it
    resumed_dir, out, err, code = run_cli(capsys, "fit", f"--ckpt_path={checkpoint}",
                                          f"--trainer.default_root_dir={tmp_path / 'elsewhere'}")
    assert code == 0 and resumed_dir == run_dir, err  # the same run directory, not a new one
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message) or "resuming" in str(w.message)]
    assert not (tmp_path / "elsewhere").exists() and len(list((tmp_path / "runs").iterdir())) == 1
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert "interrupted" not in resumed
    assert {key: resumed[key] for key in SAME} == {key: straight[key] for key in SAME}
    assert resumed["seconds"] > saved_seconds["seconds"] > 0  # both parts counted
    assert "ckpt_path: null" in (run_dir / "config.yaml").read_text()  # rerunning the config starts afresh
    assert not (run_dir / ".resume").exists()  # the resumed part's files were moved into place


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
    # the run's config carries its callbacks: this resume leaves out the test's Ctrl+C (it stopped inside step 15)
    _, resumed = fit_tiny(capsys, tmp_path, "--trainer.max_steps=40", "--trainer.callbacks=[]",
                          f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert resumed["steps"] == 40 and not resumed.get("interrupted")


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A tiny run (the whole photo's 32x32 centre crop, no resize) stopped by Ctrl+C at step 10: its run directory."""
    root = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", "denoise", *TINY, "--data.size=null", f"--trainer.default_root_dir={root}",
              "--trainer.callbacks+=conftest.CtrlCAt", "--trainer.callbacks.step=10"])
    assert stop.value.code == 130
    (run_dir,) = root.iterdir()
    return run_dir


RESUME_MISTAKES = {
    # the first part's options left out: the config's own size and network come back with it
    "config alone": (["--config", "denoise.yaml"],
                     ["--data.size=128 (the run: null)", "--model.net.width=32 (the run: 8)",
                      "--model.net.depth=5 (the run: 2)"]),
    "crop": (["--data.crop=16"], ["--data.crop=16 (the run: 32)"]),
    "image": (["--data.image=camera"], ["--data.image=camera (the run: astronaut)"]),
    "task": (["--model=Inpaint"], ["--model=dip_lightning.tasks.Inpaint (the run: dip_lightning.tasks.Denoise)"]),
    "strategy": (["--model.strategy=SGLD"], ["--model.strategy=dip_lightning.strategies.SGLD"]),
    "sigma": (["--model.sigma=50"], ["--model.sigma=50.0 (the run: 25.0)"]),
    "chains": (["--model.strategy.chains=2"], ["--model.strategy.chains=2 (the run: 1)"]),
    "processes": (["--trainer.accelerator=cpu", "--trainer.devices=2"], ["--trainer.devices=2 (the run: 1)"]),
    "seed": (["--seed_everything=1"], ["--seed_everything=1 (the run: 0)"]),
}


@pytest.mark.parametrize("mistake", RESUME_MISTAKES)
def test_a_resume_that_would_change_the_problem_is_refused_in_one_line_and_changes_nothing(
        capsys, tmp_path, interrupted_run, mistake):
    args, named = RESUME_MISTAKES[mistake]
    before = file_hashes(interrupted_run)
    run_dir, out, err, code = run_cli(capsys, "fit", *args, f"--trainer.default_root_dir={tmp_path}",
                                      f"--ckpt_path={interrupted_run / 'checkpoints' / 'last.ckpt'}")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and run_dir is None and len(errors) == 1, err
    assert f"resuming {interrupted_run} takes its own config" in errors[0] and "Traceback" not in err
    for change in named:
        assert change in errors[0], (change, errors[0])
    assert file_hashes(interrupted_run) == before and not any(tmp_path.iterdir())


def test_a_resume_that_breaks_down_leaves_the_run_as_it_was_and_a_copied_checkpoint_leaves_no_directory(
        capsys, tmp_path, interrupted_run):
    before = file_hashes(interrupted_run)
    checkpoint = interrupted_run / "checkpoints" / "last.ckpt"
    with pytest.raises(RuntimeError, match="broken at step 20"):  # a fault of the code, not of the input: raised
        run_cli(capsys, "fit", f"--ckpt_path={checkpoint}", "--trainer.callbacks+=conftest.RaiseAt",
                "--trainer.callbacks.step=20")
    assert file_hashes(interrupted_run) == before  # the steps it made are not written over the run's files

    # a copied checkpoint whose config no longer matches its weights: refused once loading fails, nothing left
    saved = torch.load(checkpoint, weights_only=False)
    saved[CONFIG_KEY] = saved[CONFIG_KEY].replace("width: 8", "width: 16")
    torch.save(saved, tmp_path / "copied.ckpt")
    run_dir, out, err, code = run_cli(capsys, "fit", f"--ckpt_path={tmp_path / 'copied.ckpt'}",
                                      f"--trainer.default_root_dir={tmp_path / 'runs'}")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and f"cannot resume from {tmp_path / 'copied.ckpt'}" in errors[0], err
    assert "size mismatch" in errors[0] and not any((tmp_path / "runs").iterdir())


def test_a_copied_checkpoint_resumes_alone_into_a_new_directory(capsys, tmp_path, interrupted_run):
    """A checkpoint carries its run's config; one saved before that (no config in it) takes its run's config.yaml."""
    shutil.copy(interrupted_run / "checkpoints" / "last.ckpt", tmp_path / "copied.ckpt")
    run_dir, out, err, code = run_cli(capsys, "fit", f"--ckpt_path={tmp_path / 'copied.ckpt'}",
                                      f"--trainer.default_root_dir={tmp_path / 'runs'}")
    assert code == 0 and run_dir.parent == tmp_path / "runs" and "writes a new one" in out, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 30 and not metrics.get("interrupted")

    older = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    del older[CONFIG_KEY]
    torch.save(older, run_dir / "checkpoints" / "last.ckpt")
    _, out, err, code = run_cli(capsys, "fit", f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                                "--trainer.max_steps=35")
    assert code == 0, err
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 35  # a finished run goes on


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

    # a resumed part that breaks down takes its W&B record with it, and W&B's links point where they did
    wandb = run_dir / "wandb"
    links = {path.name: os.readlink(path) for path in wandb.iterdir() if path.is_symlink()}
    before = file_hashes(run_dir)
    with pytest.raises(RuntimeError, match="broken at step 33"):
        run_cli(capsys, "fit", "--trainer.max_steps=40", "--trainer.callbacks+=conftest.RaiseAt",
                "--trainer.callbacks.step=33", f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert file_hashes(run_dir) == before and sorted(wandb.glob("offline-run-*")) == records
    assert {path.name: os.readlink(path) for path in wandb.iterdir() if path.is_symlink()} == links


@pytest.mark.cuda
def test_cuda_run_matches_the_cpu_pipeline(capsys, tmp_path):
    _, gpu = fit_tiny(capsys, tmp_path, "--trainer.accelerator=gpu", "--trainer.devices=1")
    _, cpu = fit_tiny(capsys, tmp_path, "--trainer.accelerator=cpu")
    assert gpu["steps"] == cpu["steps"] == 30
    assert gpu["psnr_observation_input"] == pytest.approx(cpu["psnr_observation_input"], abs=1e-4)
    assert abs(gpu["psnr_best"] - cpu["psnr_best"]) < 1.0
