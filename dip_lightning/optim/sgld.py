"""Langevin samplers as ``torch.optim.Optimizer`` subclasses (no Lightning dependency).

``SGLD`` and ``PSGLD`` draw samples from ``p(θ) ∝ exp(−L(θ)/T − ||θ||²/(2σ_p²))`` for the loss ``L``
whose gradient is in ``p.grad``. ``PaperSGLD`` reproduces the GP-DIP heuristic (Adam + weight noise)
and is *not* a valid sampler. All three take an optional ``torch.Generator`` for reproducible noise, or a
sequence of K generators for parameters that stack K independent chains along their first dimension
(row k of every parameter's noise comes from generator k, so chain k's noise is that of a one-chain run
with generator k); generators must live on the parameters' device (noise is drawn there, in their dtype).
Parameters whose ``grad`` is ``None`` are skipped by ``SGLD`` and ``PSGLD``, as in torch optimizers.
For stacked chains, a param group's ``chain_step_scale`` (a (K,) tensor on the parameters' device, or
``None``) scales chain k's step size to ``lr·chain_step_scale[k]`` in ``SGLD`` and ``PSGLD``: a smaller
step for one chain (see ``LangevinChain``'s recovery), with no host sync.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Adam, Optimizer

Params = Iterable[Tensor] | Iterable[dict[str, Any]]
Closure = Callable[[], Tensor] | None
Generators = torch.Generator | Sequence[torch.Generator] | None


def gaussian_like(tensors: list[Tensor], generator: Generators) -> list[Tensor]:
    """Standard-normal noise shaped like each tensor, on its device and in its dtype; with K generators,
    row k of every tensor (its chain k) is drawn from generator k."""
    if generator is None or isinstance(generator, torch.Generator):
        return [torch.empty_like(t).normal_(generator=generator) for t in tensors]
    noise = [torch.empty_like(t) for t in tensors]
    for k, chain_generator in enumerate(generator):
        for n in noise:
            n[k].normal_(generator=chain_generator)
    return noise


def _chain_scaled(tensors: list[Tensor], scale: Tensor | None, power: float = 1.0) -> list[Tensor]:
    """Row k of every tensor times scale[k]**power (the tensors themselves when scale is None)."""
    if scale is None:
        return tensors
    factor = scale if power == 1.0 else scale.pow(power)
    return torch._foreach_mul(tensors, [factor.view(-1, *[1] * (t.dim() - 1)) for t in tensors])


def _check(lr: float, temperature: float, prior_std: float | None) -> None:
    if lr < 0.0:
        raise ValueError(f"lr must be >= 0, got {lr}")
    if temperature < 0.0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if prior_std is not None and prior_std <= 0.0:
        raise ValueError(f"prior_std must be > 0 or None, got {prior_std}")


def _closure_loss(closure: Closure) -> Tensor | None:
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _drift(params: list[Tensor], temperature: float, prior_std: float | None) -> list[Tensor]:
    """∇L + T·θ/σ_p² (the gradients themselves when the prior is flat; never modified)."""
    grads = [p.grad for p in params]
    if prior_std is None:
        return grads
    return torch._foreach_add(grads, params, alpha=temperature / prior_std**2)


class SGLD(Optimizer):
    """Stochastic gradient Langevin dynamics.

    Samples ``p(θ) ∝ exp(−L(θ)/T − ||θ||²/(2σ_p²))`` with the step
    ``θ ← θ − lr·(∇L + T·θ/σ_p²) + sqrt(2·lr·T)·ξ``, ``ξ ~ N(0, I)``
    (Euler–Maruyama of the Langevin diffusion of the energy ``U = L/T + ||θ||²/(2σ_p²)`` with step
    ``lr·T``; the discretisation bias of the stationary variance is of order ``lr·T/(2·v)`` for a
    target variance ``v``, so keep ``lr·T`` small against the target's smallest variance).

    Mapping to DIP: with ``L`` the mean-MSE over ``P`` observed entries, noise std ``σ`` and
    ``T = τ·2σ²/P``, ``L/T = Σ r²/(2σ²τ)``: ``τ = 1`` is the Bayes posterior, ``τ < 1`` a cold one.
    ``prior_std=None`` is a flat prior; ``temperature=0`` is plain gradient descent.
    """

    def __init__(
        self,
        params: Params,
        lr: float,
        temperature: float = 1.0,
        prior_std: float | None = None,
        generator: Generators = None,
    ) -> None:
        _check(lr, temperature, prior_std)
        super().__init__(params, dict(lr=lr, temperature=temperature, prior_std=prior_std, chain_step_scale=None))
        self.generator = generator

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = _closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, temperature, scale = group["lr"], group["temperature"], group.get("chain_step_scale")
            torch._foreach_add_(params, _chain_scaled(_drift(params, temperature, group["prior_std"]), scale),
                                alpha=-lr)
            noise = _chain_scaled(gaussian_like(params, self.generator), scale, 0.5)
            torch._foreach_add_(params, noise, alpha=math.sqrt(2.0 * lr * temperature))
        return loss


class PSGLD(Optimizer):
    """RMSprop-preconditioned SGLD (Li et al. 2016), same target as :class:`SGLD`.

    ``g = ∇L + T·θ/σ_p²``, ``V ← αV + (1−α)·g²`` (bias-corrected ``V̂ = V/(1−α^t)``),
    ``G = 1/(sqrt(V̂) + eps)``, ``θ ← θ − lr·G·g + sqrt(2·lr·T·G)·ξ``.
    The preconditioner adapts the step to each weight's curvature, which lets a single ``lr`` serve
    weights of very different scales. ``V`` averages the whole drift, the prior's part included (Li et
    al. average the loss gradient only): a weight the loss does not see (a conv bias before a
    BatchNorm has zero gradient) would otherwise get ``G = 1/eps`` and, under a tight prior, a prior step
    ``lr·G·T/σ_p²`` above 2, which diverges. The Γ correction term (the divergence of ``G``) is omitted, so
    the chain is biased while ``V`` changes; :meth:`freeze_preconditioner` (call it after burn-in)
    fixes ``G``, which makes the chain a valid sampler again. The ``frozen`` flag lives in each
    param group and so travels with ``state_dict()``. A parameter with no estimate yet when frozen
    takes ``V`` from its first gradient.
    """

    def __init__(
        self,
        params: Params,
        lr: float,
        temperature: float = 1.0,
        prior_std: float | None = None,
        alpha: float = 0.99,
        eps: float = 1e-5,
        generator: Generators = None,
    ) -> None:
        _check(lr, temperature, prior_std)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        defaults = dict(
            lr=lr, temperature=temperature, prior_std=prior_std, alpha=alpha, eps=eps, frozen=False,
            chain_step_scale=None,
        )
        super().__init__(params, defaults)
        self.generator = generator

    def freeze_preconditioner(self) -> None:
        """Stop updating ``V`` (removes the bias of the omitted Γ term)."""
        for group in self.param_groups:
            group["frozen"] = True

    @property
    def frozen(self) -> bool:
        """True when every param group's preconditioner is frozen."""
        return all(group["frozen"] for group in self.param_groups)

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = _closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, temperature, alpha = group["lr"], group["temperature"], group["alpha"]
            states = [self.state[p] for p in params]
            for p, state in zip(params, states, strict=True):
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

            drift = _drift(params, temperature, group["prior_std"])
            update = [i for i, s in enumerate(states) if not group["frozen"] or s["step"] == 0]
            if update:
                square_avg = [states[i]["square_avg"] for i in update]
                grads = [drift[i] for i in update]
                torch._foreach_mul_(square_avg, alpha)
                torch._foreach_addcmul_(square_avg, grads, grads, value=1.0 - alpha)
                for i in update:
                    states[i]["step"] += 1

            # G = 1 / (sqrt(V / (1 − α^t)) + eps)
            precond = torch._foreach_div(
                [s["square_avg"] for s in states], [1.0 - alpha ** s["step"] for s in states]
            )
            torch._foreach_sqrt_(precond)
            torch._foreach_add_(precond, group["eps"])
            torch._foreach_reciprocal_(precond)
            precond = _chain_scaled(precond, group.get("chain_step_scale"))  # lr·G·scale: a smaller step, same target

            torch._foreach_add_(params, torch._foreach_mul(drift, precond), alpha=-lr)

            noise = gaussian_like(params, self.generator)
            torch._foreach_sqrt_(precond)
            torch._foreach_mul_(noise, precond)
            torch._foreach_add_(params, noise, alpha=math.sqrt(2.0 * lr * temperature))
        return loss


class PaperSGLD(Adam):
    """Reproduction mode of the GP-DIP code's "SGLD"; NOT a valid sampler.

    Each step is an Adam step (``lr``, ``weight_decay``) followed by ``N(0, noise_std²)`` noise,
    ``noise_std = 2·lr`` unless given. ``noise_std`` is stored in each param group (``None`` follows the
    group's current ``lr``, so LR schedules carry over; 0 adds none): the GP-DIP code noised the conv
    weights only, so give the other parameters a group with ``noise_std=0``. Adam normalises away the
    loss scale, so the stationary spread is set by ``lr`` and ignores the target's variance: use it only
    to reproduce the paper's numbers, never as an uncertainty estimate. The noise is added by a step
    post-hook, so Adam's own ``step`` (and its hooks) runs once and unchanged.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 0.01,
        weight_decay: float = 5e-8,
        noise_std: float | None = None,
        generator: Generators = None,
    ) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.defaults["noise_std"] = noise_std
        for group in self.param_groups:
            group.setdefault("noise_std", noise_std)
        self.generator = generator
        self.register_step_post_hook(PaperSGLD._add_conv_noise)

    @staticmethod
    @torch.no_grad()
    def _add_conv_noise(optimizer: PaperSGLD, args: Any, kwargs: Any) -> None:
        for group in optimizer.param_groups:
            std = 2.0 * group["lr"] if group["noise_std"] is None else group["noise_std"]
            if std == 0 or not group["params"]:
                continue
            torch._foreach_add_(group["params"], gaussian_like(group["params"], optimizer.generator), alpha=std)
