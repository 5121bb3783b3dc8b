"""Analytic stationary kernels on a pixel grid: RBF, smoothed-noise inputs, and the conv-ReLU recursion.

A kernel *table* is a tensor of shape (2R+1,) * dim holding K(Δ) for every offset Δ in [-R, R]^dim;
the centre entry [R, ..., R] is K(0), the prior variance. Offsets are in pixels (docs/science.md §5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def squared_distances(radius: int, dim: int = 2, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """|Δ|² for every offset of a (2R+1,) * dim table, in pixels²."""
    axis = torch.arange(-radius, radius + 1, dtype=dtype)
    grids = torch.meshgrid(*([axis] * dim), indexing="ij")
    return sum(g**2 for g in grids)


def rbf_kernel(radius: int, lengthscale: float, variance: float = 1.0, dim: int = 2) -> torch.Tensor:
    """RBF table variance · exp(-|Δ|² / (2 ℓ²)), ℓ = `lengthscale` in pixels; float64."""
    return variance * torch.exp(-squared_distances(radius, dim) / (2 * lengthscale**2))


def rbf_radius(lengthscale: float, rel_tol: float = 1e-8) -> int:
    """Smallest radius beyond which an RBF of lengthscale ℓ is below `rel_tol` · K(0)."""
    return max(1, math.ceil(lengthscale * math.sqrt(2 * math.log(1 / rel_tol))))


def gaussian_filter(smoothing: float, dim: int = 1) -> torch.Tensor:
    """Unit-energy Gaussian filter of std `smoothing` px, shape (2r+1,) * dim with r = ceil(4 s).

    Filtering white noise with it gives noise of unit variance whose kernel is the filter's
    autocorrelation (≈ exp(-Δ² / (4 s²)) for s ≳ 1); s = 0 gives the identity filter.
    """
    if smoothing <= 0:
        return torch.ones((1,) * dim, dtype=torch.float64)
    radius = math.ceil(4 * smoothing)
    g = torch.exp(-squared_distances(radius, dim) / (2 * smoothing**2))
    return g / g.square().sum().sqrt()


def smoothed_noise_kernel(radius: int, smoothing: float, dim: int = 1) -> torch.Tensor:
    """Normalised kernel of white noise filtered by `gaussian_filter(smoothing)`: the exact grid version
    of K0(Δ) = exp(-Δ² / (4 s²)); s = 0 gives the white-noise kernel δ(Δ)."""
    g = gaussian_filter(smoothing, dim)
    r = g.shape[0] // 2
    size = 2 * max(radius, r) + 2 * r + 1
    spectrum = torch.fft.fftn(g, s=(size,) * dim).abs().square()
    corr = torch.fft.ifftn(spectrum).real  # autocorrelation, lag 0 at index 0
    corr = torch.fft.fftshift(corr)  # lag 0 at the centre index size // 2
    centre = size // 2
    window = tuple(slice(centre - radius, centre + radius + 1) for _ in range(dim))
    return corr[window]


def relu_step(kernel: torch.Tensor) -> torch.Tensor:
    """E[relu(u) relu(v)] for a centred Gaussian field with covariance table `kernel` (the arc-cosine map):
    K'(Δ) = K(0) / (2π) · (sin θ + (π − θ) cos θ), θ = arccos(K(Δ) / K(0))."""
    return leaky_relu_step(kernel, slope=0.0)


def leaky_relu_step(kernel: torch.Tensor, slope: float = 0.2) -> torch.Tensor:
    """E[φ(u) φ(v)] for φ = LeakyReLU(slope) and a centred Gaussian field of covariance table `kernel`.

    Closed form from φ(x) = (1+α)/2 · x + (1−α)/2 · |x| and E|u||v| = 2σ²/π (√(1−ρ²) + ρ arcsin ρ):
    K'(Δ) = K(0) [ (1+α)²/4 · ρ + (1−α)²/(2π) · (√(1−ρ²) + ρ arcsin ρ) ], ρ = K(Δ) / K(0).
    slope = 0 is the ReLU arc-cosine map.
    """
    k0 = _centre(kernel)
    rho = (kernel / k0).clamp(-1.0, 1.0)
    even = (torch.sqrt(1 - rho**2) + rho * torch.asin(rho)) / (2 * math.pi)
    return k0 * ((1 + slope) ** 2 / 4 * rho + (1 - slope) ** 2 * even)


def conv_net_kernel(input_kernel: torch.Tensor, depth: int, activation: str = "relu", *,
                    weight_gain: float = 1.0, bias_var: float | Sequence[float] = 0.0,
                    normalise: bool = True) -> torch.Tensor:
    """Kernel of the output of `depth` conv + activation layers and a linear (1x1 conv) output layer,
    in the infinite-width limit, for an input with kernel table `input_kernel` (docs/science.md §5).

    A conv layer with i.i.d. zero-mean weights of variance σ_w² (fan-in n) and biases of variance σ_b²
    maps a stationary kernel to `weight_gain` · K + `bias_var`, with weight_gain = n σ_w²: it keeps the
    shape. Each activation applies `relu_step` or `leaky_relu_step`. PyTorch's default init has
    weight_gain = 1/3, bias_var = 1/(3 n) (see `torch_default_init`); `bias_var` may list one value per
    layer (depth + 1 of them, the output layer last). Returns K / K(0) if `normalise`.
    """
    steps = {"relu": relu_step, "leaky_relu": leaky_relu_step}
    if activation not in steps:
        raise ValueError(f"no analytic kernel for activation {activation!r}: choose one of {sorted(steps)}")
    biases = [float(bias_var)] * (depth + 1) if isinstance(bias_var, (int, float)) else list(bias_var)
    if len(biases) != depth + 1:
        raise ValueError(f"bias_var needs depth + 1 = {depth + 1} values, got {len(biases)}")
    k = input_kernel.to(torch.float64)
    for bias in biases[:-1]:
        k = steps[activation](weight_gain * k + bias)
    k = weight_gain * k + biases[-1]
    return k / _centre(k) if normalise else k


def torch_default_init(fan_in: int) -> tuple[float, float]:
    """(weight_gain, bias_var) of PyTorch's default conv init U(±1/√n): σ_w² = σ_b² = 1/(3n)."""
    return 1.0 / 3.0, 1.0 / (3.0 * fan_in)


def _centre(kernel: torch.Tensor) -> torch.Tensor:
    """K(0): the centre entry of a table."""
    return kernel[tuple(s // 2 for s in kernel.shape)]
