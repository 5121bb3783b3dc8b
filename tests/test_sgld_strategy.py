"""The SGLD strategy on tiny problems: posterior artifacts and metrics, temperature, freeze, divergence guard."""

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio

from conftest import fit_tiny
from dip_lightning import optim
from dip_lightning.images import load_image
from dip_lightning.nets.chains import stack_chains
from dip_lightning.strategies import SGLD

# TINY runs 30 steps: samples at steps 15, 20, 25, 30
CHAIN = ["--model.strategy.burn_in=10", "--model.strategy.thin=5", "--model.strategy.max_mse_ratio=1e9"]
CALIBRATION_KEYS = {"uce", "coverage_95", "nll", "spearman_std_abs_err"}


@pytest.mark.parametrize("config", ["sgld_denoise", "paper/sgld_denoise"])
def test_run_returns_the_posterior_mean_with_its_uncertainty(capsys, tmp_path, config):
    logs = tmp_path / "csv"
    run_dir, metrics = fit_tiny(capsys, tmp_path, *CHAIN, "--trainer.logger=CSVLogger",
                                f"--trainer.logger.init_args.save_dir={logs}", config=config)
    assert metrics["samples"] == 4
    assert CALIBRATION_KEYS <= metrics.keys() and 0 <= metrics["coverage_95"] <= 1
    assert metrics["psnr_posterior_mean"] == metrics["psnr_selected"] != metrics["psnr_final"]
    assert "step_selected" not in metrics  # an average, not one step's output
    std = np.load(run_dir / "posterior_std.npy")
    assert std.shape == (3, 32, 32) and np.isfinite(std).all() and (std > 0).mean() > 0.99
    assert (run_dir / "uncertainty.png").is_file()
    mean, restored, truth = (load_image(run_dir / f"{n}.png")[None] for n in ("posterior_mean", "restored",
                                                                              "ground_truth"))
    assert torch.equal(mean, restored)
    assert abs(float(peak_signal_noise_ratio(mean, truth, data_range=1.0)) - metrics["psnr_posterior_mean"]) < 0.1
    (log,) = logs.rglob("metrics.csv")
    curve = [row["psnr/posterior_mean"] for row in csv.DictReader(log.open()) if row.get("psnr/posterior_mean")]
    assert len(curve) == 2  # logged at samples 20 and 30 (log_every_n_steps 10)
    if config == "sgld_denoise":  # pSGLD: the preconditioner froze after burn-in, and the flag is checkpointed
        optimizer = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"][0]
        assert optimizer["param_groups"][0]["frozen"] is True


def _task(reg_noise_std: float = 0.0) -> SimpleNamespace:
    """What configure_optimizer reads from a task: a one-chain conv + BatchNorm net, 3x64x64 observation, sigma 25."""
    net = stack_chains([nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3))])
    return SimpleNamespace(net=net, generators=[torch.Generator()], noise_std=25 / 255, num_observed=3 * 64 * 64,
                           hparams=SimpleNamespace(reg_noise_std=reg_noise_std))


def test_samplers_get_their_measured_lr_and_the_task_temperature():
    bayes = 2 * (25 / 255) ** 2 / (3 * 64 * 64)
    psgld = SGLD().configure_optimizer(_task())
    assert type(psgld) is optim.PSGLD
    assert psgld.param_groups[0]["lr"] == 0.01 and psgld.param_groups[0]["prior_std"] == 1.0
    assert psgld.param_groups[0]["temperature"] == pytest.approx(bayes)
    cold = SGLD(sampler="sgld", tau=0.25).configure_optimizer(_task())
    assert type(cold) is optim.SGLD and cold.param_groups[0]["lr"] == 3.0
    assert cold.param_groups[0]["temperature"] == pytest.approx(0.25 * bayes)
    task = _task(1 / 30)
    paper = SGLD(sampler="paper").configure_optimizer(task)
    assert type(paper) is optim.PaperSGLD
    noised, quiet = paper.param_groups  # the GP-DIP code noised the conv weights only
    assert noised["params"] == [task.net[0].weight] and noised["noise_std"] is None and quiet["noise_std"] == 0.0
    assert len(quiet["params"]) == 3  # conv bias, BatchNorm weight and bias
    with pytest.warns(UserWarning, match="input jitter"):
        SGLD(sampler="paper").configure_optimizer(_task(0.0))


def test_guard_stops_a_chain_that_leaves_the_band(capsys, tmp_path):
    # no output fits the observation to 0.01 sigma²: every step after burn-in is out of band
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.strategy.burn_in=5", "--model.strategy.thin=1",
                                "--model.strategy.max_mse_ratio=0.01", "--trainer.max_steps=200",
                                config="sgld_denoise")
    assert metrics["steps"] == 25 and metrics["chain_left_band_step"] == [5]  # stopped at the first check
    assert metrics["samples"] == 0 and "psnr_posterior_mean" not in metrics  # every sample was vetoed
    assert (run_dir / "restored.png").is_file() and not (run_dir / "posterior_std.npy").exists()
