"""The optimizer-strategy interface: how a task's network parameters are fitted, and what is returned."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from lightning.pytorch import Callback

if TYPE_CHECKING:
    from ..tasks.base import RestorationTask


@dataclass
class Selection:
    """What a strategy returns after fitting.

    image: the restored output (C, *S) in [0, 1]; step: the iteration it comes from (None for an average);
    std: per-pixel posterior std (C, *S) for samplers; metrics: strategy figures for metrics.json.
    """

    image: torch.Tensor
    step: int | None
    std: torch.Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class Strategy(ABC):
    """Builds the optimizer for a task, contributes the callbacks it needs, and selects the result.

    A task calls `check` once its problem is built, `configure_optimizer` from `configure_optimizers`,
    `callbacks` from `configure_callbacks`, and `select` once fitting has ended. Strategies are plain
    objects configured from YAML by class path.
    """

    name: str = "strategy"

    def check(self, task: RestorationTask) -> None:
        """Refuse (InputError) a task this strategy cannot fit; runs before anything is written."""

    @abstractmethod
    def configure_optimizer(self, task: RestorationTask) -> torch.optim.Optimizer:
        """The optimizer over `task.net`'s parameters."""

    def callbacks(self, task: RestorationTask) -> list[Callback]:
        """Callbacks the strategy needs during fitting (stopping, sampling, ...)."""
        return []

    @abstractmethod
    def select(self, task: RestorationTask) -> Selection:
        """The restored output once fitting has ended."""
