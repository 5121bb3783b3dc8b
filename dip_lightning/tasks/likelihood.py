"""The per-entry data term of the loss: Gaussian, or censored (Tobit) where the observation was clipped.

An observation clipped to [low, high] (an image: y = clip(A x + n, 0, 1)) carries less information at the
bounds: y = low says only A x + n <= low. Its censored Gaussian negative log-likelihood, scaled by 2σ² so
that an interior entry's term is the squared error, is per entry (f the prediction A f_θ(z)):

    low < y < high:  (y − f)²
    y at low:        −2σ² log Φ((low − f) / σ)
    y at high:       −2σ² log Φ((f − high) / σ)

(Φ the standard normal CDF). The mean over P entries keeps the SGLD temperature T = τ·2σ²/P: L/T is the
censored negative log-likelihood over τ. As σ → 0 the bound terms become one-sided squared errors,
relu(f − low)² and relu(high − f)², which is what a noise-free task gets.
"""

from __future__ import annotations

import torch
from torch.special import log_ndtr

BOUND_TOLERANCE = 0.5 / 255
"""An entry within this of a bound counts as clipped there: an 8-bit file rounds a clipped 0 or 1 to itself
and nothing else to within half a grey level of it."""


def clipped_entries(observation: torch.Tensor, bounds: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(at_low, at_high): bool tensors like `observation`, the entries at (within tolerance of) each bound."""
    low, high = bounds
    return observation <= low + BOUND_TOLERANCE, observation >= high - BOUND_TOLERANCE


def distance_past_bound(prediction: torch.Tensor, observation: torch.Tensor,
                        bounds: tuple[float, float]) -> torch.Tensor:
    """How far past its bound a clipped entry's noisy value may lie, per entry: low − f where y is at low,
    f − high elsewhere (meaningful at the clipped entries only)."""
    low, high = bounds
    at_low, _ = clipped_entries(observation, bounds)
    return torch.where(at_low, low - prediction, prediction - high)


def censored_terms(prediction: torch.Tensor, observation: torch.Tensor, sigma: float | torch.Tensor,
                   bounds: tuple[float, float]) -> torch.Tensor:
    """Per-entry censored data term (see the module docstring), shaped like `prediction` (K, C, *S);
    `observation` (1, C, *S) broadcasts over the leading chain dimension. `sigma` in the data's units: a
    number, or a tensor (K, 1, ...) of each chain's (> 0)."""
    at_low, at_high = clipped_entries(observation, bounds)
    beyond = distance_past_bound(prediction, observation, bounds)
    if isinstance(sigma, torch.Tensor) or sigma > 0:
        censored = -2 * sigma**2 * log_ndtr(beyond / sigma)  # one call for both bounds: log_ndtr is the cost
    else:
        censored = (-beyond).clamp(min=0).square()
    return torch.where(at_low | at_high, censored, (prediction - observation).square())
