"""Stop a run whose loss became non-finite, keeping what it had found."""

from __future__ import annotations

from typing import Any

import lightning as L


class NonFiniteGuard(L.Callback):
    """Every `check_every_n_steps` (one host sync each), stop when a non-finite loss has been seen.

    The task records non-finite losses on the device every step; its best finite output is saved
    instead of a diverged one (see `RestorationTask.select`).
    """

    def __init__(self, check_every_n_steps: int = 25) -> None:
        self.check_every_n_steps = check_every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step % self.check_every_n_steps:
            return
        if trainer.strategy.reduce_boolean_decision(bool(pl_module.nonfinite), all=False):
            trainer.should_stop = True
