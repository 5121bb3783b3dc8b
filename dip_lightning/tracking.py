"""Device-side bookkeeping that runs every step without a host synchronisation."""

from __future__ import annotations

import torch
from torch import nn


class ArgBest(nn.Module):
    """Keeps each chain's image at the highest score it has seen so far, and its step, using only tensor ops.

    `shape` is (K, ...): K chains, each with its own score (K,), step (K,) and image. NaN scores never
    win, so a diverging chain keeps its best finite image. State is in buffers: it moves with the module
    and is saved in checkpoints.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("score", torch.full(shape[:1], float("-inf")))
        self.register_buffer("step", torch.zeros(shape[:1], dtype=torch.long))
        self.register_buffer("image", torch.zeros(shape))

    @torch.no_grad()
    def update(self, score: torch.Tensor, image: torch.Tensor, step: torch.Tensor,
               active: torch.Tensor | None = None) -> torch.Tensor:
        """Keep chain k's `image[k]` if `score[k]` beats its best (and `active[k]`, when given); returns the
        (K,) bool `improved`. `step` is 0-d."""
        improved = score > self.score
        if active is not None:
            improved &= active
        self.score.copy_(torch.where(improved, score, self.score))
        self.step.copy_(torch.where(improved, step, self.step))
        self.image.copy_(torch.where(improved.view(-1, *[1] * (image.dim() - 1)), image, self.image))
        return improved

    def found(self) -> bool:
        """Whether any chain recorded a finite score (host sync: call outside the step loop)."""
        return bool(torch.isfinite(self.score).any())
