"""GP hyperparameters by maximum marginal likelihood, on (a window of) the observed pixels, dense in float64.

The log marginal likelihood log N(y_o | m, K_oo + s² I) needs an O(P³) Cholesky, so it is evaluated on
at most `max_points` observed pixels of a centred square window; channels share the hyperparameters
(their log likelihoods add). m is each channel's observed mean, as in inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.optimize import minimize_scalar

from .inference import check_mask, observed_mean
from .stationary import table_radius


@dataclass
class RBFParams:
    """RBF kernel variance · exp(-|Δ|²/(2 ℓ²)) (ℓ in px, variance in intensity²) and noise variance s²."""

    lengthscale: float
    variance: float
    noise_var: float


def training_points(observation: torch.Tensor, mask: torch.Tensor,
                    max_points: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (P, d) and centred values (C, P) of the observed pixels in the largest centred square
    window holding at most `max_points` of them (per channel; the mask must be shared by the channels)."""
    mask = check_mask(observation, mask)
    if mask.shape[0] != 1 and not (mask == mask[:1]).all():
        raise ValueError("hyperparameter fitting needs one mask shared by all channels")
    values = observation.to(torch.float64) - observed_mean(observation, mask).to(torch.float64)
    spatial = observation.shape[1:]
    side = max(spatial)
    while side > 1:
        window = tuple(slice((n - min(side, n)) // 2, (n - min(side, n)) // 2 + min(side, n)) for n in spatial)
        if int(mask[0][window].sum()) <= max_points:
            break
        side -= 1
    sub = mask[0][window]
    positions = torch.nonzero(sub).to(torch.float64)
    return positions, values[(slice(None), *window)][:, sub]


def _nll(k: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Negative log marginal likelihood of the rows of y (C, P) under N(0, k), summed over channels."""
    chol = torch.linalg.cholesky(k)
    alpha = torch.cholesky_solve(y.T, chol)
    c, p = y.shape
    return 0.5 * (y.T * alpha).sum() + c * (chol.diagonal().log().sum() + 0.5 * p * math.log(2 * math.pi))


def fit_rbf(observation: torch.Tensor, mask: torch.Tensor, *, noise_var: float | None = None,
            max_points: int = 2048, steps: int = 100) -> RBFParams:
    """RBF lengthscale, variance and (unless given) noise variance maximising the marginal likelihood.

    L-BFGS on log-parameters from ℓ = 2 px, variance = Var(y_o), s² = 1% of it; a given `noise_var`
    (e.g. the known denoising σ²) stays fixed.
    """
    positions, y = training_points(observation, mask, max_points)
    d2 = torch.cdist(positions, positions).square()
    scale = float(y.var().clamp(min=1e-6))
    log = torch.tensor([math.log(2.0), math.log(scale), math.log(0.01 * scale)], dtype=torch.float64,
                       requires_grad=True)
    eye = torch.eye(positions.shape[0], dtype=torch.float64)

    def params() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = torch.tensor(noise_var, dtype=torch.float64) if noise_var is not None else log[2].exp()
        return log[0].exp(), log[1].exp(), noise + 1e-8 * scale

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        ell, var, noise = params()
        loss = _nll(var * torch.exp(-d2 / (2 * ell**2)) + noise * eye, y)
        loss.backward()
        return loss

    optimizer = torch.optim.LBFGS([log], max_iter=steps, line_search_fn="strong_wolfe")
    optimizer.step(closure)
    ell, var, noise = (float(v.detach()) for v in params())
    return RBFParams(lengthscale=ell, variance=var, noise_var=noise)


def fit_amplitude(table: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor, *, noise_var: float = 0.0,
                  jitter: float = 0.0, max_points: int = 2048) -> float:
    """Scale a maximising the marginal likelihood of y_o under a·(K + jitter·K(0) I) + noise_var·I.

    For a fixed kernel shape (e.g. the empirical DIP kernel) only its amplitude is free; one
    eigendecomposition makes the likelihood a cheap 1-D function of log a.
    """
    positions, y = training_points(observation, mask, max_points)
    r = table_radius(table)
    offsets = (positions[:, None, :] - positions[None, :, :]).long()
    inside = (offsets.abs() <= r).all(-1)
    index = tuple((offsets.clamp(-r, r) + r).unbind(-1))
    k = torch.where(inside, table.to(torch.float64)[index], 0.0)
    k = k + jitter * float(table[(r,) * table.dim()]) * torch.eye(k.shape[0], dtype=torch.float64)
    lam, vec = torch.linalg.eigh(k)
    lam = lam.clamp(min=0)
    proj = (vec.T @ y.T).square().sum(1)  # Σ_c (u_iᵀ y_c)²
    c = y.shape[0]

    def nll(log_a: float) -> float:
        d = math.exp(log_a) * lam + noise_var
        d = d.clamp(min=1e-300)
        return float(0.5 * (proj / d).sum() + 0.5 * c * d.log().sum())

    guess = math.log(float(y.var()) / max(float(table[(r,) * table.dim()]), 1e-30))
    best = minimize_scalar(nll, bounds=(guess - 25, guess + 25), method="bounded")
    return math.exp(best.x)
