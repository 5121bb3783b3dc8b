"""Denoising: y = clip(x + n, 0, 1), n Gaussian N(0, sigma²) or Poisson-Gaussian (`model.noise`); A is the identity."""

from __future__ import annotations

import torch

from .base import RestorationTask


class Denoise(RestorationTask):
    """Denoising of noise std `sigma` (0-255 units, default 25; or Poisson-Gaussian noise, `model.noise`),
    observation clipped to [0, 1]."""

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.add_noise(clean, generator)
