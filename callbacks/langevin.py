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
    - Divergence guard, per chain: after burn-in, a step whose MSE to the observation over its uncensored
      entries (the task's `mse_interior`, (K,)) exceeds `max_mse_ratio`·sigma² is out of band (a posterior
      sample fits those entries to about sigma²); a chain
      that left the band gives no more samples (`in_band`), `left_step` (K,) records when (0: never), and the
      run stops at the first check (one host sync every `check_every_n_steps`) at which every chain of every
      process has left. `max_mse_ratio=inf` disables the guard.
    """

    def __init__(self, burn_in: int, freeze_preconditioner: bool = True, max_mse_ratio: float = 3.0,
                 check_every_n_steps: int = 25) -> None:
        self.burn_in = burn_in
        self.freeze_preconditioner = freeze_preconditioner
        self.max_mse_ratio = max_mse_ratio
        self.check_every_n_steps = check_every_n_steps
        self.left_step: torch.Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        chains = pl_module.output.shape[0]
        self.left_step = torch.zeros(chains, dtype=torch.long, device=pl_module.device)

    def in_band(self, pl_module: L.LightningModule, outputs: Any) -> torch.Tensor:
        """(K,) bool on the device: chain k has stayed within the band up to this step."""
        return self.left_step == 0

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step < self.burn_in:
            return
        optimizer = trainer.optimizers[0]
        if self.freeze_preconditioner and hasattr(optimizer, "freeze_preconditioner") and not optimizer.frozen:
            optimizer.freeze_preconditioner()
        # inf disables the guard even for a noise-free task (sigma = 0), where inf·sigma² would be NaN
        bound = math.inf if math.isinf(self.max_mse_ratio) else self.max_mse_ratio * pl_module.noise_std**2
        out_of_band = ~(pl_module.mse_interior <= bound)  # NaN is out of band
        self.left_step.copy_(torch.where(out_of_band & (self.left_step == 0), pl_module.step, self.left_step))
        if step % self.check_every_n_steps == 0 and trainer.strategy.reduce_boolean_decision(
                bool((self.left_step > 0).all()), all=True):  # every process stops together, like the other guards
            trainer.should_stop = True
            rank_zero_warn(f"every Langevin chain left the band MSE(observation) <= {self.max_mse_ratio} sigma² by "
                           f"step {step} and the run was stopped (diverged, or sigma is smaller than the real "
                           f"noise); the posterior keeps the samples taken before")
