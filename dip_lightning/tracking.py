"""Device-side bookkeeping that runs every step without a host synchronisation."""

from __future__ import annotations

import torch
from torch import nn


class ArgBest(nn.Module):
    """Keeps the image at the highest score seen so far, and its step, using only tensor ops.

    NaN scores never win, so a diverging run keeps its best finite image. State is in buffers:
    it moves with the module and is saved in checkpoints.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("score", torch.tensor(float("-inf")))
        self.register_buffer("step", torch.tensor(0))
        self.register_buffer("image", torch.zeros(shape))

    @torch.no_grad()
    def update(self, score: torch.Tensor, image: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Keep `image` (shape `shape`) if `score` (0-d) beats the best; returns the 0-d bool `improved`."""
        improved = score > self.score
        self.score.copy_(torch.where(improved, score, self.score))
        self.step.copy_(torch.where(improved, step, self.step))
        self.image.copy_(torch.where(improved, image, self.image))
        return improved

    def found(self) -> bool:
        """Whether any finite score was recorded (host sync: call outside the step loop)."""
        return bool(torch.isfinite(self.score))
