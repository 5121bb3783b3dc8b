"""Observation noise: the likelihood's per-entry terms, the simulated observation, and the noise level inferred
with the image (docs/science.md §10).

Two models (`model.noise`), each with its parameters known or inferred (`model.infer_sigma`):

- `gaussian`: y = A x + n, n ~ N(0, σ²). The data term is the squared error (censored at clipped entries,
  `tasks.likelihood`) and the temperature T = τ·2σ²/P, so the data energy L/T is the negative log-likelihood
  over τ. Inferred, σ² has the scale-free prior InvGamma(α0, β0), α0 = β0 = 0 (p(σ²) ∝ 1/σ²), and its
  conditional given the state's prediction f is InvGamma(α0 + P/(2τ), β0 + SSE/(2τ)) over the P observed
  entries (the likelihood tempered by 1/τ, like θ's): a Gibbs draw. Censored entries first get their unclipped
  value imputed given the current σ (data augmentation), so the draw stays conjugate; its SSE counts their
  imputed residuals.
- `poisson_gaussian`: var(y | x) = a·x + b (photon and read noise, Foi et al. 2008). The data term is the
  negative log-likelihood N(y; f, v), v = a·f + b, with its log-variance term (censored at clipped entries
  with the per-entry variance), scaled by 2s²/P for a fixed reference variance s² (the mean of a·y + b
  over the observation at the starting (a, b)): L = (1/P) Σ s²·((y − f)²/v + log v) and T = τ·2s²/P, so L/T
  is the negative log-likelihood over τ again, and lr keeps the units it has under the Gaussian model (the
  two agree when a = 0, b = s²). Inferred, (log a, log b) take a random-walk Metropolis step per sweep
  (uniform priors on a >= 0 and b >= the floor; no forward pass: the state's prediction is kept), its step
  size adapted during the burn-in and then frozen.

Each chain has its own parameters (K,), drawn from its own random stream on the device, without a host sync.
The Langevin optimizer calls `update` between the decision on its pending proposal and its next proposal
(Metropolis-within-Gibbs): the θ-move then targets p(θ | current noise). Unadjusted, the loss whose gradient
drives the chain uses the current parameters (the state's gradient was taken one draw earlier); Metropolis-
adjusted, it uses the parameters frozen when the adjustment begins (like the preconditioner: the proposal
stays one fixed kernel) while the energies use the current ones, so the chain stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pywt
import torch
from skimage.restoration import estimate_sigma
from torch import Tensor, nn
from torch.special import log_ndtr

from .likelihood import censored_terms, clipped_entries, distance_past_bound

if TYPE_CHECKING:
    from .base import RestorationTask

NOISE_MODELS = ("gaussian", "poisson_gaussian")
Gather = Callable[[Tensor], Tensor]
"""A per-chain tensor (K, ...) -> that of every process's chains (N, ...) (`RestorationTask.gather_chains`)."""
PRIOR_SHAPE = PRIOR_RATE = 0.0
"""The InvGamma(α0, β0) prior of σ²: the scale-free limit p(σ²) ∝ 1/σ², which has no units, so it is as weak for a
1D signal in its own units as for an image in [0, 1] (a fixed β0 = 10⁻³ outweighed SSE/2 = P·σ²/2 for 100 entries
of noise 0.001). The conditional is proper whenever SSE > 0; a draw of 0 falls under the floor and is refused."""
GAMMA_TRIES = 8
"""Candidates per Marsaglia-Tsang gamma draw (each accepted with probability >= 0.95): all eight fail with
probability below 1e-10, and the chain then keeps its σ for that sweep."""
RW_TARGET = 0.3
"""Acceptance rate the random-walk step on (log a, log b) adapts to during the burn-in (two dimensions)."""
RW_START = 0.05
"""Its starting step (in log units)."""


# ----- classical single-image estimates ------------------------------------------------------------------
def haar_details(observation: Tensor, observed: Tensor | None,
                 bounds: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """The finest diagonal Haar detail d and the local mean m of every aligned 2x2 block (pairs in 1D) whose
    entries are all observed and unclipped: (d, m), 1D float64 arrays. For i.i.d. noise of variance v,
    d = (y00 − y01 − y10 + y11)/2 has variance v and cancels a locally linear image."""
    y = observation[0].double()
    valid = torch.ones_like(y, dtype=torch.bool) if observed is None else observed[0].bool().expand_as(y)
    if bounds is not None:
        at_low, at_high = clipped_entries(y, bounds)
        valid = valid & ~(at_low | at_high)
    if y.dim() == 2:  # (C, L): pairs
        length = y.shape[-1] // 2 * 2
        a, b = y[..., 0:length:2], y[..., 1:length:2]
        ok = valid[..., 0:length:2] & valid[..., 1:length:2]
        return ((a - b) / math.sqrt(2))[ok].numpy(), ((a + b) / 2)[ok].numpy()
    height, width = y.shape[-2] // 2 * 2, y.shape[-1] // 2 * 2
    corners = [(i, j) for i in (0, 1) for j in (0, 1)]
    values = [y[..., i:height:2, j:width:2] for i, j in corners]
    ok = torch.stack([valid[..., i:height:2, j:width:2] for i, j in corners]).all(0)
    detail = (values[0] - values[1] - values[2] + values[3]) / 2
    return detail[ok].numpy(), (sum(values) / 4)[ok].numpy()


MAD_TO_STD = 1 / 0.6745
"""A normal's std over its median absolute deviation."""


def classical_sigma(observation: Tensor, observed: Tensor | None, bounds: tuple[float, float] | None) -> float:
    """The wavelet median-absolute-deviation estimate of the noise std of an observation (1, C, *S), in its units
    (Donoho & Johnstone 1994): median |d| / 0.6745 over the finest diagonal db2 coefficients d of each channel,
    averaged over channels: scikit-image's `estimate_sigma` when every entry is observed and none is clipped;
    otherwise the same estimate over the coefficients whose support holds no missing (`observed`, a mask
    broadcastable to it) or clipped (at `bounds`) entry, which bias it (clipping shrinks the noise, a hole
    adds an edge). Biased up by texture. Without any such coefficient (a sparsely observed signal), the std of the
    valid entries: an upper bound (signal and noise), so that an inferred sigma starts hot rather than at 0."""
    y = observation[0].double()
    invalid = torch.zeros_like(y, dtype=torch.bool) if observed is None else ~observed[0].bool().expand_as(y)
    if bounds is not None:
        at_low, at_high = clipped_entries(y, bounds)
        invalid = invalid | at_low | at_high
    array = y.numpy()
    if not bool(invalid.any()):
        if array.ndim == 3:  # (C, H, W): channels last
            return float(estimate_sigma(np.moveaxis(array, 0, -1), channel_axis=-1, average_sigmas=True))
        return float(np.mean([estimate_sigma(channel) for channel in array]))
    wavelet = pywt.Wavelet("db2")
    support = pywt.Wavelet("db2_support", filter_bank=[np.abs(f) for f in wavelet.filter_bank])
    key = "d" * (array.ndim - 1)  # the finest diagonal band
    sigmas = []
    for channel, bad in zip(array, invalid.numpy(), strict=True):
        detail = pywt.dwtn(channel, wavelet)[key]
        clean = pywt.dwtn(bad.astype(float), support)[key] == 0  # no missing or clipped entry under the filter
        if clean.any():
            sigmas.append(MAD_TO_STD * np.median(np.abs(detail[clean])))
    if sigmas:
        return float(np.mean(sigmas))
    valid = y[~invalid]
    return float(valid.std()) if valid.numel() > 1 else 0.0


def classical_poisson_gaussian(observation: Tensor, observed: Tensor | None, bounds: tuple[float, float] | None,
                               floor: float, bins: int = 16) -> tuple[float, float]:
    """(a, b) of var(y | x) = a·x + b from one observation (1, C, *S): the MAD variance of the Haar details in
    `bins` bins of the local mean, fitted by a line (weighted least squares; a >= 0, b >= floor²)."""
    detail, mean = haar_details(observation, observed, bounds)
    if detail.size < 4 * bins:
        return 0.0, max(classical_sigma(observation, observed, bounds), floor) ** 2
    edges = np.quantile(mean, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, bins - 1)
    rows = [(mean[which == i].mean(), (MAD_TO_STD * np.median(np.abs(detail[which == i]))) ** 2, (which == i).sum())
            for i in range(bins) if (which == i).sum() >= 8]
    x, v, n = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    design = np.stack([x, np.ones_like(x)], 1) * np.sqrt(n)[:, None]
    a, b = np.linalg.lstsq(design, v * np.sqrt(n), rcond=None)[0]
    if a < 0:
        a, b = 0.0, float(np.average(v, weights=n))
    return float(a), float(max(b, floor**2))


# ----- draws from each chain's stream ----------------------------------------------------------------------
def _draw(kind: str, count: int, generators: Sequence[torch.Generator], device: torch.device) -> Tensor:
    """(K, count) float64 standard normals ("normal") or uniforms ("uniform"), row k from generator k."""
    draw = torch.randn if kind == "normal" else torch.rand
    return torch.stack([draw(count, generator=g, device=device, dtype=torch.float64) for g in generators])


def standard_gamma(shape: float, generators: Sequence[torch.Generator], device: torch.device) -> Tensor:
    """(K,) float64 Gamma(shape, 1) draws, chain k's from generator k, on the device without a host sync:
    Marsaglia & Tsang (2000) with `GAMMA_TRIES` candidates, the first accepted one taken (NaN if none is);
    shape < 1 by the boost Gamma(shape) = Gamma(shape + 1)·U^(1/shape)."""
    boost = shape < 1
    d = (shape + 1 if boost else shape) - 1 / 3
    c = 1 / math.sqrt(9 * d)
    x = _draw("normal", GAMMA_TRIES, generators, device)
    u = _draw("uniform", GAMMA_TRIES, generators, device)
    v = (1 + c * x) ** 3
    ok = (v > 0) & (u.log() < 0.5 * x**2 + d - d * v + d * v.clamp(min=1e-300).log())
    first = ok.to(torch.int8).argmax(1, keepdim=True)
    value = torch.where(ok.any(1), d * v.gather(1, first)[:, 0], math.nan)
    if boost:
        value = value * _draw("uniform", 1, generators, device)[:, 0] ** (1 / shape)
    return value


def inverse_gamma(shape: float, rate: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """(K,) float64 InvGamma(shape, rate_k) draws (rate (K,)), chain k's from generator k (NaN: no draw)."""
    return rate / standard_gamma(shape, generators, rate.device)


# ----- the models ------------------------------------------------------------------------------------------
class NoiseModel(nn.Module):
    """Per-chain noise parameters, known (plain floats) or inferred (buffers (K, n) float64, checkpointed with
    the task). `terms` gives the per-entry data terms whose mean over the P observed entries is the loss L,
    `temperature` T such that L/T is the negative log-likelihood over τ, `standardized` the mean squared
    residual over the variance on the uncensored entries (near 1 for a posterior sample: the divergence band),
    and `update` the Gibbs sweep's noise step of an inferred model.

    Args:
        known: the parameters in data units when given (σ; or a, b), None when inferred.
        estimate: the classical estimate from the observation (the start of an inferred model).
        floor: the smallest noise std the model takes (a prior bound: the 8-bit quantisation noise for images).
    """

    names: tuple[str, ...] = ()

    def __init__(self, known: tuple[float, ...] | None, estimate: tuple[float, ...], floor: float) -> None:
        super().__init__()
        self.infer = known is None
        self.estimate = estimate
        self.floor = floor
        self.known = known
        self.tau = 1.0
        self.start = 0  # the first optimizer step whose sweep draws the noise parameters
        self.adapt_until = 0  # the step after which a random-walk step size is frozen
        self.follow_gradient = True  # the gradient's parameters follow the current ones (unadjusted chains)

    @property
    def start_values(self) -> tuple[float, ...]:
        """The parameters the chains start from: the known ones, or the estimate within the floor."""
        return self.known if self.known is not None else self.clamp_start(self.estimate)

    def clamp_start(self, values: tuple[float, ...]) -> tuple[float, ...]:
        """`values` brought within the model's bounds (the floor)."""
        return values

    @property
    def noise_free(self) -> bool:
        """Whether the likelihood has no noise (T = 0: no posterior to sample)."""
        return False

    # ----- per-chain state (inferred) ----------------------------------------------------------------------
    def allocate(self, task: RestorationTask, chains: int, device: torch.device) -> None:
        """Buffers of an inferred model for `chains` chains on `device` (before a checkpoint is loaded)."""
        if not self.infer:
            return
        start = torch.tensor(self.start_values, dtype=torch.float64, device=device).expand(chains, -1)
        self.register_buffer("params", start.clone())  # (K, n) the current parameters
        self.register_buffer("gradient_params", start.clone())  # (K, n) those of the loss's gradient
        self.register_buffer("state_prediction", torch.zeros(chains, *task.observation.shape[1:], device=device))
        self.register_buffer("count", torch.zeros(chains, dtype=torch.float64, device=device))
        self.register_buffer("total", torch.zeros(chains, len(self.names), dtype=torch.float64, device=device))
        self.register_buffer("total_sq", torch.zeros(chains, len(self.names), dtype=torch.float64, device=device))

    def configure(self, tau: float, start: int, adapt_until: int, metropolis: bool) -> None:
        """How the sampler runs the sweep: likelihood tempering τ, the first step that draws (a warm-up at the
        starting values before it), the end of any adaptation, and whether the chain is Metropolis-adjusted
        (the gradient's parameters then stay those of `start`)."""
        self.tau, self.start, self.adapt_until, self.follow_gradient = tau, start, adapt_until, not metropolis

    @property
    def separate_energy(self) -> bool:
        """Whether the energy's loss must be evaluated apart from the gradient's (their parameters differ)."""
        return self.infer and not self.follow_gradient

    def current(self, gradient: bool = False) -> tuple[Any, ...]:
        """Each parameter: a float (known) or (K,) float64 (inferred; the gradient's with `gradient`)."""
        if not self.infer:
            return self.known
        params = self.gradient_params if gradient else self.params
        return tuple(params.unbind(1))

    def update(self, task: RestorationTask, accepted: Tensor, step: int) -> tuple[Tensor, Tensor] | None:
        """The sweep's noise step after optimizer step `step` (0-based) decided which chains `accepted` (K,):
        the state's prediction follows the accepted chains; from step `start` the parameters are drawn given
        it. Returns (each chain's temperature (K,) float64, its state's loss at the new parameters (K,)
        float64), or None before `start`."""
        prediction = task.last_prediction
        self.state_prediction.copy_(torch.where(accepted.view(-1, *[1] * (prediction.dim() - 1)), prediction,
                                                self.state_prediction))
        if step < self.start:
            return None
        self.draw(task, step)
        if self.follow_gradient:
            self.gradient_params.copy_(self.params)
        loss = task.observed_mean(self.terms(self.state_prediction, task.observation, task.censoring_bounds))
        return self.chain_temperature(task.num_observed), loss

    def curves(self, scale: float) -> dict[str, Tensor]:
        """Logger curves of the current parameters, means over chains: `noise/sigma` (σ·scale: 0-255 units for
        images) or `noise/a` and `noise/b`."""
        values = self.params.mean(0)
        return {f"noise/{name}": values[i] * (scale if name == "sigma" else 1.0) for i, name in enumerate(self.names)}

    def record(self, keep: Tensor) -> None:
        """Accumulate the current parameters of the chains in `keep` (K,) as posterior samples."""
        weight = keep.to(torch.float64)
        self.count.add_(weight)
        self.total.add_(self.params * weight[:, None])
        self.total_sq.add_(self.params.square() * weight[:, None])

    def posterior(self, gather: Gather) -> tuple[Tensor, Tensor] | None:
        """(mean, std) (n,) of each parameter over the kept samples of every chain, or None without samples."""
        count, total, total_sq = (gather(t) for t in (self.count, self.total, self.total_sq))
        samples = count.sum()
        if float(samples) == 0:
            return None
        mean = total.sum(0) / samples
        return mean, (total_sq.sum(0) / samples - mean.square()).clamp(min=0).sqrt()

    # ----- what a model defines ---------------------------------------------------------------------------
    def terms(self, prediction: Tensor, observation: Tensor, bounds: tuple[float, float] | None,
              gradient: bool = False) -> Tensor:
        """Per-entry data terms (K, C', *S') of predictions A(output); the gradient's parameters with `gradient`."""
        raise NotImplementedError

    def temperature(self, tau: float, num_observed: int) -> float:
        """T at the starting parameters."""
        raise NotImplementedError

    def chain_temperature(self, num_observed: int) -> Tensor:
        """(K,) float64 each chain's T at its current parameters (inferred)."""
        raise NotImplementedError

    def standardized(self, prediction: Tensor, squared: Tensor, task: RestorationTask) -> Tensor:
        """(K,) float64: the mean over the uncensored observed entries of the squared residual `squared` over
        its variance."""
        raise NotImplementedError

    def draw(self, task: RestorationTask, step: int) -> None:
        """Draw the current parameters given the state's prediction (inferred)."""
        raise NotImplementedError

    def metrics(self, gather: Gather, scale: float) -> dict[str, float]:
        """metrics.json figures: the classical estimate and, inferred, the posterior mean and std."""
        raise NotImplementedError

    def report(self, metrics: dict[str, Any], scale: float) -> str:
        """The one line that says which noise the run found or used."""
        raise NotImplementedError


class GaussianNoise(NoiseModel):
    """N(0, σ²) noise; σ known or inferred (module docstring)."""

    names = ("sigma",)

    def clamp_start(self, values: tuple[float, ...]) -> tuple[float, ...]:
        return (max(values[0], self.floor),)

    @property
    def noise_free(self) -> bool:
        """A known σ of 0 (the Poisson-Gaussian model's b is at least the floor)."""
        return not self.infer and self.known[0] == 0

    def terms(self, prediction, observation, bounds, gradient=False):
        (sigma,) = self.current(gradient)
        if isinstance(sigma, Tensor):
            sigma = sigma.to(prediction.dtype).view(-1, *[1] * (prediction.dim() - 1))
        if bounds is None:
            return (prediction - observation).square()
        return censored_terms(prediction, observation, sigma, bounds)

    def temperature(self, tau, num_observed):
        return tau * 2 * self.start_values[0] ** 2 / num_observed

    def chain_temperature(self, num_observed):
        return self.tau * 2 * self.params[:, 0].square() / num_observed

    def standardized(self, prediction, squared, task):
        (sigma,) = self.current()
        return task.mse_interior.double() / sigma**2

    def draw(self, task, step):
        """A Gibbs draw of σ given the state's prediction f. Censored entries first get their unclipped value
        imputed given the current σ (data augmentation: truncated normals beyond their bound, by the inverse
        CDF), then σ'² ~ InvGamma(α0 + P/(2τ), β0 + SSE/(2τ)) over all P observed entries; without censored
        entries the plain conditional. A draw below the floor (a prior bound) is refused: σ stays."""
        generators, tau = task.generators, self.tau
        f, y = self.state_prediction, task.observation
        sigma = self.params[:, 0]
        sse = ((f - y).square() * task.interior).flatten(1).sum(1, dtype=torch.float64)
        if task.censored_count:
            shape = (-1, *[1] * (f.dim() - 1))
            limit = distance_past_bound(f, y, task.censoring_bounds).double() / sigma.view(shape)  # z <= limit
            uniform = torch.stack([torch.rand(f.shape[1:], generator=g, device=f.device, dtype=torch.float64)
                                   for g in generators])
            z = torch.special.ndtri((uniform.log() + log_ndtr(limit)).exp())
            z = torch.where(z.isfinite(), z, limit)  # a tail beyond float64: the value at the bound
            sse = sse + (z.square() * task.censored).flatten(1).sum(1) * sigma.square()
        proposal = inverse_gamma(PRIOR_SHAPE + task.num_observed / (2 * tau), PRIOR_RATE + sse / (2 * tau),
                                 generators).sqrt()
        self.params[:, 0].copy_(torch.where(proposal >= self.floor, proposal, sigma))  # NaN: no draw, σ stays

    def metrics(self, gather, scale):
        metrics = {"sigma_initial_estimate": scale * self.estimate[0]}
        posterior = self.posterior(gather) if self.infer else None
        if posterior is not None:
            metrics.update(sigma_posterior_mean=scale * float(posterior[0][0]),
                           sigma_posterior_std=scale * float(posterior[1][0]))
        return metrics

    def looks_noise_free(self, sigma: float) -> bool:
        """Whether a noise std `sigma` (data units) is within twice the floor: a nearly noise-free observation,
        whose posterior is nearly a point."""
        return sigma < 2 * self.floor

    def report(self, metrics, scale):
        units = "0-255 units" if scale == 255 else "the data's units"
        estimate = f"wavelet MAD estimate {metrics['sigma_initial_estimate']:.2f}"
        if "sigma_posterior_mean" in metrics:
            line = (f"noise level inferred with the image: sigma = {metrics['sigma_posterior_mean']:.2f} ± "
                    f"{metrics['sigma_posterior_std']:.2f} (posterior mean ± std, {units}; started from the "
                    f"{estimate})")
            if self.looks_noise_free(metrics["sigma_posterior_mean"] / scale):
                line += (": the observation looks noise-free, so the posterior is nearly a point and the "
                         "uncertainty map near zero")
            return line
        if self.infer:
            return f"noise level: no posterior sample of sigma was kept ({estimate}, {units})"
        if self.known == self.clamp_start(self.estimate):
            return (f"noise level: sigma = {scale * self.known[0]:.2f} ({units}), the wavelet MAD estimate of the "
                    f"observation, used by the likelihood")
        return f"noise level: sigma = {scale * self.known[0]:.2f} ({units}, model.sigma); {estimate} of the observation"


class PoissonGaussianNoise(NoiseModel):
    """var(y | x) = a·x + b; (a, b) known or inferred (module docstring). `mean_intensity` is the observation's
    mean over its observed entries (negative values as 0): the reference variance s² = a·mean + b at the starting
    (a, b) sets the temperature's units."""

    names = ("a", "b")

    def __init__(self, known, estimate, floor, mean_intensity: float) -> None:
        super().__init__(known, estimate, floor)
        self.mean_intensity = mean_intensity
        a, b = self.start_values
        self.reference = a * mean_intensity + b

    def clamp_start(self, values):
        """b within the floor, and a > 0: at a = 0 the walk on log a would start at −∞, where the likelihood is
        flat, and never return. An estimate without photon noise (a <= 0) starts with its variance at the mean
        intensity (at least the floor) split evenly between photon and read noise, b then within the floor."""
        a, b = values
        if a <= 0:
            a, b = b / (2 * max(self.mean_intensity, self.floor)), b / 2
        return (a, max(b, self.floor**2))

    def variance(self, prediction: Tensor, gradient: bool = False) -> Tensor:
        """v = a·max(f, 0) + b per entry of predictions f (K, C', *S')."""
        a, b = self.current(gradient)
        if isinstance(a, Tensor):
            shape = (-1, *[1] * (prediction.dim() - 1))
            a, b = a.to(prediction.dtype).view(shape), b.to(prediction.dtype).view(shape)
        return prediction.clamp(min=0) * a + b

    def terms(self, prediction, observation, bounds, gradient=False):
        variance = self.variance(prediction, gradient)
        inside = self.reference * ((prediction - observation).square() / variance + variance.log())
        if bounds is None:
            return inside
        at_low, at_high = clipped_entries(observation, bounds)
        beyond = distance_past_bound(prediction, observation, bounds)
        censored = -2 * self.reference * log_ndtr(beyond / variance.sqrt())
        return torch.where(at_low | at_high, censored, inside)

    def temperature(self, tau, num_observed):
        return tau * 2 * self.reference / num_observed

    def chain_temperature(self, num_observed):
        return torch.full((self.params.shape[0],), self.temperature(self.tau, num_observed), dtype=torch.float64,
                          device=self.params.device)

    def standardized(self, prediction, squared, task):
        ratio = squared / self.variance(prediction) * task.interior
        return ratio.flatten(1).sum(1, dtype=torch.float64) / task.interior_count

    def _log_target(self, task: RestorationTask, log_ab: Tensor) -> Tensor:
        """(K,) the log conditional density of (log a, log b) (K, 2) given the state's prediction: the tempered
        log-likelihood plus log a + log b (uniform priors on a and b, in log coordinates)."""
        f, y, bounds = self.state_prediction, task.observation, task.censoring_bounds
        shape = (-1, *[1] * (f.dim() - 1))
        a, b = (log_ab[:, i].exp().view(shape) for i in (0, 1))
        variance = f.double().clamp(min=0) * a + b
        inside = ((f - y).square() / variance + variance.log()) * task.interior
        nll = 0.5 * inside.flatten(1).sum(1)
        if task.censored_count:
            tail = log_ndtr(distance_past_bound(f, y, bounds).double() / variance.sqrt())
            nll = nll - (tail * task.censored).flatten(1).sum(1)
        return -nll / self.tau + log_ab.sum(1)

    def allocate(self, task, chains, device):
        super().allocate(task, chains, device)
        if self.infer:
            self.register_buffer("log_step", torch.full((chains,), math.log(RW_START), dtype=torch.float64,
                                                        device=device))

    def draw(self, task, step):
        """One random-walk Metropolis step on (log a, log b), its step adapted towards `RW_TARGET` acceptance
        until `adapt_until` (Robbins-Monro), then fixed."""
        generators = task.generators
        current = self.params.log()  # a > 0 and b >= floor² from the start (`clamp_start`) on
        proposal = current + self.log_step.exp()[:, None] * _draw("normal", 2, generators, current.device)
        log_ratio = self._log_target(task, proposal) - self._log_target(task, current)
        above_floor = proposal[:, 1] >= 2 * math.log(self.floor)
        accept = (_draw("uniform", 1, generators, current.device)[:, 0].log() < log_ratio) & above_floor
        self.params.copy_(torch.where(accept[:, None], proposal.exp(), self.params))
        if step < self.adapt_until:  # a proposal under the floor counts as rejected
            rate = torch.where(above_floor, log_ratio.clamp(max=0).exp().nan_to_num(0.0), 0.0)
            self.log_step.add_((rate - RW_TARGET) / math.sqrt(step - self.start + 1))

    def metrics(self, gather, scale):
        metrics = {"noise_a_initial_estimate": self.estimate[0], "noise_b_initial_estimate": self.estimate[1]}
        posterior = self.posterior(gather) if self.infer else None
        if posterior is not None:
            (a, b), (a_std, b_std) = posterior[0].tolist(), posterior[1].tolist()
            metrics.update(noise_a_posterior_mean=a, noise_a_posterior_std=a_std, noise_b_posterior_mean=b,
                           noise_b_posterior_std=b_std)
        return metrics

    def report(self, metrics, scale):
        if "noise_a_posterior_mean" in metrics:
            a, b = metrics["noise_a_posterior_mean"], metrics["noise_b_posterior_mean"]
            return (f"noise inferred with the image: var(y | x) = a·x + b with a = {a:.4g} ± "
                    f"{metrics['noise_a_posterior_std']:.2g} ({_photons(a)}), b = {b:.4g} ± "
                    f"{metrics['noise_b_posterior_std']:.2g} (read noise {scale * math.sqrt(b):.2f}/255)")
        a, b = self.estimate if self.infer else self.known
        source = "estimated from the observation" if self.infer or self.known == self.estimate else "given"
        return (f"noise: var(y | x) = a·x + b, {source}: a = {a:.4g} ({_photons(a)}), b = {b:.4g} (read noise "
                f"{scale * math.sqrt(b):.2f}/255); classical estimate a = {self.estimate[0]:.4g}, "
                f"b = {self.estimate[1]:.4g}")


def _photons(a: float) -> str:
    return f"{1 / a:.1f} photons per unit intensity" if a > 0 else "no photon noise"
