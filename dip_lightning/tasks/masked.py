"""Tasks that observe only some entries of the signal: y = M ⊙ (x + n), the loss on known entries only."""

from __future__ import annotations

import torch

from .base import RestorationTask, psnr


class MaskedTask(RestorationTask):
    """A RestorationTask whose operator A keeps the entries where the binary `mask` buffer is 1.

    The mask (1, 1, *S) is shared by all channels; a subclass sets it (with `set_mask`) before the
    loss is first evaluated. The loss (under either likelihood) averages over the known entries only.
    Metrics add `psnr_missing`, the PSNR over the entries that were not observed.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("mask", None)

    def set_mask(self, known: torch.Tensor) -> None:
        """Store the known entries `known` (*S), bool or 0/1, as the (1, 1, *S) float `mask` buffer."""
        self.register_buffer("mask", known.float().reshape(1, 1, *known.shape))
        self._num_known = int(known.sum())  # counted once here: the loss needs it every step without a sync

    def forward_operator(self, output: torch.Tensor) -> torch.Tensor:
        return output * self.mask

    @property
    def observed_mask(self) -> torch.Tensor:
        return self.mask

    @property
    def num_observed(self) -> int:
        """P = known entries x channels."""
        return self._num_known * self.observation.shape[1]

    def image_metrics(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        metrics = super().image_metrics(image)
        missing = (self.mask == 0).expand_as(image)
        if bool(missing.any()):
            metrics["psnr_missing"] = psnr(image[missing], self.ground_truth[missing], self.data_range)
        return metrics
