"""Posterior averaging: running mean and variance of a chain's outputs, on the device, in checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from dip_lightning.tasks.base import psnr

Accept = Callable[[L.LightningModule, Any], torch.Tensor]
"""(task, training_step outputs) -> 0-d bool tensor on the device: keep this step's sample."""


def merge_moments(a: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                  b: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chan et al.'s merge of two sample sets' (count, mean, M2) into the moments of their union.

    count is a 0-d float tensor, mean and M2 (sum of squared deviations) share one shape. Either set may
    be empty (count 0). This is the reduction a multi-chain run applies across processes.
    """
    (na, mean_a, m2_a), (nb, mean_b, m2_b) = a, b
    n = na + nb
    share = nb / n.clamp(min=1)
    delta = mean_b - mean_a
    return n, mean_a + delta * share, m2_a + m2_b + delta.square() * na * share


class Moments(nn.Module):
    """Welford's online mean and M2 of same-shaped samples; buffers, so they move and checkpoint with it.

    `update` takes an optional 0-d bool `keep` (a rejected sample, even a non-finite one, changes
    nothing), so the caller never has to branch on a device value. No list of samples is kept.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("count", torch.tensor(0.0))
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("m2", torch.zeros(shape))

    @torch.no_grad()
    def update(self, sample: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        """Add `sample` (shape `shape`) unless `keep` is False; tensor ops only."""
        if keep is not None:
            sample = torch.where(keep, sample, self.mean)  # a rejected sample adds a zero deviation
            self.count += keep
        else:
            self.count += 1
        delta = sample - self.mean
        self.mean += delta / self.count.clamp(min=1)
        self.m2 += delta * (sample - self.mean)

    def state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count, mean, M2): the mergeable state."""
        return self.count, self.mean, self.m2

    def variance(self) -> torch.Tensor:
        """Unbiased sample variance M2 / (count − 1); zeros with fewer than two samples."""
        return self.m2 / (self.count - 1).clamp(min=1)


class PosteriorAverage(L.Callback):
    """Accumulates the task's output every `thin` steps after `burn_in` steps into :class:`Moments`.

    Works for any task that keeps its latest output in `task.output` (1, C, *S). Sample k is taken when
    `trainer.global_step` = burn_in + k·thin. `accept` (optional) vetoes a sample on the device (e.g. a
    chain that left the posterior). With a ground truth, the PSNR of the running posterior mean is logged
    as `psnr/posterior_mean` at each sample. The moments are saved in checkpoints.
    """

    def __init__(self, burn_in: int, thin: int, accept: Accept | None = None) -> None:
        if burn_in < 0 or thin < 1:
            raise ValueError(f"need burn_in >= 0 and thin >= 1, got burn_in={burn_in}, thin={thin}")
        self.burn_in = burn_in
        self.thin = thin
        self.accept = accept
        self.moments: Moments | None = None
        self._loaded: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # allocated here, after the task's setup; a checkpoint may have filled `_loaded` already
        self.moments = Moments(tuple(pl_module.output.shape)).to(pl_module.device)
        if self._loaded:
            self.moments.load_state_dict(self._loaded)

    def is_sample_step(self, global_step: int) -> bool:
        """Whether the step that brought the trainer to `global_step` yields a sample."""
        return global_step > self.burn_in and (global_step - self.burn_in) % self.thin == 0

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.is_sample_step(trainer.global_step):
            return
        keep = None if self.accept is None else self.accept(pl_module, outputs)
        self.moments.update(pl_module.output, keep)
        if pl_module.has_ground_truth:
            mean_psnr = psnr(self.moments.mean, pl_module.ground_truth, pl_module.data_range)
            pl_module.log("psnr/posterior_mean", mean_psnr)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.moments.state_dict()) if self.moments is not None else dict(self._loaded)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)
