"""MC-dropout DIP (Laves et al. 2020): fit a network with dropout, return the mean and spread of dropout passes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from ..errors import InputError
from ..nets.heads import WithLogPrecision
from ..nets.layers import ChannelDropout
from ..nets.chains import set_streams
from .predictive import PredictiveStrategy

if TYPE_CHECKING:
    from ..tasks.base import RestorationTask

LOG_PRECISION_BOUND = 20.0
"""The log precision s is clamped to ±20 in the loss and the variance, as in Laves et al.'s code."""


class MCDropout(PredictiveStrategy):
    """Fit a network with dropout (`model.net.dropout`, e.g. 0.3 in the down and up blocks: their placement,
    `SkipNet.dropout_at` for others) by AdamW, then return the mean of `samples` forward passes with dropout
    on and their per-pixel std (the epistemic uncertainty), pooled over the chains (K independent dropout
    networks, each its own masks from its own stream). The method's claim is that it needs no early
    stopping (`stopping: fixed`, the default); `oracle` and `wmv` are there to measure it. Their AdamW
    step of 3e-4 ran 50 000 steps; over the 3000 steps of a CPU-scale run it leaves the image underfitted
    (22.4 dB against 28.1 dB at 0.01 on a 64x64 crop: docs/benchmarks.md, "MC dropout and mean-field VI"), so
    the default is DIP's 0.01.

    Heteroscedastic (`heteroscedastic: true`): a second head predicts a log precision s = −log σ² per entry
    (`nets.heads.WithLogPrecision`) and the loss is their Gaussian negative log-likelihood
    e^s·(A(μ) − y)² − s (s clamped to ±20), averaged over the observed entries; the observation's noise it
    predicts (the aleatoric part) is reported apart: `aleatoric_std.npy` / `.png`, `aleatoric_std_mean`,
    while the calibration figures score the epistemic std against the ground truth (docs/science.md §4).
    This loss is Gaussian on every observed entry (the task's censored likelihood does not apply), and it
    needs an observation of the output's size (not super-resolution).

    Args:
        heteroscedastic: the log-precision head and its Gaussian NLL (else the task's data term).
        samples: forward passes with dropout on (theirs: 25).
        optimizer: `adamw` (theirs), `adam` or `sgd`.
        lr: learning rate (theirs: 3e-4, over 50 000 steps).
        weight_decay: decoupled weight decay under AdamW (theirs: 1e-4).
        **kwargs: `PredictiveStrategy`'s (stopping, eval_every_n_steps, backtracking, chains, ...).
    """

    name = "mcdropout"

    def __init__(self, heteroscedastic: bool = False, samples: int = 25,
                 optimizer: Literal["adam", "adamw", "sgd"] = "adamw", lr: float = 0.01, weight_decay: float = 1e-4,
                 stopping: Literal["fixed", "oracle", "wmv"] = "fixed", eval_every_n_steps: int = 250,
                 window: int = 100, patience: int = 1000, momentum: float = 0.9, backtracking: bool = False,
                 backtracking_drop_db: float = 5.0, backtracking_every_n_steps: int = 10, chains: int = 1) -> None:
        super().__init__(samples=samples, eval_every_n_steps=eval_every_n_steps, optimizer=optimizer, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, stopping=stopping, window=window,
                         patience=patience, backtracking=backtracking, backtracking_drop_db=backtracking_drop_db,
                         backtracking_every_n_steps=backtracking_every_n_steps, chains=chains)
        self.heteroscedastic = heteroscedastic

    def check(self, task: RestorationTask) -> None:
        super().check(task)
        size = tuple(task.output_size(task.observation[0]))
        if self.heteroscedastic and tuple(task.observation.shape[2:]) != size:
            raise InputError(f"model.strategy.heteroscedastic=true needs an observation of the output's size (its "
                             f"noise is predicted per output entry); this task observes "
                             f"{'x'.join(map(str, task.observation.shape[2:]))} for an output of "
                             f"{'x'.join(map(str, size))}: set heteroscedastic=false")

    def network(self, net: nn.Module) -> nn.Module:
        return WithLogPrecision(net) if self.heteroscedastic else net

    def prepare_chains(self, task: RestorationTask) -> None:
        """Dropout masks from the chains' streams (reproducible, resumable); a warning when the network has no
        dropout, whose passes then agree (std 0)."""
        set_streams(task.net, task.generators)
        if not any(isinstance(m, ChannelDropout) and m.p > 0 for m in task.net.modules()):
            rank_zero_warn("MCDropout with a network without dropout: every pass is the same and the std is 0; "
                           "set model.net.dropout (e.g. 0.3)")

    def training_loss(self, task: RestorationTask, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        if not self.heteroscedastic:
            return super().training_loss(task, output)
        image, log_precision = WithLogPrecision.split(output)
        s = log_precision.clamp(-LOG_PRECISION_BOUND, LOG_PRECISION_BOUND)
        prediction = task.forward_operator(image)
        return image, prediction, task.observed_mean(s.exp() * (prediction - task.observation).square() - s)

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.heteroscedastic:
            return output, None
        image, log_precision = WithLogPrecision.split(output)
        return image, (-log_precision.clamp(-LOG_PRECISION_BOUND, LOG_PRECISION_BOUND)).exp()
