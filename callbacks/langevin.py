"""Steering a Langevin chain: its samples, the end of its burn-in, its diagnostics and its divergence guard."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from dip_lightning.optim.sgld import Langevin


class LangevinChain(L.Callback):
    """Runs beside a sampler of `dip_lightning.optim` (K chains, tensors (K,) on the device).

    - Samples: chain k's state after a step is the point its optimizer accepted: unadjusted, the point
      evaluated in that step; Metropolis-adjusted, that point if accepted, else the previous state, whose
      output then counts again. `sample(task)` gives the states' outputs (K, C, *S) and which to keep.
    - Burn-in: after `burn_in` steps a PSGLD preconditioner is frozen (when `freeze_preconditioner`); the
      optimizer ends its step-size adaptation itself.
    - Diagnostics after burn-in, per chain (`diagnostics`): the mean MSE of the state's output to the
      observation over the uncensored entries, over the noise variance (the task's `noise_ratio`: σ², each
      chain's current one when inferred, or a·f + b per entry; `mse_observation_ratio`, near 1 for a chain that
      samples the posterior; 2-3 marks one hotter than its target); the mean Metropolis-Hastings
      acceptance probability of its moves (`mh_accept_prob`; for an unadjusted chain a gauge of its
      discretisation bias: near 1 accurate, near 0 far off); Metropolis-adjusted, the fraction of
      proposals accepted (`acceptance_rate`); the step size (`step_size`, in units of lr); samples taken
      after a recovery (`samples_after_recovery`). Curves `mcmc/*` go to the loggers.
    - Guard (a truncation of the target, not part of it): after burn-in a state whose MSE to the
      observation over its uncensored entries exceeds `max_mse_ratio` times the noise variance is out of band
      and gives no sample. Every `check_every_n_steps` steps (one host sync) a chain that left the band since the last
      check goes back to its last in-band state saved at a check and goes on at `recovery_step_factor`
      times its step size (a smaller step: less discretisation error, so a different stationary law for
      an unadjusted chain), at most `max_recoveries` times; a chain with no in-band state saved, or none
      left to spend, has left (`left_step`, 0: never) and gives no more samples. A Metropolis-adjusted
      chain rejects proposals that jump out of the band, so it needs the guard only for numerical
      blow-ups. The run stops at the first check at which every chain of every process has left.
      `max_mse_ratio=inf` disables the guard.
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
        self.state: dict[str, torch.Tensor] = {}  # per-chain trackers (see `on_train_start`), in checkpoints
        self.good_state: torch.Tensor | None = None  # (K, D) each chain's last in-band state saved at a check
        self._sample_output: torch.Tensor | None = None
        self._sample_ratio: torch.Tensor | None = None  # (K,) float64 each state's noise_ratio

    # ----- state -----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        chains, device = pl_module.output.shape[0], pl_module.device
        long = torch.zeros(chains, dtype=torch.long, device=device)
        fresh = {"left_step": long, "recoveries": long, "first_recovery_step": long,
                 "samples_after_recovery": long, "has_good": long.bool(), "pending": long.bool(),
                 "post_steps": long, "mse_ratio_sum": long.double(), "prob_sum": long.double(),
                 "prob_count": long, "accepted_sum": long}
        self.state = {key: self.state[key].to(device) if key in self.state else value.clone()
                      for key, value in fresh.items()}
        if self.good_state is not None:
            self.good_state = self.good_state.to(device)
        if self._sample_output is None:
            self._sample_output, self._sample_ratio = torch.zeros_like(pl_module.output), long.double()
        self._sample_output, self._sample_ratio = self._sample_output.to(device), self._sample_ratio.to(device)

    def state_dict(self) -> dict[str, Any]:
        return {**self.state, "good_state": self.good_state, "sample_output": self._sample_output,
                "sample_ratio": self._sample_ratio}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.good_state, self._sample_output, self._sample_ratio = (
            state.pop(k) for k in ("good_state", "sample_output", "sample_ratio"))
        self.state = state

    # ----- the chain ---------------------------------------------------------------------------------------
    def sample(self, pl_module: L.LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        """The chains' current samples (K, C, *S) and which to keep (K,) bool: in band, not left, not waiting
        for a recovery. Counts the kept samples of recovered chains."""
        state = self.state
        keep = (state["left_step"] == 0) & ~state["pending"] & self._in_band()
        state["samples_after_recovery"] += keep & (state["recoveries"] > 0)
        return self._sample_output, keep

    def _in_band(self) -> torch.Tensor:
        return self._sample_ratio <= self.max_mse_ratio  # NaN is out of band

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        optimizer = trainer.optimizers[0]
        langevin = isinstance(optimizer, Langevin)
        step, state = trainer.global_step, self.state
        if langevin and optimizer.metropolis:
            accepted = optimizer.accepted
            self._sample_output = torch.where(accepted.view(-1, *[1] * (pl_module.output.dim() - 1)),
                                              pl_module.output, self._sample_output)
            self._sample_ratio = torch.where(accepted, pl_module.noise_ratio, self._sample_ratio)
        else:
            self._sample_output, self._sample_ratio = pl_module.output, pl_module.noise_ratio
        checking = step % self.check_every_n_steps == 0
        can_recover = langevin and self.max_recoveries > 0 and not math.isinf(self.max_mse_ratio)
        if step >= self.burn_in:
            if step == self.burn_in and self.freeze_preconditioner and hasattr(optimizer, "freeze_preconditioner"):
                optimizer.freeze_preconditioner()
            self._record(pl_module, optimizer if langevin else None)
            self._guard(step, can_recover)
            if checking and can_recover:
                self._recover(optimizer, step)
        if checking and can_recover:  # save each chain's state while it is in band
            good = self._in_band() & (state["left_step"] == 0) & ~state["pending"]
            point = optimizer.state_point()
            self.good_state = point.clone() if self.good_state is None else torch.where(good[:, None], point,
                                                                                          self.good_state)
            state["has_good"] |= good
        if step > self.burn_in and checking:
            if trainer.strategy.reduce_boolean_decision(bool((state["left_step"] > 0).all()), all=True):
                trainer.should_stop = True  # every process stops together, like the other guards
                rank_zero_warn(f"every Langevin chain left the band MSE(observation) <= {self.max_mse_ratio} "
                               f"sigma² by step {step} and the run was stopped (diverged, or sigma is smaller "
                               f"than the real noise); the posterior keeps the samples taken before")
        if step % trainer.log_every_n_steps == 0:
            self._log(pl_module, optimizer if langevin else None)

    def _record(self, pl_module: L.LightningModule, optimizer: Langevin | None) -> None:
        """Accumulate the diagnostics of this post-burn-in step for the chains that have not left."""
        state = self.state
        active = state["left_step"] == 0
        ratio = self._sample_ratio
        counted = active & ratio.isfinite()
        state["mse_ratio_sum"] += torch.where(counted, ratio, 0.0)
        state["post_steps"] += counted
        if optimizer is not None and optimizer.compared_energies:  # else every accept_prob is NaN: none counts
            prob = optimizer.accept_prob
            valid = active & ~prob.isnan()
            state["prob_sum"] += torch.where(valid, prob.double(), 0.0)
            state["prob_count"] += valid
            state["accepted_sum"] += valid & optimizer.accepted

    def _guard(self, step: int, can_recover: bool) -> None:
        """Out of band: a chain that can recover waits for the next check; one that cannot has left."""
        state = self.state
        out = ~self._in_band() & (state["left_step"] == 0)
        recoverable = (state["has_good"] & (state["recoveries"] < self.max_recoveries)) if can_recover else \
            torch.zeros_like(out)
        state["left_step"].copy_(torch.where(out & ~recoverable, step, state["left_step"]))
        state["pending"] |= out & recoverable

    def _recover(self, optimizer: Langevin, step: int) -> None:
        """At a check: the chains that left the band since the last one go back to their saved state."""
        state = self.state
        recover = state["pending"]
        if not bool(recover.any()):  # the one host sync of a check (rarely true)
            return
        optimizer.restart(recover, self.good_state)
        optimizer.scale_steps(recover, self.recovery_step_factor)
        state["first_recovery_step"].copy_(torch.where(recover & (state["recoveries"] == 0), step,
                                                       state["first_recovery_step"]))
        state["recoveries"] += recover
        state["pending"].zero_()

    def _log(self, pl_module: L.LightningModule, optimizer: Langevin | None) -> None:
        metrics = {"mcmc/mse_ratio": self._sample_ratio.mean()}
        if optimizer is not None:
            metrics["mcmc/accept_prob"] = optimizer.accept_prob.nanmean()
            metrics["mcmc/step_size"] = optimizer.param_groups[0]["lr"] * optimizer.step_scale.mean()
        pl_module.log_dict(metrics)

    # ----- results -----------------------------------------------------------------------------------------
    def diagnostics(self, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """Per-chain figures (K,) after burn-in: see the class docstring; NaN where there is none."""
        state = self.state
        steps = state["post_steps"].double()
        figures = {"mse_ratio_sum": state["mse_ratio_sum"], "post_steps": steps,
                   "mh_accept_prob": state["prob_sum"] / state["prob_count"].double(),
                   "samples_after_recovery": state["samples_after_recovery"],
                   "recoveries": state["recoveries"], "first_recovery_step": state["first_recovery_step"],
                   "left_step": state["left_step"]}
        if isinstance(optimizer, Langevin):
            figures["step_size"] = optimizer.param_groups[0]["lr"] * optimizer.step_scale.double()
            if optimizer.metropolis:
                figures["acceptance_rate"] = state["accepted_sum"].double() / state["prob_count"].double()
        return figures
