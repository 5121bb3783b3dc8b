"""Steering a Langevin chain: preconditioner freeze after burn-in, divergence guard."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn


class LangevinChain(L.Callback):
    """Runs beside a Langevin optimizer of `dip_lightning.optim`.

    - After `burn_in` steps it freezes a PSGLD preconditioner (when `freeze_preconditioner`), which
      removes the bias of the omitted correction term; the flag travels in the optimizer's state.
    - Divergence guard: after burn-in, a step whose MSE to the observation over its uncensored entries
      (the task's `mse_interior`) exceeds `max_mse_ratio`·sigma² is out of band (a posterior sample fits
      those entries to about sigma²);
      `in_band` vetoes its sample and the run stops at the next check (one host sync every
      `check_every_n_steps`). `max_mse_ratio=inf` disables the guard.
    """

    def __init__(self, burn_in: int, freeze_preconditioner: bool = True, max_mse_ratio: float = 3.0,
                 check_every_n_steps: int = 25) -> None:
        self.burn_in = burn_in
        self.freeze_preconditioner = freeze_preconditioner
        self.max_mse_ratio = max_mse_ratio
        self.check_every_n_steps = check_every_n_steps
        self.left_band: torch.Tensor | None = None
        self.stopped_at: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.left_band = torch.tensor(False, device=pl_module.device)

    def in_band(self, pl_module: L.LightningModule, outputs: Any) -> torch.Tensor:
        """0-d bool on the device: this step's MSE over the uncensored entries is within the band (every chain's)."""
        # inf disables the guard even for a noise-free task (sigma = 0), where inf·sigma² would be NaN
        bound = math.inf if math.isinf(self.max_mse_ratio) else self.max_mse_ratio * pl_module.noise_std**2
        return (pl_module.mse_interior <= bound).all()  # NaN is out of band

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step < self.burn_in:
            return
        optimizer = trainer.optimizers[0]
        if self.freeze_preconditioner and hasattr(optimizer, "freeze_preconditioner") and not optimizer.frozen:
            optimizer.freeze_preconditioner()
        self.left_band |= ~self.in_band(pl_module, outputs)
        if step % self.check_every_n_steps == 0 and trainer.strategy.reduce_boolean_decision(
                bool(self.left_band), all=False):  # every process stops together, like the other guards
            self.stopped_at = step
            trainer.should_stop = True
            rank_zero_warn(f"the Langevin chain left the band MSE(observation) <= {self.max_mse_ratio} sigma² at step "
                           f"<= {step} and was stopped (diverged, or sigma is smaller than the real noise); the "
                           f"posterior keeps the samples taken before")
