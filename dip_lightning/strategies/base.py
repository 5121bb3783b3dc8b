"""The optimizer-strategy interface: how a task's network parameters are fitted, and what is returned."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import Callback
from torch import nn

from ..calibration import calibration_metrics
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
    std: per-pixel std (C, *S) of the image for uncertainty strategies (a posterior's, or the spread of
    dropout passes, variational samples or restarts); rhat: per-pixel split-R̂ (C, *S) for samplers;
    maps: further per-pixel maps (C, *S) by name, saved as `<name>.npy` and `<name>.png` (e.g. the aleatoric
    std of a heteroscedastic head); metrics: strategy figures (and labels) for metrics.json.
    """

    image: torch.Tensor
    step: int | None
    std: torch.Tensor | None = None
    rhat: torch.Tensor | None = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Builds the optimizer for a task, contributes the callbacks it needs, and selects the result.

    A task calls `check` once its problem is built, `network` on each chain's new network and
    `prepare_chains` once they are stacked (before a checkpoint is restored into them), `check_precision` and
    `configure_optimizer` from `configure_optimizers`, `callbacks` from `configure_callbacks`, `training_loss`
    in every step, and `select` once fitting has ended. Strategies are plain objects configured from YAML by
    class path.
    `chains` independent chains (restarts) run on each process, batched into one network evaluation.
    """

    name: str = "strategy"

    infers_noise: bool = False
    """Whether the strategy samples the noise parameters with the image (`model.infer_sigma`, `tasks.noise`)."""

    def __init__(self, chains: int = 1) -> None:
        if chains < 1:
            raise InputError(f"model.strategy.chains={chains}: the number of chains must be >= 1")
        self.chains = chains

    def check(self, task: RestorationTask) -> None:
        """Refuse (InputError) a task this strategy cannot fit; runs before anything is written."""

    def check_precision(self, trainer: L.Trainer) -> None:
        """Refuse (InputError) a `trainer.precision` this strategy cannot step in; every precision by default."""

    def network(self, net: nn.Module) -> nn.Module:
        """One chain's network as the strategy fits it (called on each new network, under the chain's seed,
        before the chains are stacked): the network itself by default; e.g. with an extra output head."""
        return net

    def prepare_chains(self, task: RestorationTask) -> None:
        """Bring what the strategy needs to the stacked network `task.net` once it and the chains' streams
        `task.generators` exist, before a checkpoint is restored into it (e.g. variational parameters, which a
        checkpoint then holds). Nothing by default."""

    def training_loss(self, task: RestorationTask, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """The image, its prediction A(image) and each chain's loss for a step's network output (K, C', *S):
        ((K, C, *S), A's shape, (K,)). By default the output is the image and the loss the task's data term."""
        prediction = task.forward_operator(output)
        return output, prediction, task.prediction_loss(prediction)

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


def likelihood_temperature(task: RestorationTask, tau: float) -> float:
    """T = tau·2σ²/P: the tempered posterior exp(−P·MSE/(2σ²·tau)) written with the task's mean-MSE loss over
    P observed entries and noise std σ (tau = 1 the Bayes posterior, tau < 1 a cold one); the task's noise
    model's (`tasks.noise`) at its starting parameters."""
    return task.noise_model.temperature(tau, task.num_observed)


def uncertainty_selection(task: RestorationTask, mean: torch.Tensor, variance: torch.Tensor, metrics: dict[str, Any],
                          rhat: torch.Tensor | None = None,
                          maps: dict[str, torch.Tensor] | None = None) -> Selection:
    """The Selection of an uncertainty strategy: the image `mean` (C, *S) with std sqrt(`variance`), and in
    `metrics` its mean std (`posterior_std_mean`) and, against a ground truth, `psnr_posterior_mean` and the
    calibration figures of that variance (`uce`, `coverage_95`, `nll`, `spearman_std_abs_err`: docs/science.md §4)."""
    metrics["posterior_std_mean"] = float(variance.sqrt().mean())
    if task.has_ground_truth:
        metrics["psnr_posterior_mean"] = float(task.image_metrics(mean[None])["psnr"])
        calibration = calibration_metrics().to(mean.device)
        calibration.update(mean[None], variance[None], task.ground_truth)
        metrics.update({key: float(value) for key, value in calibration.compute().items()})
    return Selection(mean, None, std=variance.sqrt(), rhat=rhat, maps=maps or {}, metrics=metrics)
