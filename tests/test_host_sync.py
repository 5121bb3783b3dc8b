"""No host synchronisation inside a training step of any strategy, outside the periodic checks (host_sync.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, run_cli
from host_sync import PERIODIC, OpCounter, SyncCheck
from torchmetrics.functional.image import peak_signal_noise_ratio

from dip_lightning.tasks import RestorationTask
from dip_lightning.tasks.base import chain_psnr

LOG_EVERY = 50
PERIODS = sorted({LOG_EVERY, *(p for p in PERIODIC.values() if p)})
SAMPLE = ("--model.strategy.burn_in=60", "--model.strategy.thin=2", "--model.strategy.max_mse_ratio=1e9")
STRATEGIES = {
    "sgd": ("denoise.yaml", "--model.strategy.stopping=wmv", "--model.strategy.window=20"),
    "psgld": ("sgld_denoise.yaml", *SAMPLE),
    "sgld": ("sgld_denoise.yaml", "--model.strategy.sampler=sgld", "--model.strategy.lr=3", *SAMPLE),
    "paper": ("paper/sgld_denoise.yaml", "--data.crop=32", *SAMPLE),
    # the noise inferred with the image (clipped entries imputed), Metropolis-adjusted; and (a, b) inferred
    "psgld-sigma": ("sgld_denoise.yaml", *SAMPLE, "--model.infer_sigma=true", "--model.strategy.metropolis=true"),
    "psgld-poisson": ("sgld_denoise.yaml", *SAMPLE, "--model.infer_sigma=true", "--model.noise=poisson_gaussian",
                      "--model.peak=30", "--model.sigma=5"),
    "mcdropout": ("mcdropout_denoise.yaml", "--model.strategy.samples=4"),
    "mfvi": ("mfvi_denoise.yaml", "--model.strategy.samples=4"),
}


def run_checked(capsys, tmp_path, monkeypatch, checker: str, config: str, *args: str, steps: int) -> SyncCheck:
    """A tiny CLI run of `steps` steps with a SyncCheck among the task's callbacks."""
    check = SyncCheck(checker, PERIODS)
    callbacks = RestorationTask.configure_callbacks
    # first, so that its on_exception disarms the checker before the others' hooks run
    monkeypatch.setattr(RestorationTask, "configure_callbacks", lambda self: [check, *callbacks(self)])
    device = ["--trainer.accelerator=gpu"] if checker == "cuda" else []
    _, _, err, code = run_cli(capsys, "fit", "--config", config, *TINY, f"--trainer.max_steps={steps}",
                              "--trainer.enable_progress_bar=true",
                              f"--trainer.log_every_n_steps={LOG_EVERY}", f"--trainer.default_root_dir={tmp_path}",
                              "--trainer.enable_checkpointing=false", *device, *args)
    assert code == 0, err
    return check


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_no_host_reads_inside_cpu_steps(capsys, tmp_path, monkeypatch, strategy):
    """The CPU stand-in: no `.item()`, `bool(t)`, `nonzero`, mask indexing in any step off the periodic checks."""
    config, *args = STRATEGIES[strategy]
    check = run_checked(capsys, tmp_path, monkeypatch, "cpu", config, *args, steps=120)
    assert check.checked > 40
    assert not check.reads, "\n".join(f"{op} at {where}" for op, where in check.reads[:10])


@pytest.mark.cuda
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_no_host_sync_inside_cuda_steps(capsys, tmp_path, monkeypatch, strategy):
    """`torch.cuda.set_sync_debug_mode("error")` over 300 steps: any sync in a checked step fails the run."""
    config, *args = STRATEGIES[strategy]
    check = run_checked(capsys, tmp_path, monkeypatch, "cuda", config, *args, steps=300)
    assert check.checked > 100
    torch.cuda.set_sync_debug_mode(0)


def test_chain_psnr_equals_torchmetrics_without_a_tensor_from_host_data():
    """Each step's per-chain PSNR: torchmetrics' figure, without torchmetrics' count built from a host list (a
    host-to-device copy and a sync per step on a GPU: found by the CUDA test above)."""
    prediction, target = torch.rand(3, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with OpCounter() as ops:
        ours = chain_psnr(prediction, target, data_range=2.0)
    expected = peak_signal_noise_ratio(prediction, target.expand_as(prediction), data_range=2.0, reduction="none",
                                       dim=(1, 2, 3))
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    assert "aten::lift_fresh" not in ops.names, ops.names
