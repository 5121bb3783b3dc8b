"""Callbacks of the strategies that return the mean and spread of stochastic forward passes (MC dropout, MFVI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from dip_lightning.nets.chains import chain_parameters, copy_chains
from dip_lightning.tasks.base import psnr

Steps = Callable[[L.LightningModule], torch.Tensor]
"""task -> (K,) long tensor on the device: the step each chain's stopping rule selects so far (0: none yet)."""

Predict = Callable[[L.LightningModule], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""task -> this process's chains' (count (K,), mean (K, C, *S), M2 (K, C, *S)) of a set of stochastic passes."""


class SelectedParameters(L.Callback):
    """Keeps each chain's parameters at the step its stopping rule selects (`selected_steps`), so that the
    network can be evaluated again there once fitting ends.

    The output of step s comes from the parameters before that step's update: they are copied at the start of
    every step, and kept for the chains whose selected step is this one (tensor ops, no host sync). Two copies
    of the parameters per step; saved in checkpoints.
    """

    def __init__(self, selected_steps: Steps) -> None:
        self.selected_steps = selected_steps
        self.params: list[torch.Tensor] = []
        self._before: list[torch.Tensor] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = chain_parameters(pl_module.net)  # a checkpoint may have restored the kept ones already
        self.params = [p.to(pl_module.device) for p in self.params] or [p.clone() for p in params]
        self._before = [p.clone() for p in params]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        torch._foreach_copy_(self._before, chain_parameters(pl_module.net))

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        copy_chains(self.params, self._before, self.selected_steps(pl_module) == pl_module.step)

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.params = state_dict["params"]


class PredictiveLog(L.Callback):
    """Every `every_n_steps` steps, `predict` the chains' stochastic passes and log, pooled over every
    process's chains (one all-reduce), the mean of their std as `std/posterior_mean` and, with a ground
    truth, the PSNR of their mean as `psnr/posterior_mean` (SGLD's key).

    Sent to the loggers directly (rank 0), at Lightning's step numbering of the metrics logged in the same
    step: through `LightningModule.log` a value would be written again, stale, at every later log step.
    One host sync per evaluation.
    """

    def __init__(self, predict: Predict, every_n_steps: int) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.predict = predict
        self.every_n_steps = every_n_steps

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        count, mean, m2 = self.predict(pl_module)
        weight = count.view(-1, *[1] * (mean.dim() - 1))
        sums = torch.stack([(weight * mean).sum(0), (m2 + weight * mean.square()).sum(0)])  # (2, C, *S)
        sums = trainer.strategy.reduce(torch.cat([count.sum()[None], sums.flatten()]), reduce_op="sum")
        total, (first, second) = sums[0], sums[1:].view(2, *mean.shape[1:])
        pooled = first / total
        variance = (second - total * pooled.square()).clamp(min=0) / (total - 1).clamp(min=1)
        metrics = {"std/posterior_mean": float(variance.sqrt().mean())}
        if pl_module.has_ground_truth:
            metrics["psnr/posterior_mean"] = float(psnr(pooled[None], pl_module.ground_truth, pl_module.data_range))
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step - 1)
