"""ES-WMV: blind early stopping by the windowed moving variance of the outputs (Wang et al.)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from dip_lightning.tracking import ArgBest


class WMVStopping(L.Callback):
    """Per chain, track VAR_t = mean_w ||x_w - mean_window||² / N over its last `window` outputs; a chain is
    done once `patience` steps have passed without a new minimum, and its output at the minimum is selected.

    Each chain's minimum is decided on every step on the device (a done chain's minimum is frozen), so the
    selected outputs do not depend on how often the host looks; the run stops at the first check (one host
    sync every `check_every_n_steps`) at which every chain of every process is done. The window is a ring
    buffer with running sums (float64), so a step costs O(K·N), not O(window·K·N).
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
        (chains, *_), n, device = output.shape, output[0].numel(), output.device
        self.state = {k: v.to(device) for k, v in self.state.items()} or {
            "ring": torch.zeros(self.window, chains, n, device=device),
            "sum": torch.zeros(chains, n, dtype=torch.float64, device=device),
            "sum_sq": torch.zeros(chains, dtype=torch.float64, device=device),
            "done": torch.zeros(chains, dtype=torch.bool, device=device),
        }
        best = ArgBest(output.shape).to(device)
        if self.best is not None:
            best.load_state_dict(self.best.state_dict())
        self.best = best

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        x = pl_module.output.flatten(1)  # (K, N)
        ring, total, total_sq, done = (self.state[k] for k in ("ring", "sum", "sum_sq", "done"))
        slot = (trainer.global_step - 1) % self.window  # global_step has already counted this step
        old = ring[slot]
        total += x.double() - old.double()
        total_sq += x.double().square().sum(1) - old.double().square().sum(1)
        ring[slot] = x
        if trainer.global_step < self.window:
            return
        mean = total / self.window
        variance = (total_sq / self.window - mean.square().sum(1)) / x.shape[1]
        candidate = pl_module.ema if self.use_ema else pl_module.output
        self.best.update(-variance.float(), candidate, pl_module.step, active=~done)
        done |= pl_module.step - self.best.step >= self.patience
        if trainer.global_step % self.check_every_n_steps == 0 and trainer.strategy.reduce_boolean_decision(
                bool(done.all()), all=True):
            trainer.should_stop = True

    def selection(self, pl_module: L.LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        """Each chain's output at its variance minimum and the step, (K, C, *S) and (K,); the last outputs
        if the run was shorter than the window."""
        if self.best is None or not self.best.found():
            return pl_module.output, pl_module.step.expand(pl_module.output.shape[0])
        return self.best.image, self.best.step

    def state_dict(self) -> dict[str, Any]:
        return {**self.state, **{f"best.{k}": v for k, v in self.best.state_dict().items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = {k: state_dict[k] for k in ("ring", "sum", "sum_sq", "done")}
        self.best = ArgBest(state_dict["best.image"].shape)
        self.best.load_state_dict({k[5:]: v for k, v in state_dict.items() if k.startswith("best.")})
