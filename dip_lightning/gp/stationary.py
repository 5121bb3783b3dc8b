"""A stationary kernel on a pixel grid as a circulant: FFT matvecs, prior samples, PSD check and repair.

K v for a table of radius R on an n_1 x ... x n_d grid is a linear convolution; embedding the table in a
torus of side M_i ≥ n_i + R (and ≥ 2R + 1) makes it a circular one, computed by real FFTs in
O(N log N). The same circulant gives prior samples (circulant embedding): its eigenvalues are the
torus FFT of the table, and x = F⁻¹(√λ · F w), w white noise, has exactly the grid covariance K.
"""

from __future__ import annotations

import math
import warnings

import torch
from scipy.fft import next_fast_len

PSD_TOLERANCE = 1e-6
"""Eigenvalues above -PSD_TOLERANCE · max are rounding, not indefiniteness."""


def table_radius(table: torch.Tensor) -> int:
    """R of a (2R+1,) * dim kernel table."""
    sizes = set(table.shape)
    if len(sizes) != 1 or table.shape[0] % 2 == 0:
        raise ValueError(f"a kernel table must have odd equal sides (2R+1,) * dim, got {tuple(table.shape)}")
    return table.shape[0] // 2


def crop_table(table: torch.Tensor, radius: int) -> torch.Tensor:
    """The centred (2r+1,) * dim part of a table, r = min(radius, R)."""
    big = table_radius(table)
    r = min(radius, big)
    return table[tuple(slice(big - r, big + r + 1) for _ in range(table.dim()))]


def wrap(table: torch.Tensor, torus: tuple[int, ...]) -> torch.Tensor:
    """Place a table on a torus of the given sides with lag 0 at index 0 (lag -Δ at M - Δ)."""
    r = table_radius(table)
    if any(m < 2 * r + 1 for m in torus):
        raise ValueError(f"torus {torus} is smaller than the table side {2 * r + 1}")
    out = table.new_zeros(torus)
    out[tuple(slice(0, 2 * r + 1) for _ in torus)] = table
    return torch.roll(out, shifts=(-r,) * len(torus), dims=tuple(range(len(torus))))


def torus_spectrum(table: torch.Tensor, torus: tuple[int, ...]) -> torch.Tensor:
    """Eigenvalues of the circulant of `table` on `torus` (real half-spectrum, rfftn layout)."""
    return torch.fft.rfftn(wrap(table, torus)).real


def wendland_taper(radius: int, taper_radius: float, dim: int = 2) -> torch.Tensor:
    """Wendland C² taper (1 − t)⁴₊ (4t + 1), t = |Δ| / taper_radius, as a (2R+1,) * dim table.

    It is positive definite on R^d for d ≤ 3 and zero beyond `taper_radius`, so multiplying a PSD
    kernel by it keeps it PSD (Schur product) and makes it compactly supported.
    """
    axis = torch.arange(-radius, radius + 1, dtype=torch.float64)
    t = torch.sqrt(sum(g**2 for g in torch.meshgrid(*([axis] * dim), indexing="ij"))) / taper_radius
    return (1 - t).clamp(min=0) ** 4 * (4 * t + 1)


def negative_ratio(table: torch.Tensor, torus: tuple[int, ...] | None = None) -> float:
    """min eigenvalue / max eigenvalue of the table's circulant on `torus` (default: 4R + 2 per side,
    a fine sampling of its spectrum); negative when the kernel is not PSD."""
    r = table_radius(table)
    lam = torus_spectrum(table.to(torch.float64), torus or (4 * r + 2,) * table.dim())
    return float(lam.min() / lam.max())


def repair_psd(table: torch.Tensor, taper_radius: float | None = None) -> torch.Tensor:
    """A PSD, compactly supported version of a kernel table (float64, same shape).

    Clips the negative spectrum on the (2R+1)-torus (a periodic PSD kernel), then multiplies by a
    Wendland taper of radius ≤ R so the result is PSD on the whole grid Z^d and on any torus ≥ 2R + 1.
    """
    r = table_radius(table)
    taper_radius = float(r) if taper_radius is None else min(float(taper_radius), float(r))
    torus = (2 * r + 1,) * table.dim()
    dims = tuple(range(table.dim()))
    lam = torch.fft.fftn(wrap(table.to(torch.float64), torus)).real.clamp(min=0)
    periodic = torch.fft.ifftn(lam).real
    clipped = torch.roll(periodic, shifts=(r,) * table.dim(), dims=dims)
    return clipped * wendland_taper(r, taper_radius, table.dim())


def ensure_psd(table: torch.Tensor, taper_radius: float | None = None, name: str = "kernel") -> torch.Tensor:
    """The table itself if its spectrum is non-negative (within PSD_TOLERANCE), else `repair_psd` of it
    with a notice (a warning naming how negative it was): CG and sampling need a PSD kernel."""
    ratio = negative_ratio(table)
    if ratio >= -PSD_TOLERANCE:
        return table
    fixed = repair_psd(table, taper_radius)
    warnings.warn(f"{name} is not positive semi-definite (smallest eigenvalue {100 * ratio:.2g}% of the "
                  f"largest); repaired by clipping the negative spectrum and a Wendland taper of radius "
                  f"{min(taper_radius or table_radius(table), table_radius(table)):g} px", stacklevel=2)
    return fixed


class GridCovariance:
    """K on an n_1 x ... x n_d grid for a stationary kernel table: `matvec` and `sample` by real FFTs.

    Args:
        table: kernel table (2R+1,) * d; offsets beyond the grid are dropped (R ≤ max n_i − 1).
        shape: grid sides (n_1, ..., n_d).
        dtype: working precision (float32 by default: CG and sampling are tolerant of it).
    """

    def __init__(self, table: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> None:
        if table.dim() != len(shape):
            raise ValueError(f"a {table.dim()}-D kernel table cannot act on a grid of shape {tuple(shape)}")
        self.shape = tuple(int(n) for n in shape)
        table = crop_table(table.to(torch.float64), max(self.shape) - 1)
        r = table_radius(table)
        self.torus = tuple(next_fast_len(max(n + r, 2 * r + 1), real=True) for n in self.shape)
        spectrum = torus_spectrum(table, self.torus)
        self.table = table
        self.negative_ratio = float(spectrum.min() / spectrum.max())
        self.variance = float(table[(r,) * table.dim()])
        self.spectrum = spectrum.to(dtype)
        self.dtype = dtype

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(range(-len(self.shape), 0))

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """K v for v of shape (..., *shape) (a batch of grid vectors)."""
        f = torch.fft.rfftn(v.to(self.dtype), s=self.torus, dim=self.dims)
        out = torch.fft.irfftn(f * self.spectrum, s=self.torus, dim=self.dims)
        return out[(...,) + tuple(slice(0, n) for n in self.shape)]

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`count` draws of the zero-mean prior N(0, K) on the grid, shape (count, *shape).

        Circulant embedding; negative eigenvalues (rounding, or a kernel that was not repaired) are
        clipped to 0.
        """
        noise = torch.randn((count, *self.torus), generator=generator, dtype=self.dtype)
        f = torch.fft.rfftn(noise, dim=self.dims) * self.spectrum.clamp(min=0).sqrt()
        out = torch.fft.irfftn(f, s=self.torus, dim=self.dims)
        return out[(...,) + tuple(slice(0, n) for n in self.shape)]

    def dense(self) -> torch.Tensor:
        """The N x N matrix (N = Π n_i) in float64, for the dense solver on small grids."""
        r = table_radius(self.table)
        full = self.table.new_zeros(tuple(2 * n - 1 for n in self.shape))
        full[tuple(slice(n - 1 - r, n + r) for n in self.shape)] = self.table  # lag Δ at index Δ + n - 1
        # view[a, c] = full[a + c]; K[a, c] = full[c - a + n - 1] = view[n - 1 - a, c]
        view = full.as_strided(self.shape * 2, full.stride() * 2)
        n = math.prod(self.shape)
        return view.flip(tuple(range(len(self.shape)))).reshape(n, n)
