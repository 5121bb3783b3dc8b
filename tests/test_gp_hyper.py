"""Marginal-likelihood fits: they recover the hyperparameters of data drawn from the model."""

from __future__ import annotations

import pytest
import torch

from dip_lightning.gp.hyper import fit_amplitude, fit_rbf, training_points
from dip_lightning.gp.kernels import rbf_kernel, rbf_radius
from dip_lightning.gp.stationary import GridCovariance




def _draw(table: torch.Tensor, side: int, noise_var: float, channels: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = 0.5 + GridCovariance(table, (side, side), dtype=torch.float64).sample(channels, g)
    noisy = clean + noise_var**0.5 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    mask = torch.rand(side, side, generator=g) >= 0.5
    return noisy.float(), mask


def test_fit_rbf_recovers_the_generating_hyperparameters():
    lengthscale, variance, noise = 3.0, 0.04, 1e-3
    observation, mask = _draw(rbf_kernel(rbf_radius(lengthscale), lengthscale, variance), 40, noise)
    fitted = fit_rbf(observation, mask, max_points=800)
    assert fitted.lengthscale == pytest.approx(lengthscale, rel=0.15)
    assert fitted.variance == pytest.approx(variance, rel=0.5)
    assert fitted.noise_var == pytest.approx(noise, rel=0.3)


def test_fit_rbf_keeps_a_known_noise_variance():
    observation, mask = _draw(rbf_kernel(12, 2.0, 0.04), 32, 1e-3)
    assert fit_rbf(observation, mask, noise_var=5e-3, max_points=400).noise_var == pytest.approx(5e-3, rel=1e-3)


def test_fit_amplitude_recovers_the_scale_of_a_fixed_shape():
    shape = rbf_kernel(10, 2.5, 1.0)
    observation, mask = _draw(0.02 * shape, 40, 1e-4)
    assert fit_amplitude(shape, observation, mask, noise_var=1e-4) == pytest.approx(0.02, rel=0.3)


def test_training_points_stay_within_the_budget_and_are_centred():
    observation, mask = _draw(rbf_kernel(8, 2.0, 0.04), 48, 1e-3, channels=1)
    positions, values = training_points(observation, mask, max_points=300)
    assert positions.shape[0] <= 300 and values.shape == (1, positions.shape[0])
    assert float(values.abs().max()) > 0 and positions.min() >= 0
