"""Langevin samplers as ``torch.optim.Optimizer`` subclasses (no Lightning dependency).

``SGLD`` and ``PSGLD`` sample ``p(θ) ∝ exp(−E(θ))`` with the energy ``E = L(θ)/T + Σ θ²/(2σ_p²)`` for the
loss ``L`` whose gradient is in ``p.grad`` (a flat prior when ``prior_std`` is None). ``PaperSGLD``
reproduces the GP-DIP heuristic (Adam + weight noise) and is *not* a valid sampler.

Chains: each optimizer takes an optional ``torch.Generator`` for reproducible noise, or a sequence of K
generators for parameters that stack K independent chains along their first dimension (row k of every
parameter is chain k; its noise comes from generator k, so chain k's noise is that of a one-chain run with
generator k). Generators live on the parameters' device. ``SGLD`` and ``PSGLD`` keep their per-chain state
in flat (K, D) buffers (D the parameters per chain), so a step is a few whole-buffer operations.

Metropolis adjustment (``metropolis=True``, MALA; docs/science.md §8): the Langevin step is a proposal,
accepted per chain with the Metropolis-Hastings ratio of the target, both proposal densities included (the
preconditioned proposal is not symmetric). The energy at the proposal is the one the next forward and
backward pass computes, so the decision is taken at the start of the next step: a step costs a copy of the
parameters, not a second pass. A rejected chain stays where it was (its sample counts again). The
energy needs each chain's loss: ``chain_losses`` (a callable returning the (K,) losses of the last
evaluation) or, without it, the closure's return value. Without ``metropolis`` the same ratio is computed
and not applied (``accept_prob``): a gauge of how far the unadjusted step is from its target, on every
``diagnose_every``-th step only (every step it cost a sixth of a 64x64 step; NaN on the others). A
Metropolis-adjusted chain runs unadjusted for its first ``warmup_steps`` steps (from the initialisation to
the bulk of the posterior: far from it, an energy landscape that steep rejects every useful step), then a
preconditioner freezes, and from there until step ``adapt_until`` its step size adapts per chain to ``target_accept`` by dual averaging (Hoffman &
Gelman 2014) and is then frozen; ``step_scale`` (K,) is each chain's step size as a multiple of ``lr``.

Noise inferred with the image (``noise_update``, Metropolis-within-Gibbs; docs/science.md §10): the temperature
is then a (K,) float64 tensor, one per chain. After the decision on the pending proposal and before the next
proposal is drawn, ``noise_update(accepted, step)`` draws each chain's noise parameters given its state and
returns its new temperature and its state's data loss under them (or None: no change); the state's drift
``d = ∇L + T·θ/σ_p²`` follows the new T (the prior's pull is the only part of it that holds T), so the next
proposal, and the ratio that decides it, target p(θ | current noise). A fixed temperature (no ``noise_update``)
keeps a float, and the step computes exactly what it computed before the hook existed.
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
NoiseUpdate = Callable[[Tensor, int], tuple[Tensor, Tensor] | None]
"""(accepted (K,) bool, the 0-based step) -> (each chain's new temperature (K,) float64, its state's data loss
under the new noise parameters (K,) float64), or None when nothing changed."""
Temperature = float | Tensor
"""One temperature for every chain, or (K,) float64: each chain's (with a noise update)."""

DUAL_AVERAGING = {"gamma": 0.05, "t0": 10.0, "kappa": 0.75}
"""Stan's dual-averaging constants (Hoffman & Gelman 2014, §3.2.1)."""


def fill_normal_(tensors: list[Tensor], generator: Generators) -> None:
    """Fill each tensor in place with standard-normal noise; with K generators, row k of every tensor (its
    chain k) from generator k, chain by chain."""
    if generator is None or isinstance(generator, torch.Generator):
        for t in tensors:
            t.normal_(generator=generator)
        return
    for k, chain_generator in enumerate(generator):
        for t in tensors:
            t[k].normal_(generator=chain_generator)


def gaussian_like(tensors: list[Tensor], generator: Generators) -> list[Tensor]:
    """Standard-normal noise shaped like each tensor, on its device and in its dtype (see `fill_normal_`)."""
    noise = [torch.empty_like(t) for t in tensors]
    fill_normal_(noise, generator)
    return noise


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


class FlatLayout:
    """Where each parameter's entries of chain k sit in row k of a (K, D) buffer, in parameter order."""

    def __init__(self, params: list[Tensor], chains: int) -> None:
        if chains > 1 and any(p.dim() == 0 or p.shape[0] != chains for p in params):
            raise ValueError(f"with {chains} generators every parameter must stack {chains} chains along dim 0")
        self.params, self.chains = params, chains
        sizes = [p.numel() // chains for p in params]
        self.bounds = [(sum(sizes[:i]), sum(sizes[:i + 1])) for i in range(len(sizes))]
        self.size = sum(sizes)
        self._cached: dict[int, tuple[Tensor, list[Tensor]]] = {}

    def zeros(self, dtype: torch.dtype | None = None) -> Tensor:
        first = self.params[0]
        return torch.zeros(self.chains, self.size, dtype=dtype or first.dtype, device=first.device)

    def views(self, flat: Tensor) -> list[Tensor]:
        """Parameter-shaped views of a (K, D) buffer (writing a view writes the buffer)."""
        return [flat[:, a:b].view(p.shape) for p, (a, b) in zip(self.params, self.bounds, strict=True)]

    def buffer_views(self, flat: Tensor) -> list[Tensor]:
        """`views` of a buffer that lives as long as the layout, built once (a step writes a few of them, and
        building one view per parameter each time cost as much as the writes at 64x64)."""
        cached = self._cached.get(id(flat))
        if cached is None or cached[0] is not flat:
            cached = self._cached[id(flat)] = (flat, self.views(flat))
        return cached[1]

    def per_entry(self, values: list[float]) -> Tensor:
        """A (D,) vector holding one value per parameter over its entries."""
        return torch.cat([torch.full((b - a,), v, dtype=self.params[0].dtype, device=self.params[0].device)
                          for v, (a, b) in zip(values, self.bounds, strict=True)])


class Langevin(Optimizer):
    """Euler-Maruyama Langevin dynamics, optionally preconditioned and Metropolis-adjusted.

    Step (learning-rate form, ``d = ∇L + T·θ/σ_p²`` the drift, ``G`` the preconditioner, 1 for SGLD):
    ``θ' = θ − lr·G·d + sqrt(2·lr·T·G)·ξ``; ``lr`` times each chain's ``step_scale``. This is MALA's
    proposal with ε = 2·lr·T and mass matrix G; its Metropolis-Hastings log ratio per chain is
    ``E(θ) − E(θ') − ½ Σ c·(c − 2ξ)`` with ``c = sqrt(lr/(2T))·sqrt(G)·(d(θ) + d(θ'))`` (the reverse
    proposal's residual over the forward one, written without cancellation).

    After each ``step``: ``accept_prob`` (K,) the MH acceptance probability of the move just decided (NaN
    where none was: the chain's first step, a `restart`, or an unadjusted step that is not a
    ``diagnose_every``-th one), ``compared_energies`` whether this step computed that ratio at all,
    ``accepted`` (K,) bool which chains moved to the point evaluated in this step (all of them when
    unadjusted), ``state_point()`` the (K, D) weights of each chain's current state (the point whose output is
    its sample).
    """

    def __init__(self, params: Params, defaults: dict[str, Any], generator: Generators, metropolis: bool,
                 target_accept: float, warmup_steps: int, adapt_until: int,
                 chain_losses: Callable[[], Tensor] | None, noise_update: NoiseUpdate | None,
                 diagnose_every: int) -> None:
        _check(defaults["lr"], defaults["temperature"], defaults["prior_std"])
        if not 0.0 < target_accept < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
        super().__init__(params, defaults)
        self.generator = generator
        self.metropolis = metropolis
        self.target_accept = target_accept
        self.warmup_steps = warmup_steps if metropolis else 0
        self.adapt_until = adapt_until if metropolis else 0
        self.chain_losses = chain_losses
        self.noise_update = noise_update
        if diagnose_every < 1:
            raise ValueError(f"diagnose_every must be >= 1, got {diagnose_every}")
        self.diagnose_every = diagnose_every
        self.chains = 1 if generator is None or isinstance(generator, torch.Generator) else len(generator)
        self.layout: FlatLayout | None = None
        self._params_hold_proposal = False  # the parameters equal flat["proposal"] (nothing wrote them since)
        self._derived_cache: dict[str, tuple] = {}  # `_derived`: name -> (inputs, their versions, outputs)
        self.compared_energies = False  # whether the last step computed the MH ratio (else accept_prob is NaN)
        self.flat: dict[str, Any] = {"steps": 0}  # the per-chain state (see `_allocate`), in state_dict
        self._loaded: dict[str, Any] | None = None

    # ----- state -----------------------------------------------------------------------------------------
    def _allocate(self) -> None:
        """Flat buffers, at the first step (the parameters with a gradient are known then)."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.layout = layout = FlatLayout(params, self.chains)
        self._params_hold_proposal, self._derived_cache = False, {}
        priors = [group["prior_std"] for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.prior_precision: Tensor | float | None = (
            None if all(s is None for s in priors) else
            1.0 / priors[0] ** 2 if len(set(priors)) == 1 else
            layout.per_entry([0.0 if s is None else 1.0 / s**2 for s in priors]))
        chains, device = self.chains, params[0].device
        flat = {
            "steps": 0,
            "theta": layout.zeros(),  # the point evaluated this step, gathered from the parameters
            "drift": layout.zeros(),  # its drift
            "state_drift": layout.zeros(),  # the drift at the state (the pending proposal's start)
            "noise": layout.zeros(),  # ξ of the pending proposal
            "proposal": layout.zeros(),  # the next point, copied into the parameters
            "state_loss": torch.zeros(chains, dtype=torch.float64, device=device),
            "state_prior": torch.zeros(chains, dtype=torch.float64, device=device),
            "step_scale": torch.ones(chains, device=device),
            "proposal_scale": torch.ones(chains, device=device),  # the scale the pending proposal used
            "fresh": torch.ones(chains, dtype=torch.bool, device=device),  # next decision: accept unconditionally
            "accept_prob": torch.full((chains,), math.nan, device=device),
            "accepted": torch.ones(chains, dtype=torch.bool, device=device),
            "adapting": self.adapt_until > self.warmup_steps,
            "da_count": 0,
            "da_h": torch.zeros(chains, device=device),
            "da_log_mean": torch.zeros(chains, device=device),
        }
        if self.metropolis:
            flat["state_theta"] = layout.zeros()
        if self.noise_update is not None:  # each chain's temperature, set by the noise step of its sweep
            flat["temperature"] = torch.full((chains,), self._hyper()[1], dtype=torch.float64, device=device)
        self.flat = {**flat, **self._extra_state(layout)}
        if self._loaded is not None:
            self.flat.update({k: v.to(device) if isinstance(v, Tensor) else v for k, v in self._loaded.items()})
            self._loaded = None
            self._after_load()

    def _extra_state(self, layout: FlatLayout) -> dict[str, Any]:
        """Buffers of a subclass (a preconditioner's)."""
        return {}

    def _start_adjusting(self) -> None:
        """The Metropolis adjustment begins with this step's decision (a preconditioner must hold still)."""

    def _after_load(self) -> None:
        """Rebuild what a subclass caches from its loaded state."""

    _SCRATCH = ("theta", "drift", "proposal", "precond")  # rebuilt every step or on load

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        flat = self.flat if self.layout is not None else (self._loaded or {})
        state["langevin"] = {k: v for k, v in flat.items() if k not in self._SCRATCH}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        loaded = state_dict.pop("langevin", None)
        super().load_state_dict(state_dict)
        if loaded is not None:
            self._loaded = loaded
            if self.layout is not None:  # already stepping: load now
                self.layout = None
                self._allocate()

    # ----- public per-chain controls -----------------------------------------------------------------------
    @property
    def step_scale(self) -> Tensor:
        """(K,) each chain's step size as a multiple of lr (1 until adapted or reduced)."""
        return self.flat["step_scale"] if self.layout is not None else torch.ones(self.chains)

    @property
    def accept_prob(self) -> Tensor:
        return self.flat["accept_prob"]

    @property
    def accepted(self) -> Tensor:
        return self.flat["accepted"]

    def state_point(self) -> Tensor:
        """(K, D) each chain's current state: the point whose output is its sample."""
        return self.flat["state_theta"] if self.metropolis else self.flat["theta"]

    def scale_steps(self, chains: Tensor, factor: float) -> None:
        """Multiply the step size of the chains in the (K,) bool mask by `factor` (on the device)."""
        scale = self.flat["step_scale"]
        scale.copy_(torch.where(chains, scale * factor, scale))

    def restart(self, chains: Tensor, points: Tensor) -> None:
        """Put the chains in the (K,) bool mask at `points` (K, D) (their rows), replacing their pending
        proposal: the next step evaluates them there and takes them as the state without a decision."""
        params = self.layout.params
        current = self.layout.zeros()
        torch._foreach_copy_(self.layout.views(current), params)
        torch._foreach_copy_(params, self.layout.views(torch.where(chains[:, None], points, current)))
        self._params_hold_proposal = False
        self.flat["fresh"] |= chains

    def _end_adaptation(self) -> None:
        """Each chain keeps its dual-averaged step size from now on."""
        if self.flat.get("adapting"):
            self.flat["step_scale"].copy_(self.flat["da_log_mean"].exp())
            self.flat["adapting"] = False

    # ----- the step --------------------------------------------------------------------------------------
    def _hyper(self) -> tuple[float, float]:
        values = {(g["lr"], g["temperature"]) for g in self.param_groups}
        if len(values) > 1:
            raise ValueError("SGLD/PSGLD take one lr and one temperature for all parameter groups")
        return values.pop()

    def _preconditioner(self, drift: Tensor) -> Tensor | None:
        """G (K, D) for the next proposal (None: the identity), updated with this step's drift unless frozen."""
        return None

    def _sqrt_preconditioner(self) -> Tensor | None:
        return None

    def _deciding(self, steps: int) -> bool:
        """Whether the step after `steps` taken ones applies the Metropolis decision."""
        return self.metropolis and steps >= self.warmup_steps

    def _compares_energies(self, steps: int) -> bool:
        """Whether the step after `steps` taken ones computes the MH ratio: every adjusted step, and every
        `diagnose_every`-th unadjusted one (its diagnostic)."""
        return self._deciding(steps) or (steps + 1) % self.diagnose_every == 0

    def _energy_needed(self) -> bool:
        """Whether this step's energies are compared, by its own ratio or by the next step's."""
        steps = self.flat["steps"]
        return self._compares_energies(steps) or self._compares_energies(steps + 1)

    def _energy_terms(self, theta: Tensor, loss: Tensor | None, needed: bool) -> tuple[Tensor | None, Tensor]:
        """((K,) float64 data loss or None, (K,) float64 prior energy Σ θ²/(2σ_p²); NaN where not `needed`)."""
        if loss is not None:
            loss = loss.detach().to(torch.float64).reshape(self.chains)
        precision = self.prior_precision
        if precision is None or not needed:
            return loss, torch.full((self.chains,), 0.0 if precision is None else math.nan, dtype=torch.float64,
                                    device=theta.device)
        if isinstance(precision, float):
            prior = torch.linalg.vector_norm(theta, dim=1, dtype=torch.float64).square() * (0.5 * precision)
        else:
            prior = (theta.square() * precision).sum(1, dtype=torch.float64) * 0.5
        return loss, prior

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Tensor | None:
        loss = _closure_loss(closure)
        if self.layout is None:
            self._allocate()
        lr, temperature = self._hyper()
        flat, views = self.flat, self.layout.buffer_views
        if self.noise_update is not None:
            temperature = flat["temperature"]
        params = self.layout.params
        if self._params_hold_proposal:  # the parameters are the last proposal: its buffer is theta now
            flat["theta"], flat["proposal"] = flat["proposal"], flat["theta"]
        else:
            torch._foreach_copy_(views(flat["theta"]), params)
        theta, drift = flat["theta"], flat["drift"]
        torch._foreach_copy_(views(drift), [p.grad for p in params])
        precision = self.prior_precision
        if isinstance(temperature, Tensor):
            self._pull_to_prior(drift, theta, temperature)
        elif isinstance(precision, float):
            drift.add_(theta, alpha=temperature * precision)
        elif precision is not None:
            drift.addcmul_(precision, theta, value=temperature)
        if self.metropolis and flat["steps"] == self.warmup_steps:
            self._start_adjusting()
        chain_loss = self.chain_losses() if self.chain_losses is not None else loss
        data, prior = self._energy_terms(theta, chain_loss, needed=self._energy_needed())
        self._decide(data, prior, lr, temperature)
        if flat["adapting"] and flat["steps"] >= self.warmup_steps:
            self._adapt()
        base, base_drift = self._state(data, prior)
        temperature = self._update_noise(base, base_drift, temperature)  # between the decision and the proposal
        precond = self._preconditioner(drift)
        self._propose(base, base_drift, precond, lr, temperature)
        flat["steps"] += 1
        return loss

    def _pull_to_prior(self, drift: Tensor, theta: Tensor, temperature: Tensor) -> None:
        """drift += T·θ/σ_p² with each chain's T (K,) (its row of `drift` and `theta`, (K, D))."""
        precision = self.prior_precision
        if precision is not None:
            drift.addcmul_(theta * precision, temperature.to(drift.dtype)[:, None])

    def _update_noise(self, state: Tensor, state_drift: Tensor, temperature: Temperature) -> Temperature:
        """The noise step of the Gibbs sweep (`noise_update`): each chain's new temperature, with its state's
        drift and data loss brought to it; returns the temperature of the next proposal."""
        update = None if self.noise_update is None else self.noise_update(self.flat["accepted"], self.flat["steps"])
        if update is None:
            return temperature
        new_temperature, state_loss = update
        self._pull_to_prior(state_drift, state, new_temperature - temperature)
        self.flat["state_loss"].copy_(state_loss)
        self.flat["temperature"].copy_(new_temperature)
        return self.flat["temperature"]

    def _decide(self, data: Tensor | None, prior: Tensor, lr: float, temperature: Temperature) -> None:
        """The MH acceptance probability of the move from the state to this step's point, and (adjusted)
        the per-chain decision."""
        flat = self.flat
        fresh = flat["fresh"]
        deciding = self._deciding(flat["steps"])
        self.compared_energies = (self._compares_energies(flat["steps"]) and data is not None
                                  and (isinstance(temperature, Tensor) or temperature != 0))
        if not self.compared_energies:
            flat["accept_prob"].fill_(math.nan)
            flat["accepted"].fill_(True)
            return
        factor = (lr * flat["proposal_scale"] / (2 * temperature)).sqrt().to(flat["drift"].dtype)[:, None]
        c = flat["state_drift"] + flat["drift"]
        sqrt_precond = self._sqrt_preconditioner()
        if sqrt_precond is not None:
            c.mul_(sqrt_precond)
        c.mul_(factor)
        log_q = -0.5 * (c * (c - 2 * flat["noise"])).sum(1, dtype=torch.float64)
        log_ratio = (flat["state_loss"] - data) / temperature + flat["state_prior"] - prior + log_q
        prob = log_ratio.clamp(max=0).exp().nan_to_num(nan=0.0).float()
        flat["accept_prob"].copy_(torch.where(fresh, math.nan, prob))
        if deciding:
            uniform = self._uniforms(prob)
            flat["accepted"].copy_(fresh | (uniform < prob))
        else:
            flat["accepted"].fill_(True)

    def _uniforms(self, like: Tensor) -> Tensor:
        """(K,) U(0, 1), chain k's from its own generator."""
        if self.generator is None or isinstance(self.generator, torch.Generator):
            return torch.rand(1, generator=self.generator, device=like.device)
        return torch.cat([torch.rand(1, generator=g, device=like.device) for g in self.generator])

    def _state(self, data: Tensor | None, prior: Tensor) -> tuple[Tensor, Tensor]:
        """Move the accepted chains' state to this step's point; returns (state weights, state drift)."""
        flat = self.flat
        accepted = flat["accepted"]
        zero = torch.zeros_like(prior)
        data = zero if data is None else data
        flat["state_loss"].copy_(torch.where(accepted, data, flat["state_loss"]))
        flat["state_prior"].copy_(torch.where(accepted, prior, flat["state_prior"]))
        flat["fresh"].zero_()
        if not self.metropolis:  # the state is this step's point: swap the drift buffers, no copy
            flat["state_drift"], flat["drift"] = flat["drift"], flat["state_drift"]
            return flat["theta"], flat["state_drift"]
        rows = accepted[:, None]
        flat["state_theta"].copy_(torch.where(rows, flat["theta"], flat["state_theta"]))
        flat["state_drift"].copy_(torch.where(rows, flat["drift"], flat["state_drift"]))
        return flat["state_theta"], flat["state_drift"]

    def _adapt(self) -> None:
        """One dual-averaging update of each chain's log step size towards `target_accept`."""
        flat = self.flat
        prob = flat["accept_prob"]
        valid = ~prob.isnan()
        flat["da_count"] += 1
        m = flat["da_count"]
        gamma, t0, kappa = DUAL_AVERAGING["gamma"], DUAL_AVERAGING["t0"], DUAL_AVERAGING["kappa"]
        eta = 1.0 / (m + t0)
        h = flat["da_h"]
        h.copy_(torch.where(valid, (1 - eta) * h + eta * (self.target_accept - prob.nan_to_num(0.0)), h))
        log_scale = math.log(10.0) - math.sqrt(m) / gamma * h
        weight = m ** (-kappa)
        flat["da_log_mean"].mul_(1 - weight).add_(weight * log_scale)
        flat["step_scale"].copy_(log_scale.exp())
        if flat["steps"] + 1 >= self.adapt_until:
            self._end_adaptation()

    def _derived(self, name: str, inputs: tuple[Tensor, ...], make: Callable[[], tuple[Tensor, ...]]
                 ) -> tuple[Tensor, ...]:
        """`make()`'s tensors, made again only once one of `inputs` has been replaced or written in place (which
        bumps a tensor's `_version`): what a frozen preconditioner derives is made once, not every step."""
        versions = tuple(t._version for t in inputs)
        cached = self._derived_cache.get(name)
        if cached is None or any(a is not b for a, b in zip(cached[0], inputs, strict=True)) or cached[1] != versions:
            self._derived_cache.pop(name, None)  # (while G adapts: the old outputs go before the new are made)
            cached = self._derived_cache[name] = (inputs, versions, make())
        return cached[2]

    def _gains(self, precond: Tensor | None, scale: Tensor) -> tuple[Tensor, Tensor]:
        """(s·G, sqrt(s·G)), (K, 1) or (K, D): the proposal's drift and noise multipliers for the step scales s
        (K,), `_derived` from G and s."""
        rows = scale[:, None]
        if precond is None:
            return rows, rows.sqrt()

        def make() -> tuple[Tensor, Tensor]:
            gain = precond * rows
            return gain, gain.sqrt()

        return self._derived("gains", (precond, scale), make)

    def _propose(self, base: Tensor, base_drift: Tensor, precond: Tensor | None, lr: float,
                 temperature: Temperature) -> None:
        """θ' = base − lr·s·G·d + sqrt(2·lr·T)·sqrt(s·G)·ξ per chain (s its step scale), written into the
        parameters."""
        flat = self.flat
        scale = flat["step_scale"]
        flat["proposal_scale"].copy_(scale)
        new = flat["proposal"]
        gain, noise_gain = self._gains(precond, scale)
        torch.add(base, base_drift * gain, alpha=-lr, out=new)
        noise = flat["noise"]
        fill_normal_(self.layout.buffer_views(noise), self.generator)
        if isinstance(temperature, Tensor):
            new.add_(noise * noise_gain * (2.0 * lr * temperature).sqrt().to(new.dtype)[:, None])
        else:
            new.add_(noise * noise_gain, alpha=math.sqrt(2.0 * lr * temperature))
        torch._foreach_copy_(self.layout.params, self.layout.buffer_views(new))
        self._params_hold_proposal = True


class SGLD(Langevin):
    """Stochastic gradient Langevin dynamics (optionally Metropolis-adjusted: MALA).

    Samples ``p(θ) ∝ exp(−L(θ)/T − ||θ||²/(2σ_p²))`` with the step
    ``θ ← θ − lr·(∇L + T·θ/σ_p²) + sqrt(2·lr·T)·ξ``, ``ξ ~ N(0, I)``
    (Euler–Maruyama of the Langevin diffusion of the energy ``U = L/T + ||θ||²/(2σ_p²)`` with step
    ``lr·T``; unadjusted, the stationary variance of a target direction of variance ``v`` is off by a
    factor 1/(1 − lr·T/(2v)), so keep ``lr·T`` small against the target's smallest variance, or set
    ``metropolis`` to remove the bias at any step size).

    Mapping to DIP: with ``L`` the mean-MSE over ``P`` observed entries, noise std ``σ`` and
    ``T = τ·2σ²/P``, ``L/T = Σ r²/(2σ²τ)``: ``τ = 1`` is the Bayes posterior, ``τ < 1`` a cold one.
    ``prior_std=None`` is a flat prior; ``temperature=0`` is plain gradient descent. See :class:`Langevin`
    for chains, the Metropolis adjustment, the step-size adaptation and the noise inferred with the image
    (``noise_update``; ``temperature`` is then each chain's starting one).
    """

    def __init__(self, params: Params, lr: float, temperature: float = 1.0, prior_std: float | None = None,
                 generator: Generators = None, metropolis: bool = False, target_accept: float = 0.574,
                 warmup_steps: int = 0, adapt_until: int = 0,
                 chain_losses: Callable[[], Tensor] | None = None, noise_update: NoiseUpdate | None = None,
                 diagnose_every: int = 1) -> None:
        super().__init__(params, dict(lr=lr, temperature=temperature, prior_std=prior_std), generator, metropolis,
                         target_accept, warmup_steps, adapt_until, chain_losses, noise_update, diagnose_every)


class PSGLD(Langevin):
    """RMSprop-preconditioned SGLD (Li et al. 2016), same target as :class:`SGLD`.

    ``d = ∇L + T·θ/σ_p²``, ``V ← αV + (1−α)·d²`` (bias-corrected ``V̂ = V/(1−α^t)``),
    ``G = 1/(sqrt(V̂) + eps)``, ``θ ← θ − lr·G·d + sqrt(2·lr·T·G)·ξ``.
    The preconditioner adapts the step to each weight's curvature, which lets a single ``lr`` serve
    weights of very different scales. ``V`` averages the whole drift, the prior's part included (Li et
    al. average the loss gradient only): a weight the loss does not see (a conv bias before a
    BatchNorm has zero gradient) would otherwise get ``G = 1/eps`` and, under a tight prior, a prior step
    ``lr·G·T/σ_p²`` above 2, which diverges. The Γ correction term (the divergence of ``G``) is omitted, so
    the chain is biased while ``V`` changes; :meth:`freeze_preconditioner` (call it after burn-in)
    fixes ``G`` (cached from then on), which makes the chain a valid sampler again and is required for
    the Metropolis adjustment to be exact. The flag travels with ``state_dict()``. Frozen before its first
    step, ``V`` is taken from the first drift.
    """

    def __init__(self, params: Params, lr: float, temperature: float = 1.0, prior_std: float | None = None,
                 alpha: float = 0.99, eps: float = 1e-5, generator: Generators = None, metropolis: bool = False,
                 target_accept: float = 0.574, warmup_steps: int = 0, adapt_until: int = 0,
                 chain_losses: Callable[[], Tensor] | None = None, noise_update: NoiseUpdate | None = None,
                 diagnose_every: int = 1) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        super().__init__(params, dict(lr=lr, temperature=temperature, prior_std=prior_std, alpha=alpha, eps=eps),
                         generator, metropolis, target_accept, warmup_steps, adapt_until, chain_losses, noise_update,
                         diagnose_every)
        self._frozen = False  # before the first step; then in `flat`

    def _extra_state(self, layout: FlatLayout) -> dict[str, Any]:
        return {"square_avg": layout.zeros(), "precond": layout.zeros(), "v_steps": 0, "frozen": self._frozen}

    def _after_load(self) -> None:
        self.flat["precond"] = self.layout.zeros()
        if self.flat["v_steps"]:
            self._compute_precond()

    def _start_adjusting(self) -> None:
        self.freeze_preconditioner()  # G stays what the pending proposal used: the ratio is exact from here

    def freeze_preconditioner(self) -> None:
        """Stop updating ``V``: ``G`` stays what the last proposal used (removes the Γ term's bias)."""
        if self.layout is None:
            self._frozen = True
        else:
            self.flat["frozen"] = True

    @property
    def frozen(self) -> bool:
        if self.layout is None:
            return self._loaded["frozen"] if self._loaded is not None else self._frozen
        return self.flat["frozen"]

    def preconditioner(self) -> Tensor:
        """(K, D) the current G."""
        return self.flat["precond"]

    def _compute_precond(self) -> None:
        group = self.param_groups[0]
        flat = self.flat
        bias = 1.0 - group["alpha"] ** flat["v_steps"]
        torch.div(flat["square_avg"], bias, out=flat["precond"]).sqrt_().add_(group["eps"]).reciprocal_()

    def _preconditioner(self, drift: Tensor) -> Tensor:
        flat = self.flat
        if not flat["frozen"] or flat["v_steps"] == 0:
            alpha = self.param_groups[0]["alpha"]
            flat["square_avg"].mul_(alpha).addcmul_(drift, drift, value=1.0 - alpha)
            flat["v_steps"] += 1
            self._compute_precond()
        return flat["precond"]

    def _sqrt_preconditioner(self) -> Tensor:
        precond = self.flat["precond"]
        return self._derived("precond_sqrt", (precond,), lambda: (precond.sqrt(),))[0]


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
