"""A task defined outside dip_lightning: colourisation, restoring an RGB image from its grey version.

Used by tests/test_new_task.py and walked through in docs/adding_a_task.md.
"""

from __future__ import annotations

import torch
from kornia.color import rgb_to_grayscale

from dip_lightning.tasks import RestorationTask


class Colorize(RestorationTask):
    """y = clip(grey(x) + n, 0, 1): the luma of an RGB image (kornia weights) plus noise of std `sigma`.

    The network outputs RGB (the ground truth's 3 channels); the loss compares its luma with y.
    """

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        grey = rgb_to_grayscale(clean)
        return (grey + torch.randn(grey.shape, generator=generator) * self.noise_std).clamp(0, 1)

    def forward_operator(self, output: torch.Tensor) -> torch.Tensor:
        return rgb_to_grayscale(output)
