"""1D signals: recover a signal (C, L) from a seeded fraction of its points (GP-DIP's 1D experiment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..band_figure import save_band_figure
from ..errors import InputError
from ..signals import crop_signal_to_multiple
from ..strategies.base import Selection
from .masked import MaskedTask


class Signal1D(MaskedTask):
    """Fit a 1D network (`dim: 1`, no sigmoid: signals may be negative) to the observed points of a signal.

    A seeded Bernoulli draw keeps each point with probability `observed` (every point of an observation
    given with `data.is_observation`), plus Gaussian noise of std `sigma`. Values are not clipped, so the
    likelihood is Gaussian. PSNR figures use the signal's own range as the peak: max − min of the ground
    truth (of the observation when only that is given).
    Writes `signal.png` (the estimate, ±2 posterior std under a sampler, observed points, truth) and
    `signal.npz`; `metrics.json` adds `rmse`, `rmse_unobserved` and, under a sampler,
    `coverage_2std_unobserved`: the fraction of unobserved points whose truth lies in mean ± 2 std.

    Args:
        observed: fraction of points observed, in (0, 1].
        sigma: std of the observation noise, in the signal's own units (not 0-255: no fixed range; null: unknown).
        **kwargs: the RestorationTask arguments (net, strategy, reg_noise_std, ...).
    """

    clip_range = None
    sigma_scale = 1.0  # `sigma` in the signal's own units
    noise_floor = 1e-6  # the smallest noise std, in the signal's units (no quantisation to bound it)

    def __init__(self, observed: float = 0.1, sigma: float | None = 0.0, **kwargs) -> None:
        if not 0.0 < observed <= 1.0:
            raise InputError(f"model.observed={observed} is not a fraction of observed points: "
                             f"choose 0 < observed <= 1")
        # not clipped: no entry is censored, so `likelihood` would change nothing and is not offered
        super().__init__(sigma=sigma, likelihood="gaussian", **kwargs)

    def fit_to_network(self, image: torch.Tensor, multiple: int) -> torch.Tensor:
        return crop_signal_to_multiple(image, multiple)

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        known = torch.rand(clean.shape[-1], generator=generator) < self.hparams.observed
        if not bool(known.any()):
            raise InputError(f"no point observed at model.observed={self.hparams.observed}: raise it")
        self.set_mask(known)
        return self.add_noise(clean, generator) * known

    def complete_problem(self) -> None:
        if self.mask is None:  # an observation given: every point of it is observed
            self.set_mask(torch.ones(self.observation.shape[-1], dtype=torch.bool))
        values = self.ground_truth if self.has_ground_truth else self.observation  # the latter all observed
        self.data_range = float(values.max() - values.min()) or 1.0  # a constant signal: fall back to 1

    def image_metrics(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        unobserved = (self.mask == 0).expand_as(image)
        metrics = {**super().image_metrics(image), "rmse": (image - self.ground_truth).square().mean().sqrt()}
        if bool(unobserved.any()):
            metrics["rmse_unobserved"] = (image - self.ground_truth)[unobserved].square().mean().sqrt()
        return metrics

    def summary(self, selection: Selection) -> dict[str, float | int]:
        metrics = super().summary(selection)
        unobserved = (self.mask[0] == 0).expand_as(selection.image)
        if selection.std is not None and self.has_ground_truth and bool(unobserved.any()):
            inside = (selection.image - self.ground_truth[0]).abs() <= 2 * selection.std
            metrics["coverage_2std_unobserved"] = float(inside[unobserved].float().mean())
        return metrics

    def save_artifacts(self, run_dir: Path, selection: Selection) -> None:
        """signal.png (the band figure) and signal.npz (estimate, std, observation, mask, truth)."""
        sampled = selection.std is not None
        truth = self.ground_truth[0] if self.has_ground_truth else None
        save_band_figure(run_dir / "signal.png", selection.image, self.mask[0, 0].bool(), self.observation[0],
                         truth, selection.std, label="posterior mean" if sampled else "restored")
        arrays = {"estimate": selection.image, "observation": self.observation[0], "known": self.mask[0, 0]}
        arrays.update({"std": selection.std} if sampled else {})
        arrays.update({"truth": truth} if truth is not None else {})
        np.savez(run_dir / "signal.npz", **{k: v.detach().float().cpu().numpy() for k, v in arrays.items()})
