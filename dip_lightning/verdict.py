"""What a run's settings and its metrics.json say beyond the figures: a sampler schedule with no posterior sample
(refused before the run), a finished run without a valid result (an error line, exit status 1, its files still
written) and results to read with care (one warning line each)."""

from __future__ import annotations

from typing import Any

from .errors import InputError

RHAT_LIMIT = 1.1
"""split-R̂ above which chains count as not mixed: the classic threshold (1.01 is the strict modern one)."""


def refuse_empty_schedule(planned: int, max_steps: int, burn_in: int, thin: int) -> None:
    """Refuse (InputError) a sampler run whose schedule plans fewer than 2 posterior samples per chain (`planned`,
    for `max_steps` steps): its result could only be the outputs' moving average. An endless run (-1) passes."""
    if max_steps >= 0 and planned < 2:
        raise InputError(f"trainer.max_steps={max_steps} with model.strategy.burn_in={burn_in} and thin={thin} plans "
                         f"{planned} posterior samples (2 are needed): give trainer.max_steps >= {burn_in + 2 * thin} "
                         f"or a smaller burn_in")


def run_error(metrics: dict[str, Any]) -> str | None:
    """Why a finished sampler run has no posterior (fewer than 2 samples) and what to change; None otherwise.
    An interrupted run is not judged: it stopped before it could sample."""
    samples = metrics.get("samples")
    if samples is None or samples >= 2 or metrics.get("interrupted"):
        return None
    left = [step for step in metrics.get("chain_left_band_step") or [] if step]
    if metrics.get("nonfinite_loss"):
        why, change = "the loss became non-finite", "lower model.strategy.lr"
    elif left and len(left) == metrics.get("chains", 1):
        why = f"every chain left the band MSE(observation) <= max_mse_ratio·sigma² (the last at step {max(left)})"
        change = ("model.sigma is likely below the observation's real noise: raise it, or let it be inferred with the "
                  "image (model.infer_sigma=true) (or lower model.strategy.lr, or raise model.strategy.max_mse_ratio)")
    else:
        why = f"the run ended after {metrics['steps']} steps, before it could sample"
        change = "raise trainer.max_steps (or lower model.strategy.burn_in or model.strategy.thin)"
    return (f"no posterior: {samples} of {metrics.get('samples_planned')} planned posterior samples (2 are needed): "
            f"{why}; {change}. The files are written (restored.png is the outputs' moving average)")


def run_warnings(metrics: dict[str, Any]) -> list[str]:
    """One line for each result to read with care: chains that did not mix (split-R̂ p99 above RHAT_LIMIT)."""
    warnings = []
    p99 = metrics.get("rhat_p99")
    if p99 is not None and p99 > RHAT_LIMIT:
        warnings.append(f"the chains did not mix: split-R̂ p99 {p99:.2f} > {RHAT_LIMIT} (median "
                        f"{metrics['rhat_median']:.2f}; rhat.png maps it), so the posterior std is too small where "
                        f"R̂ is high: run longer (trainer.max_steps) or more chains (model.strategy.chains)")
    return warnings
