"""Backtracking: undo a step whose output suddenly fits the observation much worse (DIP's Adam guard)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from dip_lightning.nets.chains import chain_parameters, copy_chains


class Backtracking(L.Callback):
    """Restore a chain's last good parameters when its PSNR(A(output), y) falls more than `drop_db` below
    its last good one.

    A checked step is good for chain k when its PSNR to the observation (`task.psnr_observation[k]`) is at
    least its last good PSNR minus `drop_db`; the parameters that gave a good step are kept. Two ways to
    undo a bad step (parameters carry the chain index as their leading dimension; tensor arithmetic only,
    no host sync; a non-finite PSNR counts as bad):

    - `keep_update=False` (the SGD strategy): checked every `every_n_steps` steps; the bad step's update is
      replaced by the last good parameters. Checking every step costs a copy of the parameters per step.
    - `keep_update=True` (the GP-DIP notebook's SGLD, `sampler: paper`): checked at every step
      (`every_n_steps` 1), before the optimizer step: the parameters go back to the last good step's and the
      optimizer still takes its step, with the gradient of the bad output (and, for the paper mode, the
      weight noise). `rolled_back` (K,) says which chains were rolled back in the last step.
    """

    def __init__(self, drop_db: float = 5.0, every_n_steps: int = 10, keep_update: bool = False) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.drop_db = drop_db
        self.every_n_steps = every_n_steps
        self.keep_update = keep_update
        self.good_params: list[torch.Tensor] = []
        self.step_params: list[torch.Tensor] = []
        self.good_psnr: torch.Tensor | None = None
        self.rolled_back: torch.Tensor | None = None
        self._checking = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a checkpoint may have restored the last good state already
        params, device = chain_parameters(pl_module.net), pl_module.device
        self.good_params = [g.to(device) for g in self.good_params] or [p.clone() for p in params]
        self.step_params = [] if self.keep_update else [p.clone() for p in params]
        chains = params[0].shape[:1]  # every parameter is (K, ...)
        self.good_psnr = torch.full(chains, float("-inf")) if self.good_psnr is None else self.good_psnr
        self.good_psnr = self.good_psnr.to(device)
        self.rolled_back = torch.zeros(chains, dtype=torch.bool, device=device)

    def state_dict(self) -> dict[str, Any]:
        return {"good_params": self.good_params, "good_psnr": self.good_psnr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.good_params, self.good_psnr = state_dict["good_params"], state_dict["good_psnr"]

    def _judge(self, pl_module: L.LightningModule) -> torch.Tensor:
        """(K,) bool: this step's output is good; records its PSNR as the last good one where it is."""
        current = pl_module.psnr_observation  # (K,)
        good = current >= self.good_psnr - self.drop_db
        self.good_psnr = torch.where(good, current, self.good_psnr)
        return good

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._checking = trainer.global_step % self.every_n_steps == 0
        if self._checking and not self.keep_update:
            torch._foreach_copy_(self.step_params, chain_parameters(pl_module.net))

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if not (self.keep_update and self._checking):
            return
        good = self._judge(pl_module)  # the parameters still are those that gave this step's output
        params = chain_parameters(pl_module.net)
        copy_chains(self.good_params, params, good)
        copy_chains(params, self.good_params, ~good)
        self.rolled_back = ~good

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.keep_update or not self._checking:
            return
        good = self._judge(pl_module)
        # bad step: params <- good_params; good step: good_params <- the params this step started from
        copy_chains(chain_parameters(pl_module.net), self.good_params, ~good)
        copy_chains(self.good_params, self.step_params, good)
