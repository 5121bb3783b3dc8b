"""Analytic kernels: closed forms, and agreement with random conv-ReLU stacks (docs/science.md §5)."""

from __future__ import annotations

import math

import pytest
import torch

from dip_lightning.gp.empirical import estimate_kernel
from dip_lightning.gp.kernels import (conv_net_kernel, leaky_relu_step, rbf_kernel, rbf_radius, relu_step,
                                      smoothed_noise_kernel)




def _gaussian_pair_moment(rho: float, phi, n: int = 2_000_000) -> float:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, generator=g, dtype=torch.float64)
    v = rho * u + math.sqrt(1 - rho**2) * torch.randn(n, generator=g, dtype=torch.float64)
    return float((phi(u) * phi(v)).mean())


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.5, 0.95])
def test_activation_step_matches_monte_carlo(slope, rho):
    table = torch.tensor([rho, 1.0, rho], dtype=torch.float64)  # K(-1), K(0), K(1)
    out = leaky_relu_step(table, slope)
    phi = torch.nn.LeakyReLU(slope)
    assert float(out[0]) == pytest.approx(_gaussian_pair_moment(rho, phi), abs=5e-3)
    assert float(out[1]) == pytest.approx(_gaussian_pair_moment(1.0, phi), abs=5e-3)


def test_relu_of_white_noise_gives_one_over_pi_everywhere():
    white = smoothed_noise_kernel(4, 0.0, dim=2)
    k = conv_net_kernel(white, depth=1, activation="relu")
    off = k.flatten()[k.flatten() < 1]
    assert torch.allclose(off, torch.full_like(off, 1 / math.pi))
    assert torch.equal(relu_step(white), leaky_relu_step(white, 0.0))


def test_depth_flattens_and_smoothing_widens_the_kernel():
    white = conv_net_kernel(smoothed_noise_kernel(6, 0.0), depth=1)
    deep = conv_net_kernel(smoothed_noise_kernel(6, 0.0), depth=4)
    smooth = conv_net_kernel(smoothed_noise_kernel(6, 3.0), depth=1)
    assert deep[7] > white[7]  # flatter: larger off-diagonal values
    assert smooth[7] > smooth[9] > smooth[12]  # decays with the offset
    assert smooth[7] > white[7]


def test_smoothed_noise_kernel_approaches_the_continuous_formula():
    s = 3.0
    k = smoothed_noise_kernel(10, s, dim=1)
    lags = torch.arange(-10, 11, dtype=torch.float64)
    assert torch.allclose(k, torch.exp(-lags**2 / (4 * s**2)), atol=1e-4)


def test_rbf_table_and_radius():
    ell = 2.5
    r = rbf_radius(ell, 1e-8)
    table = rbf_kernel(r, ell, 3.0)
    assert table.shape == (2 * r + 1, 2 * r + 1) and float(table[r, r]) == 3.0
    assert float(table[r, 0]) <= 3e-8 and math.exp(-((r - 1) ** 2) / (2 * ell**2)) > 1e-8


def _torch_default_bias_vars(in_channels: int, width: int, depth: int, dim: int) -> list[float]:
    fans = [in_channels * 3**dim] + [width * 3**dim] * (depth - 1) + [width]
    return [1 / (3 * f) for f in fans]


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("smoothing", [0.0, 2.0])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_analytic_matches_random_conv_stacks_1d(depth, smoothing, activation):
    """Width 256, 64 input channels: max normalised difference ≤ 0.01 (acceptance)."""
    radius = 8
    spec = {"class_path": "conv", "init_args": dict(in_channels=64, out_channels=1, width=256, depth=depth,
                                                    activation=activation, dim=1)}
    estimate = estimate_kernel(spec, radius, samples=16, size=2048, input_noise="gaussian", input_scale=1.0,
                               smoothing=smoothing)
    empirical = estimate.table / estimate.table[radius]
    analytic = conv_net_kernel(smoothed_noise_kernel(radius, smoothing, 1), depth, activation, weight_gain=1 / 3,
                               bias_var=_torch_default_bias_vars(64, 256, depth, 1))
    assert float((empirical - analytic).abs().max()) <= 0.01
    assert estimate.phase_spread == 0.0  # no resampling: exactly stationary


@pytest.mark.parametrize("depth,smoothing", [(2, 0.0), (3, 2.0)])
def test_analytic_matches_random_conv_stacks_2d(depth, smoothing):
    radius = 6
    spec = {"class_path": "conv", "init_args": dict(in_channels=64, out_channels=1, width=256, depth=depth)}
    estimate = estimate_kernel(spec, radius, samples=12, size=64, input_noise="gaussian", input_scale=1.0,
                               smoothing=smoothing)
    empirical = estimate.table / estimate.table[radius, radius]
    analytic = conv_net_kernel(smoothed_noise_kernel(radius, smoothing, 2), depth, "relu", weight_gain=1 / 3,
                               bias_var=_torch_default_bias_vars(64, 256, depth, 2))
    assert float((empirical - analytic).abs().max()) <= 0.01


def test_bias_var_length_is_checked():
    with pytest.raises(ValueError, match="depth \\+ 1"):
        conv_net_kernel(smoothed_noise_kernel(2, 0.0), depth=2, bias_var=[0.1, 0.1])
    with pytest.raises(ValueError, match="no analytic kernel"):
        conv_net_kernel(smoothed_noise_kernel(2, 0.0), depth=1, activation="tanh")
