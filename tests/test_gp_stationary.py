"""Circulant (FFT) covariance on a grid: matvecs, prior samples, PSD check and repair."""

from __future__ import annotations

import warnings

import pytest
import torch

from dip_lightning.gp.kernels import rbf_kernel, rbf_radius
from dip_lightning.gp.stationary import (GridCovariance, ensure_psd, negative_ratio, repair_psd, table_radius,
                                         wendland_taper)


def _anisotropic_table(radius: int) -> torch.Tensor:
    """A PSD but not isotropic table (so index mix-ups show): autocorrelation of a random filter."""
    g = torch.Generator().manual_seed(3)
    f = torch.randn(radius + 1, radius + 1, generator=g, dtype=torch.float64)
    full = torch.nn.functional.conv2d(torch.nn.functional.pad(f, (radius, radius, radius, radius))[None, None],
                                      f[None, None])[0, 0]
    return full


@pytest.mark.parametrize("shape", [(12, 9), (5, 30)])
def test_matvec_and_dense_agree_with_direct_lookup(shape):
    table = _anisotropic_table(4)
    cov = GridCovariance(table, shape, dtype=torch.float64)
    k = cov.dense()
    h, w = shape
    for a, b in [(0, 0), (3, 2), (h - 1, w - 1)]:
        for c, d in [(1, 1), (h - 1, 0), (2, w - 1)]:
            dy, dx = c - a, d - b
            expected = table[dy + 4, dx + 4] if abs(dy) <= 4 and abs(dx) <= 4 else 0.0
            assert float(k[a * w + b, c * w + d]) == pytest.approx(float(expected))
    v = torch.randn(3, *shape, dtype=torch.float64)
    assert torch.allclose(cov.matvec(v).reshape(3, -1), v.reshape(3, -1) @ k.T, atol=1e-10)


def test_one_dimensional_grid():
    table = rbf_kernel(6, 2.0, dim=1)
    cov = GridCovariance(table, (40,), dtype=torch.float64)
    v = torch.randn(40, dtype=torch.float64)
    assert torch.allclose(cov.matvec(v), cov.dense() @ v, atol=1e-10)


def test_prior_samples_have_the_kernel_covariance():
    table = rbf_kernel(rbf_radius(2.0), 2.0, 2.0)
    cov = GridCovariance(table, (8, 8))
    samples = cov.sample(40_000, torch.Generator().manual_seed(0)).reshape(40_000, -1).double()
    empirical = samples.T @ samples / samples.shape[0]
    assert float((empirical - cov.dense()).abs().max()) < 0.1  # ~5 standard errors at K(0) = 2


def test_repair_gives_a_psd_compactly_supported_kernel():
    box = torch.ones(9, 9, dtype=torch.float64)  # a truncated constant: far from PSD
    assert negative_ratio(box) < -0.1
    fixed = repair_psd(box, taper_radius=3)
    assert negative_ratio(fixed) > -1e-10
    assert negative_ratio(fixed, (64, 64)) > -1e-10  # PSD on any torus, so at any image size
    dist = torch.cdist(torch.cartesian_prod(torch.arange(9.0), torch.arange(9.0)), torch.tensor([[4.0, 4.0]]))
    assert torch.all(fixed.flatten()[dist[:, 0] >= 3] == 0)
    assert float(fixed[4, 4]) > 0.5


def test_ensure_psd_repairs_with_a_notice_and_leaves_psd_kernels_alone():
    with pytest.warns(UserWarning, match="not positive semi-definite.*repaired"):
        fixed = ensure_psd(torch.ones(7, 7, dtype=torch.float64))
    assert negative_ratio(fixed) > -1e-10
    rbf = rbf_kernel(rbf_radius(2.0), 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ensure_psd(rbf) is rbf


def test_wendland_taper_is_one_at_zero_and_zero_outside():
    taper = wendland_taper(5, 4.0, dim=1)
    assert float(taper[5]) == 1.0 and float(taper[0]) == 0.0 and float(taper[1]) == 0.0
    assert torch.all(taper[5:-1] >= taper[6:])


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="odd equal sides"):
        table_radius(torch.ones(4, 4))
    with pytest.raises(ValueError, match="cannot act"):
        GridCovariance(torch.ones(3, 3), (8,))
