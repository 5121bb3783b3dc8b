"""Posterior averaging: running moments of every chain's outputs, on the device, in checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from dip_lightning.moments import ChainMoments, batching
from dip_lightning.tasks.base import psnr

Sample = Callable[[L.LightningModule], tuple[torch.Tensor, torch.Tensor | None]]
"""task -> (the chains' samples of this step (K, C, *S), which to keep: (K,) bool on the device, or None: all)."""


class PosteriorAverage(L.Callback):
    """Accumulates the task's outputs (K, C, *S) every `thin` steps after `burn_in` steps into
    :class:`~dip_lightning.moments.ChainMoments` (per chain and per batch of consecutive samples, for the
    convergence diagnostics).

    Sample i (from 0) is taken when `trainer.global_step` = burn_in + (i + 1)·thin. `sample` (optional) gives
    the samples and may veto a chain's on the device (a Metropolis-adjusted chain's state, a chain that left
    the band); the task's outputs, all kept, by default. With a ground truth, the
    PSNR of the posterior mean pooled over all chains (of all processes: one all-reduce) is logged as
    `psnr/posterior_mean` at the sample steps where Lightning writes logs. The moments are saved in checkpoints.
    """

    def __init__(self, burn_in: int, thin: int, sample: Sample | None = None) -> None:
        if burn_in < 0 or thin < 1:
            raise ValueError(f"need burn_in >= 0 and thin >= 1, got burn_in={burn_in}, thin={thin}")
        self.burn_in = burn_in
        self.thin = thin
        self.sample = sample
        self.moments: ChainMoments | None = None
        self._loaded: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # allocated here, after the task's setup; a checkpoint may have filled `_loaded` already
        chains, *shape = pl_module.output.shape
        batches, batch_size = batching(self.planned_samples(trainer.max_steps))
        if self._loaded:  # the batch layout of the run that saved them
            batches, batch_size = self._loaded["count"].shape[1], int(self._loaded["batch_size"])
        self.moments = ChainMoments(chains, batches, batch_size, tuple(shape)).to(pl_module.output)  # its device, dtype
        if self._loaded:
            self.moments.load_state_dict({k: v for k, v in self._loaded.items() if k != "batch_size"})
            self.moments.replan(self.planned_samples(trainer.max_steps))  # a resume may run longer

    def planned_samples(self, max_steps: int) -> int:
        """Samples per chain of a run of `max_steps` steps that no guard stops."""
        return max(0, max_steps - self.burn_in) // self.thin

    def sample_index(self, global_step: int) -> int | None:
        """The index of the sample taken at the step that brought the trainer to `global_step`, or None."""
        if global_step <= self.burn_in or (global_step - self.burn_in) % self.thin:
            return None
        return (global_step - self.burn_in) // self.thin - 1

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        index = self.sample_index(trainer.global_step)
        if index is None:
            return
        output, keep = (pl_module.output, None) if self.sample is None else self.sample(pl_module)
        self.moments.update(output, index, keep)
        if pl_module.has_ground_truth and trainer.global_step % trainer.log_every_n_steps == 0:
            count, mean, _ = self.moments.posterior()
            weighted = torch.cat([count[None], (count * mean).flatten()])  # summed over processes: one all-reduce
            weighted = trainer.strategy.reduce(weighted, reduce_op="sum")
            mean = (weighted[1:] / weighted[0].clamp(min=1)).reshape(mean.shape)
            pl_module.log("psnr/posterior_mean", psnr(mean[None], pl_module.ground_truth, pl_module.data_range))

    def state_dict(self) -> dict[str, Any]:
        if self.moments is None:
            return dict(self._loaded)
        return {**self.moments.state_dict(), "batch_size": torch.tensor(self.moments.batch_size)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)
