"""Mean-field Gaussian weights for a stacked DIP network (Bayes by backprop), brought in by parametrization.

`VariationalWeights(net, ...)` turns the weight and bias of every convolution of a stacked network
(`nets.chains.ChainConv`) into a factorised Gaussian q = N(μ, softplus(ρ)²) per entry and chain, with
`torch.nn.utils.parametrize`: the tensor becomes two parameters, `parametrizations.weight.original0` (μ,
initialised to the tensor it replaces: the network's usual initialisation) and `original1` (ρ), and every
read of `layer.weight` inside the forward pass is a fresh draw μ + softplus(ρ)·ε, chain k's ε from its own
stream (`layers.Stochastic`). Why parametrization: the network class, its forward pass and its stacking stay
as they are (one SkipNet, no Bayesian copy of it), the variational parameters are ordinary parameters of the
network (optimizers, checkpoints, the chains' row layout, backtracking see them unchanged), and the
sampling lives in one small module. Other parameters (BatchNorm's scale and shift) stay point estimates.

Local reparameterisation (Kingma et al. 2015; `local=True`): a convolution's weights are left at μ and the
noise is put on its outputs instead, each output entry drawn from its Gaussian marginal
N(conv(x, μ), conv(x², σ²) + σ_b²), independently per entry. The expected loss is exactly that of weight
sampling where the loss depends on each output entry of the layer alone (one linear layer under a per-entry
loss); through later layers, which mix entries, it drops the correlation that a shared conv weight induces
between positions: a different (per-position) noise model, with lower-variance gradients. Draws of θ
(`sample_weights`) always sample the weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..optim import gaussian_like
from .chains import ChainConv
from .layers import Stochastic


def inverse_softplus(value: float) -> float:
    """ρ with softplus(ρ) = value > 0."""
    return value + math.log(-math.expm1(-value))


def gaussian_kl(mean: torch.Tensor, std: torch.Tensor, prior_std: float) -> torch.Tensor:
    """KL(N(mean, std²) || N(0, prior_std²)) per entry, in nats (closed form)."""
    return math.log(prior_std) - std.log() + (std.square() + mean.square()) / (2 * prior_std**2) - 0.5


class GaussianWeight(Stochastic):
    """The parametrization of one tensor: originals (μ, ρ) -> a draw μ + softplus(ρ)·ε, or μ itself while
    `sample` is False (local reparameterisation puts the noise on the layer's outputs instead)."""

    def __init__(self, init_std: float) -> None:
        super().__init__()
        self.init_rho = inverse_softplus(init_std)
        self.sample = True

    def forward(self, mean: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        if not self.sample:
            return mean
        (noise,) = gaussian_like([mean], self.generators)
        return mean + F.softplus(rho) * noise

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return value, torch.full_like(value, self.init_rho)


class VariationalWeights:
    """The factorised Gaussian q(θ) over the convolutions of a stacked network `net` (parametrized in place).

    Args:
        net: a network of `ChainConv` layers (`nets.chains.stack_chains`).
        prior_std: std of the zero-mean Gaussian prior, one number, or one per parameter name of `net` as
            `optim.init_prior_stds` gives it (names before parametrization).
        init_std: the std softplus(ρ) of every entry at the start.
        local: local reparameterisation while fitting (module docstring).
    """

    def __init__(self, net: nn.Module, prior_std: float | dict[str, float], init_std: float,
                 local: bool = False) -> None:
        if init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        stds = prior_std if isinstance(prior_std, dict) else {name: prior_std for name, _ in net.named_parameters()}
        self.local = local
        self.gaussians: list[tuple[ChainConv, str, float]] = []  # (layer, tensor name, prior std)
        variational = set()
        for prefix, layer in net.named_modules():
            if not isinstance(layer, ChainConv):
                continue
            for name in ("weight", "bias"):
                if getattr(layer, name) is not None:
                    variational.add(id(getattr(layer, name)))
                    self.gaussians.append((layer, name, stds[f"{prefix}.{name}" if prefix else name]))
        # the point-estimated parameters, with the prior's log density (their q is a point mass)
        self.points = [(param, stds[name]) for name, param in net.named_parameters() if id(param) not in variational]
        for layer, name, _ in self.gaussians:
            parametrize.register_parametrization(layer, name, GaussianWeight(init_std), unsafe=True)
        if local:
            for layer in {id(layer): layer for layer, _, _ in self.gaussians}.values():
                layer.register_forward_hook(self._local_noise)
        self._set_sampling(not local)

    def _set_sampling(self, sample: bool) -> None:
        for layer, name, _ in self.gaussians:
            layer.parametrizations[name][0].sample = sample

    def _moments(self, layer: ChainConv, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of one tensor of `layer`."""
        tensors = layer.parametrizations[name]
        return tensors.original0, F.softplus(tensors.original1)

    def kl_divergence(self) -> torch.Tensor:
        """(K,): each chain's KL(q || prior) over its Gaussian tensors, in nats (closed form)."""
        terms = [gaussian_kl(*self._moments(layer, name), prior_std).flatten(1).sum(1)
                 for layer, name, prior_std in self.gaussians]
        return torch.stack(terms).sum(0)

    def point_log_prior(self) -> torch.Tensor:
        """(K,): each chain's −log prior density (up to its constant) of the point-estimated parameters:
        Σ θ²/(2σ_p²). Zero without any."""
        terms = [param.square().flatten(1).sum(1) / (2 * prior_std**2) for param, prior_std in self.points]
        return torch.stack(terms).sum(0) if terms else torch.zeros(())

    def stds(self) -> list[torch.Tensor]:
        """softplus(ρ) of every Gaussian tensor, each (K, ...)."""
        return [self._moments(layer, name)[1] for layer, name, _ in self.gaussians]

    @contextmanager
    def sample_weights(self) -> Iterator[None]:
        """Within the block every forward pass draws the weights θ ~ q (under local reparameterisation too)."""
        self._set_sampling(True)
        try:
            yield
        finally:
            self._set_sampling(not self.local)

    def _local_noise(self, layer: ChainConv, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor | None:
        """Forward hook: the layer's output at μ plus noise of the per-entry variance conv(x², σ²) + σ_b²."""
        weight = layer.parametrizations.weight[0]
        if weight.sample:
            return None
        bias_var = self._moments(layer, "bias")[1].square() if "bias" in layer.parametrizations else None
        variance = layer.convolve(inputs[0].square(), self._moments(layer, "weight")[1].square(), bias_var)
        (noise,) = gaussian_like([output], weight.generators)
        return output + (variance + torch.finfo(variance.dtype).tiny).sqrt() * noise
