"""The optimizer-strategy interface: how a task's network parameters are fitted, and what is returned."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import Callback

from ..errors import InputError

if TYPE_CHECKING:
    import lightning as L

    from ..tasks.base import RestorationTask


Gather = Callable[[torch.Tensor], torch.Tensor]
"""Per-chain tensor of this process (K, ...) -> the same over all the run's chains (total, ...)."""


@dataclass
class Selection:
    """What a strategy returns after fitting.

    image: the restored output (C, *S) in [0, 1]; step: the iteration it comes from (None for an average);
    std: per-pixel posterior std (C, *S) for samplers; rhat: per-pixel split-R̂ (C, *S) for samplers;
    metrics: strategy figures (and labels) for metrics.json.
    """

    image: torch.Tensor
    step: int | None
    std: torch.Tensor | None = None
    rhat: torch.Tensor | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Builds the optimizer for a task, contributes the callbacks it needs, and selects the result.

    A task calls `check` once its problem is built, `check_precision` and `configure_optimizer` from
    `configure_optimizers`,
    `callbacks` from `configure_callbacks`, and `select` once fitting has ended. Strategies are plain
    objects configured from YAML by class path.
    `chains` independent chains (restarts) run on each process, batched into one network evaluation.
    """

    name: str = "strategy"

    def __init__(self, chains: int = 1) -> None:
        if chains < 1:
            raise InputError(f"model.strategy.chains={chains}: the number of chains must be >= 1")
        self.chains = chains

    def check(self, task: RestorationTask) -> None:
        """Refuse (InputError) a task this strategy cannot fit; runs before anything is written."""

    def check_precision(self, trainer: L.Trainer) -> None:
        """Refuse (InputError) a `trainer.precision` this strategy cannot step in; every precision by default."""

    @abstractmethod
    def configure_optimizer(self, task: RestorationTask) -> torch.optim.Optimizer:
        """The optimizer over `task.net`'s parameters."""

    def callbacks(self, task: RestorationTask) -> list[Callback]:
        """Callbacks the strategy needs during fitting (stopping, sampling, ...)."""
        return []

    @abstractmethod
    def select(self, task: RestorationTask, gather: Gather) -> Selection:
        """The restored output once fitting has ended, over the chains that `gather` brings together (a
        collective when it spans processes: every process calls `select`)."""


def chain_metrics(task: RestorationTask, images: torch.Tensor) -> dict[str, Any]:
    """`chains` (the count) and, with a ground truth, `psnr_per_chain`: each chain's own result (N, C, *S)."""
    metrics: dict[str, Any] = {"chains": len(images)}
    if task.has_ground_truth:
        metrics["psnr_per_chain"] = [float(task.image_metrics(image[None])["psnr"]) for image in images]
    return metrics
