"""Several processes through the real CLI (CPU, gloo): independent chains, one run directory, pooled results;
and the cross-process merge of moments, exact."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import tiny_args
from dip_lightning.moments import pool_moments, variance
from moments_worker import gather_and_pool

TWO_PROCESSES = ["--trainer.accelerator=cpu", "--trainer.devices=2"]


def _fit_two_processes(tmp_path, config: str, *args: str):
    result = subprocess.run([sys.executable, "-m", "dip_lightning", "fit", "--config", config, *tiny_args(config), *TWO_PROCESSES,
                             f"--trainer.default_root_dir={tmp_path}", *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [line for line in result.stdout.splitlines() if line.startswith("outputs: ")]
    assert len(outputs) == 1, result.stdout  # one process reports
    assert "Traceback" not in result.stderr
    (run_dir,) = tmp_path.iterdir()  # one run directory for both processes
    assert outputs[0] == f"outputs: {run_dir}"
    checkpoints = [torch.load(run_dir / "checkpoints" / name, weights_only=False)
                   for name in ("last.ckpt", "last.rank1.ckpt")]
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), checkpoints


def test_two_processes_sample_independent_chains_and_pool_them(tmp_path):
    run_dir, metrics, checkpoints = _fit_two_processes(
        tmp_path, "sgld_denoise", "--model.strategy.burn_in=10", "--model.strategy.thin=2",
        "--model.strategy.max_mse_ratio=1e9")
    assert metrics["chains"] == 2 and metrics["samples"] == 2 * 10
    outputs = [c["state_dict"]["output"] for c in checkpoints]
    weights = [c["state_dict"]["net.head.weight"] for c in checkpoints]
    assert (outputs[0] - outputs[1]).abs().max() > 0.01 and (weights[0] - weights[1]).abs().max() > 0.01
    states = [next(v for k, v in c["callbacks"].items() if k.startswith("PosteriorAverage")) for c in checkpoints]
    merged = pool_moments(*(torch.cat([s[key] for s in states]).flatten(0, 1) for key in ("count", "mean", "m2")))
    std = np.load(run_dir / "posterior_std.npy")
    np.testing.assert_allclose(std, variance(merged[0], merged[2]).sqrt().numpy(), rtol=0, atol=1e-6)
    truth = checkpoints[0]["state_dict"]["ground_truth"]
    psnr = float(10 * torch.log10(1 / (merged[1] - truth[0]).square().mean()))
    assert metrics["psnr_posterior_mean"] == pytest.approx(psnr, abs=1e-4)
    assert len(metrics["psnr_per_chain"]) == 2 and "rhat_median" in metrics and (run_dir / "rhat.png").is_file()


@pytest.mark.slow
def test_two_processes_of_sgd_restarts_average_their_outputs(tmp_path):
    """Slow (about half a minute on 2 cores beside another job): the default suite runs two processes through the
    CLI with SGLD (above), and SGD restarts averaged in one process (tests/test_chains.py)."""
    run_dir, metrics, checkpoints = _fit_two_processes(tmp_path, "denoise", "--model.strategy.stopping=fixed")
    assert metrics["chains"] == 2 and len(metrics["psnr_per_chain"]) == 2 and metrics["steps"] == 30
    outputs = torch.cat([c["state_dict"]["output"] for c in checkpoints])
    assert (outputs[0] - outputs[1]).abs().max() > 0.01  # no gradient averaging: the restarts differ
    truth = checkpoints[0]["state_dict"]["ground_truth"]
    psnr = float(10 * torch.log10(1 / (outputs.mean(0) - truth[0]).square().mean()))
    assert metrics["psnr_selected"] == pytest.approx(psnr, abs=1e-4)


@pytest.mark.slow
def test_a_two_process_run_resumes_from_its_checkpoint_alone(tmp_path):
    """Resumed to go on longer: each process writes its own checkpoint into the resumed part's staging folder,
    and both land in the run directory."""
    run_dir, _, _ = _fit_two_processes(tmp_path, "denoise", "--model.strategy.stopping=fixed")
    result = subprocess.run([sys.executable, "-m", "dip_lightning", "fit", "--trainer.max_steps=40",
                             f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 40 and not (run_dir / ".resume").exists()
    for name in ("last.ckpt", "last.rank1.ckpt"):
        assert torch.load(run_dir / "checkpoints" / name, weights_only=False)["global_step"] == 40, name


def test_moments_pooled_across_processes_equal_those_of_all_samples(tmp_path):
    draws = torch.rand(4, 20, 3, 5, generator=torch.Generator().manual_seed(0))  # 4 chains x 20 draws
    mp.spawn(gather_and_pool, args=(f"file://{tmp_path / 'rendezvous'}", draws, str(tmp_path / "pooled.pt")),
             nprocs=2)
    count, mean, m2 = torch.load(tmp_path / "pooled.pt")
    samples = draws.flatten(0, 1)
    assert int(count) == 80
    torch.testing.assert_close(mean, samples.mean(0))
    torch.testing.assert_close(variance(count, m2), samples.var(0))


@pytest.mark.slow
def test_torchrun_launches_the_same_run(tmp_path):
    """torchrun starts the processes itself: they agree on one run directory named after the rendezvous."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "dip_lightning", "fit", "--config", "sgld_denoise", *tiny_args("sgld_denoise"), *TWO_PROCESSES,
                             "--model.strategy.burn_in=10", "--model.strategy.thin=2",
                             "--model.strategy.max_mse_ratio=1e9", f"--trainer.default_root_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    assert [line for line in result.stdout.splitlines() if line.startswith("outputs: ")] == [f"outputs: {run_dir}"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["chains"] == 2 and metrics["samples"] == 20
    assert (run_dir / "checkpoints" / "last.rank1.ckpt").is_file()
