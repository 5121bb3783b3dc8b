"""Denoising: y = clip(x + n, 0, 1), n ~ N(0, sigma²); A is the identity."""

from __future__ import annotations

import torch

from .base import RestorationTask


class Denoise(RestorationTask):
    """Gaussian denoising with noise std `sigma` (0-255 units, default 25), observation clipped to [0, 1]."""

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(clean.shape, generator=generator) * self.noise_std
        return (clean + noise).clamp(0, 1)
