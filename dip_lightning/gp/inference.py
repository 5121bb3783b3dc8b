"""GP regression on a pixel grid with a stationary kernel: posterior mean by CG with FFT matvecs,
posterior std by Matheron's rule, and a dense Cholesky solver for small images (docs/science.md §5).

Model, per channel c (channels independent, same kernel): x_c ~ GP(m_c, K), y_c = x_c + N(0, s²) at the
observed pixels (mask); m_c is the mean of the observed values. Posterior mean
m + K_{*o} (K_oo + s² I)⁻¹ (y_o − m), posterior variance diag(K_** − K_{*o} (K_oo + s² I)⁻¹ K_{o*}).
Intensities are on the [0, 1] scale; variances in intensity².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError
from .cg import CGResult, conjugate_gradients
from .stationary import GridCovariance, ensure_psd

DENSE_MAX_PIXELS = 64 * 64
"""Largest grid the dense solver accepts (its N x N float64 matrix is 134 MB at 64 x 64)."""


@dataclass
class Posterior:
    """GP posterior on the grid: mean and std (C, *S), CG iterations of the mean solve (0 if dense)."""

    mean: torch.Tensor
    std: torch.Tensor | None
    cg_iterations: int
    residual: float


def check_mask(observation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`mask` (*S) or (C, *S), True = observed, as a bool tensor (1 or C, *S); a clear error otherwise."""
    spatial = tuple(observation.shape[1:])
    if tuple(mask.shape) not in (spatial, tuple(observation.shape), (1, *spatial)):
        raise InputError(f"mask of shape {tuple(mask.shape)} does not match the image {tuple(observation.shape)}: "
                         f"give a mask of shape {spatial} (shared by all channels) or {tuple(observation.shape)}")
    mask = mask.bool().reshape(-1, *spatial)
    if not mask.flatten(1).any(1).all():
        raise InputError("the mask observes no pixel (of some channel): at least one pixel must be observed")
    return mask


def observed_mean(observation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of the observed values, shape (C, 1, ..., 1): the GP's constant prior mean."""
    mask = mask.expand_as(observation)
    total = (observation * mask).flatten(1).sum(1)
    return (total / mask.flatten(1).sum(1)).view(-1, *([1] * (observation.dim() - 1)))


def _masked_operator(cov: GridCovariance, mask: torch.Tensor, noise_var: float):
    """v -> mask ⊙ K (mask ⊙ v) + s² v: (K_oo + s² I) acting on grid vectors that vanish off the mask."""
    m = mask.to(cov.dtype)
    return lambda v: m * cov.matvec(m * v) + noise_var * v


def posterior_mean(cov: GridCovariance, observation: torch.Tensor, mask: torch.Tensor, noise_var: float, *,
                   tol: float = 1e-4, max_iter: int = 1000) -> tuple[torch.Tensor, CGResult]:
    """Posterior mean (C, *S) by CG on (K_oo + s² I) α = y_o − m, all channels in one batch."""
    mask = check_mask(observation, mask)
    prior = observed_mean(observation, mask)
    m = mask.expand_as(observation).to(cov.dtype)
    rhs = m * (observation.to(cov.dtype) - prior)
    solve = conjugate_gradients(_masked_operator(cov, mask, noise_var), rhs, tol=tol, max_iter=max_iter)
    return prior + cov.matvec(m * solve.solution), solve


def posterior_std_sampled(cov: GridCovariance, mask: torch.Tensor, noise_var: float, samples: int = 64, *,
                          generator: torch.Generator | None = None, tol: float = 1e-3,
                          max_iter: int = 1000) -> tuple[torch.Tensor, CGResult]:
    """Posterior std (M, *S) for a mask (M, *S) by Matheron's rule, from `samples` samples per mask.

    A prior draw f ~ N(0, K) (circulant embedding) becomes a posterior draw by
    f − K_{*o} (K_oo + s² I)⁻¹ (f_o + ε), ε ~ N(0, s²); its deviation from the posterior mean is exactly
    that term, so the variance estimate is the mean of its squares (unbiased, `samples` dof).
    """
    spatial = mask.shape[1:]
    masks = mask.bool().repeat_interleave(samples, 0)  # (M * samples, *S)
    f = cov.sample(masks.shape[0], generator)
    eps = math.sqrt(noise_var) * torch.randn(f.shape, generator=generator, dtype=cov.dtype)
    m = masks.to(cov.dtype)
    solve = conjugate_gradients(_masked_operator(cov, masks, noise_var), m * (f + eps), tol=tol,
                                max_iter=max_iter)
    deviation = f - cov.matvec(m * solve.solution)
    variance = deviation.square().reshape(mask.shape[0], samples, *spatial).mean(1)
    return variance.sqrt(), solve


def dense_posterior(cov: GridCovariance, observation: torch.Tensor, mask: torch.Tensor, noise_var: float, *,
                    max_pixels: int = DENSE_MAX_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior mean and std (C, *S) by Cholesky in float64; refuses grids above `max_pixels`."""
    n = math.prod(cov.shape)
    if n > max_pixels:
        side = "x".join(map(str, cov.shape))
        raise InputError(f"the {side} image ({n} pixels) is too large for the dense solver (at most {max_pixels} "
                         f"pixels; its {n}x{n} matrix would need {8 * n * n / 1e9:.1f} GB): use solver=cg")
    mask = check_mask(observation, mask)
    prior = observed_mean(observation, mask).to(torch.float64)
    y = (observation.to(torch.float64) - prior).reshape(observation.shape[0], n)
    k = cov.dense()
    means, variances = [], []
    for c in range(observation.shape[0]):
        obs = mask[min(c, mask.shape[0] - 1)].reshape(n)
        k_o = k[obs]  # (P, N)
        chol = torch.linalg.cholesky(k_o[:, obs] + noise_var * torch.eye(int(obs.sum()), dtype=torch.float64))
        alpha = torch.cholesky_solve(y[c, obs, None], chol)
        means.append(k_o.T @ alpha[:, 0])
        v = torch.linalg.solve_triangular(chol, k_o, upper=False)
        variances.append((k.diagonal() - v.square().sum(0)).clamp(min=0))
    shape = observation.shape
    return prior + torch.stack(means).reshape(shape), torch.stack(variances).reshape(shape).sqrt()


def gp_posterior(table: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor, noise_var: float, *,
                 solver: str = "cg", variance_samples: int = 64, tol: float = 1e-4, max_iter: int = 1000,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> Posterior:
    """GP posterior of an observation (C, *S) under a kernel table: the one entry point.

    Args:
        table: stationary kernel table (2R+1,) * d in intensity²; repaired with a notice if not PSD.
        observation: (C, *S) values; only the observed ones are used.
        mask: (*S) or (C, *S), True where observed.
        noise_var: observation noise variance s² (intensity²); > 0 keeps CG well-posed.
        solver: "cg" (FFT matvecs, any size; std by Matheron sampling) or "dense" (exact, ≤ 64 x 64).
        variance_samples: Matheron samples for the std (0 skips the std) with solver="cg".
    """
    if solver not in ("cg", "dense"):
        raise InputError(f"unknown solver {solver!r}: choose 'cg' or 'dense'")
    mask = check_mask(observation, mask)
    table = ensure_psd(table)
    if solver == "dense":
        cov = GridCovariance(table, tuple(observation.shape[1:]), dtype=torch.float64)
        mean, std = dense_posterior(cov, observation, mask, noise_var)
        return Posterior(mean.to(observation.dtype), std.to(observation.dtype), 0, 0.0)
    cov = GridCovariance(table, tuple(observation.shape[1:]), dtype=dtype)
    mean, solve = posterior_mean(cov, observation, mask, noise_var, tol=tol, max_iter=max_iter)
    std = None
    if variance_samples > 0:
        std, _ = posterior_std_sampled(cov, mask, noise_var, variance_samples, generator=generator,
                                       max_iter=max_iter)
        std = std.expand_as(mean)
    return Posterior(mean.to(observation.dtype), None if std is None else std.to(observation.dtype),
                     solve.iterations, solve.residual)
