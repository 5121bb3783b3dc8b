"""Mean-field variational DIP (Tölle, Laves et al. 2021): a factorised Gaussian over the conv weights."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal

import lightning as L
import torch

from .. import optim
from ..errors import InputError
from ..nets.chains import set_streams
from ..nets.variational import VariationalWeights
from .base import likelihood_temperature
from .predictive import PredictiveStrategy

if TYPE_CHECKING:
    from ..tasks.base import RestorationTask


class MeanFieldVI(PredictiveStrategy):
    """Fit a factorised Gaussian q(θ) = Π N(μ, softplus(ρ)²) over the weights and biases of every convolution
    (`nets.variational`; means initialised to the network's usual initialisation, stds to `init_std`) by the
    tempered ELBO, then return the mean and per-pixel std of the outputs of `samples` draws θ ~ q, pooled
    over the chains (K independent q's).

    The loss per chain is E_q[L(θ)] + T·KL(q || p): L the task's mean data term (estimated with one draw per
    step by the reparameterisation trick, or by local reparameterisation), p the zero-mean Gaussian prior of
    std `prior_std`, and T = tau·2σ²/P the temperature of `SGLD` (`strategies.base.likelihood_temperature`),
    so that the target exp(−L/T)·p is SGLD's posterior and tau means the same in both (tau = 1 Bayes). At
    its optimum q is the mean-field approximation of that posterior (it underestimates its variance: it fits
    the reverse KL). BatchNorm's scale and shift stay point estimates with the prior's penalty
    T·θ²/(2σ_p²) (their MAP). A noise-free task (σ = 0, T = 0) is refused: its "posterior" is a point.

    Args:
        tau: temperature factor (SGLD's).
        prior_std: the prior std σ_p: a number for every parameter, or `init` per layer at PyTorch's
            initialisation scale (σ_p² = 1/(3·fan_in); `optim.init_prior_stds`).
        init_std: the std softplus(ρ) of every weight at the start.
        local_reparameterization: sample each convolution's outputs from their per-entry Gaussian instead of
            its weights while fitting (lower-variance gradients; an approximation through later layers:
            `nets.variational`); the returned draws sample the weights either way.
        samples: draws θ ~ q for the returned mean and std.
        optimizer: `adam` (the default), `adamw` or `sgd`, over μ, ρ and the point-estimated parameters.
        lr: learning rate.
        weight_decay: the optimizer's weight decay (0: the prior is in the KL already).
        **kwargs: `PredictiveStrategy`'s (stopping, eval_every_n_steps, backtracking, chains, ...).
    """

    name = "mfvi"

    def __init__(self, tau: float = 1.0, prior_std: float | Literal["init"] = 1.0, init_std: float = 1e-3,
                 local_reparameterization: bool = False, samples: int = 25,
                 optimizer: Literal["adam", "adamw", "sgd"] = "adam", lr: float = 0.01, weight_decay: float = 0.0,
                 stopping: Literal["fixed", "oracle", "wmv"] = "fixed", eval_every_n_steps: int = 250,
                 window: int = 100, patience: int = 1000, momentum: float = 0.9, backtracking: bool = False,
                 backtracking_drop_db: float = 5.0, backtracking_every_n_steps: int = 10, chains: int = 1) -> None:
        super().__init__(samples=samples, eval_every_n_steps=eval_every_n_steps, optimizer=optimizer, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, stopping=stopping, window=window,
                         patience=patience, backtracking=backtracking, backtracking_drop_db=backtracking_drop_db,
                         backtracking_every_n_steps=backtracking_every_n_steps, chains=chains)
        if isinstance(prior_std, str) and prior_std != "init":
            raise InputError(f"model.strategy.prior_std={prior_std!r}: give a number or init")
        if tau <= 0:
            raise InputError(f"model.strategy.tau={tau}: the temperature factor must be > 0")
        self.tau = tau
        self.prior_std = prior_std
        self.init_std = init_std
        self.local_reparameterization = local_reparameterization
        self.weights: VariationalWeights | None = None
        self.temperature = 0.0

    def check(self, task: RestorationTask) -> None:
        super().check(task)
        if task.noise_model.noise_free:
            raise InputError("MeanFieldVI needs the observation's noise level: at model.sigma=0 its temperature is 0, "
                             "so q collapses to a point and its spread is no posterior; give model.sigma > 0")

    def check_precision(self, trainer: L.Trainer) -> None:
        """Refuse half-precision weights (`16-true`, `bf16-true`): the draws' spread softplus(ρ)·ε is far below
        their rounding."""
        precision = str(trainer.precision)
        if precision in ("16-true", "bf16-true"):
            raise InputError(f"trainer.precision={precision} with MeanFieldVI: the weight draws need float32 weights; "
                             f"use --trainer.precision=bf16-mixed")

    def prepare_chains(self, task: RestorationTask) -> None:
        """The variational parameters in place of the convolutions' weights (before a checkpoint is restored
        into them), their noise from the chains' streams, and the temperature."""
        prior = optim.init_prior_stds(task.net) if self.prior_std == "init" else float(self.prior_std)
        self.weights = VariationalWeights(task.net, prior, self.init_std, local=self.local_reparameterization)
        set_streams(task.net, task.generators)
        self.temperature = likelihood_temperature(task, self.tau)

    def training_loss(self, task: RestorationTask, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """Each chain's negative tempered ELBO times T: data term + T·(KL(q || p) + the point parameters' penalty)."""
        divergence = self.weights.kl_divergence() + self.weights.point_log_prior()
        image, prediction, data = super().training_loss(task, output)
        return image, prediction, data + self.temperature * divergence

    def sampling(self) -> AbstractContextManager:
        return self.weights.sample_weights()
