"""Stop a run whose chains' losses all became non-finite, keeping what they had found."""

from __future__ import annotations

from typing import Any

import lightning as L


class NonFiniteGuard(L.Callback):
    """Every `check_every_n_steps` (one host sync each), stop when every chain of every process has seen a
    non-finite loss.

    The task records each chain's non-finite losses on the device every step; a diverged chain's best
    finite output stands in for its diverged one (see `RestorationTask.finite_outputs`), and the other
    chains go on.
    """

    def __init__(self, check_every_n_steps: int = 25) -> None:
        self.check_every_n_steps = check_every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step % self.check_every_n_steps:
            return
        if trainer.strategy.reduce_boolean_decision(bool(pl_module.nonfinite.all()), all=True):
            trainer.should_stop = True
