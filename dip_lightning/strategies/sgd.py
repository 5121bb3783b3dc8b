"""Gradient descent (Adam or SGD) with a stopping rule: the classic DIP protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from lightning.pytorch import Callback

from ..errors import InputError
from .base import Gather, Selection, Strategy, chain_metrics, uncertainty_selection

if TYPE_CHECKING:
    from ..tasks.base import RestorationTask


class SGD(Strategy):
    """Fit θ by Adam/SGD and return one output chosen by a stopping rule (docs/science.md §2).

    With several chains (independent restarts), each chain's output is chosen by the rule alone and the
    returned image is their average (the DIP paper's averaging of runs); metrics.json reports each
    restart's own PSNR (`psnr_per_chain`). The restarts are then a deep ensemble: the std of their chosen
    outputs (unbiased, over all K) is the uncertainty, written like a sampler's (uncertainty.png,
    posterior_std.npy, `psnr_posterior_mean` and the calibration figures `uce`, `coverage_95`, `nll`).

    Args:
        optimizer: `adam` (DIP's default), `adamw` (Adam with decoupled weight decay: the MC-dropout DIP's)
            or `sgd`.
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 weight decay.
        stopping: `fixed` returns the last output after `trainer.max_steps`; `oracle` the output of best
            ground-truth PSNR (benchmarks only: needs the ground truth); `wmv` ES-WMV, blind: stops when
            the windowed output variance has not reached a new minimum for `patience` steps and returns
            the output at that minimum.
        window: ES-WMV window W (outputs).
        patience: ES-WMV patience P (steps).
        use_ema: return the exponential moving average of outputs instead of the raw output
            ("SGD+Avg"; with `oracle`/`wmv` the EMA at the selected step).
        backtracking: restore the last good parameters when the PSNR to the observation drops by more than
            `backtracking_drop_db` between two checks (guards against Adam instabilities).
        backtracking_drop_db: the PSNR drop (dB) that counts as an instability.
        backtracking_every_n_steps: steps between two backtracking checks (DIP's code checks every 100).
        chains: independent restarts per process (each its own initialisation, code and jitter).
    """

    name = "sgd"

    def __init__(self, optimizer: Literal["adam", "adamw", "sgd"] = "adam", lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, stopping: Literal["fixed", "oracle", "wmv"] = "fixed",
                 window: int = 100, patience: int = 1000, use_ema: bool = False, backtracking: bool = True,
                 backtracking_drop_db: float = 5.0, backtracking_every_n_steps: int = 10, chains: int = 1) -> None:
        super().__init__(chains)
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.stopping = stopping
        self.window = window
        self.patience = patience
        self.use_ema = use_ema
        self.backtracking = backtracking
        self.backtracking_drop_db = backtracking_drop_db
        self.backtracking_every_n_steps = backtracking_every_n_steps
        self._wmv: Callback | None = None

    def check(self, task: RestorationTask) -> None:
        if self.stopping == "oracle" and not task.has_ground_truth:
            raise InputError("stopping=oracle needs the ground truth: with an observation only, use "
                             "model.strategy.stopping=wmv (blind) or fixed")

    def configure_optimizer(self, task: RestorationTask) -> torch.optim.Optimizer:
        params = task.net.parameters()
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    def callbacks(self, task: RestorationTask) -> list[Callback]:
        from ..callbacks import Backtracking, WMVStopping

        callbacks: list[Callback] = []
        if self.backtracking:
            callbacks.append(Backtracking(self.backtracking_drop_db, self.backtracking_every_n_steps))
        if self.stopping == "wmv":
            self._wmv = WMVStopping(self.window, self.patience, self.use_ema)
            callbacks.append(self._wmv)
        return callbacks

    def selected_outputs(self, task: RestorationTask) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's chains' outputs (K, C, *S) chosen by the stopping rule so far, and their steps (K,)."""
        if self.stopping == "wmv":
            return self._wmv.selection(task)
        if self.stopping == "oracle":
            best = task.best_ema if self.use_ema else task.best
            return best.image, best.step
        return (task.ema if self.use_ema else task.output), task.step.expand(task.output.shape[0])

    def select(self, task: RestorationTask, gather: Gather) -> Selection:
        images, steps = (gather(t) for t in task.finite_outputs(*self.selected_outputs(task)))
        metrics = chain_metrics(task, images)
        if len(images) == 1:
            return Selection(images[0].clone(), int(steps[0]), metrics=metrics)
        metrics["step_per_chain"] = steps.tolist()
        return uncertainty_selection(task, images.mean(0), images.var(0), metrics)  # a deep ensemble

