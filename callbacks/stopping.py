"""ES-WMV: blind early stopping by the windowed moving variance of the outputs (Wang et al.)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from dip_lightning.strategies.base import Selection
from dip_lightning.tracking import ArgBest


class WMVStopping(L.Callback):
    """Track VAR_t = mean_w ||x_w - mean_window||² / N over the last `window` outputs; stop after `patience`
    steps without a new minimum and select the output at the minimum.

    The window is a ring buffer with running sums (float64), so a step costs O(N), not O(window·N),
    and needs no host sync; the stop decision syncs once every `check_every_n_steps`.
    `use_ema` selects the EMA of outputs at the minimum instead of the raw output.
    """

    def __init__(self, window: int = 100, patience: int = 1000, use_ema: bool = False,
                 check_every_n_steps: int = 50) -> None:
        self.window = window
        self.patience = patience
        self.use_ema = use_ema
        self.check_every_n_steps = check_every_n_steps
        self.state: dict[str, torch.Tensor] = {}
        self.best: ArgBest | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # allocated here, after the task's setup; a checkpoint may already have filled the state
        output = pl_module.output
        n, device = output.numel(), output.device
        self.state = {k: v.to(device) for k, v in self.state.items()} or {
            "ring": torch.zeros(self.window, n, device=device),
            "sum": torch.zeros(n, dtype=torch.float64, device=device),
            "sum_sq": torch.zeros((), dtype=torch.float64, device=device),
        }
        best = ArgBest(output.shape).to(device)
        if self.best is not None:
            best.load_state_dict(self.best.state_dict())
        self.best = best

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        x = pl_module.output.reshape(-1)
        ring, total, total_sq = self.state["ring"], self.state["sum"], self.state["sum_sq"]
        slot = (trainer.global_step - 1) % self.window  # global_step has already counted this step
        old = ring[slot]
        total += x.double() - old.double()
        total_sq += x.double().square().sum() - old.double().square().sum()
        ring[slot] = x
        if trainer.global_step < self.window:
            return
        mean = total / self.window
        variance = (total_sq / self.window - mean.square().sum()) / x.numel()
        candidate = pl_module.ema if self.use_ema else pl_module.output
        self.best.update(-variance.float(), candidate, pl_module.step)
        if trainer.global_step % self.check_every_n_steps == 0:
            stale = trainer.global_step - int(self.best.step) >= self.patience
            if trainer.strategy.reduce_boolean_decision(stale, all=True):
                trainer.should_stop = True

    def selection(self, pl_module: L.LightningModule) -> Selection:
        """The output at the variance minimum; the last output if the run was shorter than the window."""
        if self.best is None or not self.best.found():
            return Selection(pl_module.output[0].clone(), int(pl_module.step))
        return Selection(self.best.image[0].clone(), int(self.best.step),
                         metrics={"wmv_variance_min": float(-self.best.score)})

    def state_dict(self) -> dict[str, Any]:
        return {**self.state, **{f"best.{k}": v for k, v in self.best.state_dict().items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = {k: state_dict[k] for k in ("ring", "sum", "sum_sq")}
        self.best = ArgBest(state_dict["best.image"].shape)
        self.best.load_state_dict({k[5:]: v for k, v in state_dict.items() if k.startswith("best.")})
