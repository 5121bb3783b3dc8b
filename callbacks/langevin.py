"""Steering a Langevin chain: preconditioner freeze after burn-in, divergence guard with recovery."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from dip_lightning.nets.chains import chain_parameters, copy_chains


class LangevinChain(L.Callback):
    """Runs beside a Langevin optimizer of `dip_lightning.optim`.

    - After `burn_in` steps it freezes a PSGLD preconditioner (when `freeze_preconditioner`), which
      removes the bias of the omitted correction term; the flag travels in the optimizer's state.
    - Divergence guard, per chain: after burn-in, a step whose MSE to the observation over its uncensored
      entries (the task's `mse_interior`, (K,)) exceeds `max_mse_ratio`·sigma² is out of band (a posterior
      sample fits those entries to about sigma²). `max_mse_ratio=inf` disables the guard.
    - Recovery: every `check_every_n_steps` steps each chain that is in band has its parameters saved. A
      chain that leaves the band goes back to its last saved parameters and goes on with its step size
      times `recovery_step_factor` (the optimizer's `chain_step_scale`: a smaller step targets the same
      posterior, with less discretisation error), at most `max_recoveries` times; `recoveries` (K,) counts
      them and `first_recovery_step` (K,) says from which step (0: never). Once its recoveries are spent, a
      chain that leaves the band gives no more samples (`in_band`), and `left_step` (K,) records when
      (0: never).
    - The run stops at the first check (one host sync every `check_every_n_steps`) at which every chain
      of every process has left. Everything else is tensor arithmetic on the device.
    """

    def __init__(self, burn_in: int, freeze_preconditioner: bool = True, max_mse_ratio: float = 3.0,
                 max_recoveries: int = 3, recovery_step_factor: float = 0.5, check_every_n_steps: int = 25) -> None:
        if max_recoveries < 0 or not 0.0 < recovery_step_factor <= 1.0:
            raise ValueError(f"need max_recoveries >= 0 and 0 < recovery_step_factor <= 1, got {max_recoveries} "
                             f"and {recovery_step_factor}")
        self.burn_in = burn_in
        self.freeze_preconditioner = freeze_preconditioner
        self.max_mse_ratio = max_mse_ratio
        self.max_recoveries = max_recoveries
        self.recovery_step_factor = recovery_step_factor
        self.check_every_n_steps = check_every_n_steps
        self.left_step: torch.Tensor | None = None
        self.recoveries: torch.Tensor | None = None
        self.first_recovery_step: torch.Tensor | None = None
        self.step_scale: torch.Tensor | None = None
        self.good_params: list[torch.Tensor] = []  # each chain's last parameters that gave an in-band output
        self._step_params: list[torch.Tensor] = []  # the parameters a checked step started from
        self._step_in_band: torch.Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a checkpoint may have restored the state already
        chains, device = pl_module.output.shape[0], pl_module.device
        zeros = lambda: torch.zeros(chains, dtype=torch.long, device=device)  # noqa: E731
        self.left_step = zeros() if self.left_step is None else self.left_step.to(device)
        self.recoveries = zeros() if self.recoveries is None else self.recoveries.to(device)
        self.first_recovery_step = zeros() if self.first_recovery_step is None else self.first_recovery_step.to(device)
        self.step_scale = (torch.ones(chains, device=device) if self.step_scale is None
                           else self.step_scale.to(device))
        params = chain_parameters(pl_module.net)
        self.good_params = [g.to(device) for g in self.good_params] or [p.clone() for p in params]
        self._step_params = [p.clone() for p in params]
        for group in trainer.optimizers[0].param_groups:  # SGLD / PSGLD read chain k's step scale from here
            if "chain_step_scale" in group:
                group["chain_step_scale"] = self.step_scale

    def state_dict(self) -> dict[str, Any]:
        return {"left_step": self.left_step, "recoveries": self.recoveries,
                "first_recovery_step": self.first_recovery_step, "step_scale": self.step_scale,
                "good_params": self.good_params}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            setattr(self, key, value)

    def in_band(self, pl_module: L.LightningModule, outputs: Any) -> torch.Tensor:
        """(K,) bool on the device: chain k's output of this step is in band and the chain has not left."""
        return (self.left_step == 0) & self._step_in_band

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step % self.check_every_n_steps == 0:
            torch._foreach_copy_(self._step_params, chain_parameters(pl_module.net))

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        # inf disables the guard even for a noise-free task (sigma = 0), where inf·sigma² would be NaN
        bound = math.inf if math.isinf(self.max_mse_ratio) else self.max_mse_ratio * pl_module.noise_std**2
        out_of_band = ~(pl_module.mse_interior <= bound)  # NaN is out of band
        self._step_in_band = ~out_of_band
        params = chain_parameters(pl_module.net)  # this step's update is in them already
        checking = (step - 1) % self.check_every_n_steps == 0  # this step started at a check: `_step_params`
        if step < self.burn_in:
            if checking:
                copy_chains(self.good_params, self._step_params, ~out_of_band)
            return
        optimizer = trainer.optimizers[0]
        if self.freeze_preconditioner and hasattr(optimizer, "freeze_preconditioner") and not optimizer.frozen:
            optimizer.freeze_preconditioner()
        active = self.left_step == 0
        recover = out_of_band & active & (self.recoveries < self.max_recoveries)
        copy_chains(params, self.good_params, recover)
        self.step_scale.copy_(torch.where(recover, self.step_scale * self.recovery_step_factor, self.step_scale))
        self.first_recovery_step.copy_(torch.where(recover & (self.recoveries == 0), pl_module.step,
                                                   self.first_recovery_step))
        self.recoveries.add_(recover.long())
        self.left_step.copy_(torch.where(out_of_band & active & ~recover, pl_module.step, self.left_step))
        if checking:
            copy_chains(self.good_params, self._step_params, ~out_of_band & (self.left_step == 0))
        if step % self.check_every_n_steps == 0:
            if trainer.strategy.reduce_boolean_decision(bool((self.left_step > 0).all()), all=True):
                trainer.should_stop = True  # every process stops together, like the other guards
                rank_zero_warn(f"every Langevin chain left the band MSE(observation) <= {self.max_mse_ratio} "
                               f"sigma² by step {step} and the run was stopped (diverged, or sigma is smaller "
                               f"than the real noise); the posterior keeps the samples taken before")
