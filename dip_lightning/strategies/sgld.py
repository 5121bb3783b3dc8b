"""Langevin dynamics over the network weights with posterior averaging: DIP without early stopping."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from .. import optim
from ..errors import InputError
from ..moments import batch_means_ess, pool_moments, split_rhat, variance
from ..nets.chains import ChainConv
from ..verdict import refuse_empty_schedule
from .base import Gather, Selection, Strategy, chain_metrics, likelihood_temperature, uncertainty_selection

if TYPE_CHECKING:
    from ..callbacks import LangevinChain, PosteriorAverage
    from ..tasks.base import RestorationTask

DEFAULT_LR = {"sgld": 3.0, "psgld": 0.01, "paper": 0.01}
"""Learning rates measured to work on 64x64 denoising with the mean-MSE loss (docs/science.md §3)."""
DIAGNOSE_EVERY = 10
"""An unadjusted chain computes its MH ratio (`mh_accept_prob`) every this many steps (every log step when
`trainer.log_every_n_steps` does not divide it): every step it cost 10 of a 64x64 step's 60 ms."""


def _diagnose_every(task: RestorationTask) -> int:
    """DIAGNOSE_EVERY, or its divisor that falls on every log step (the W&B curve `mcmc/accept_prob`)."""
    trainer = getattr(task, "_trainer", None)  # a task built outside a Trainer has none
    return math.gcd(DIAGNOSE_EVERY, trainer.log_every_n_steps if trainer is not None else DIAGNOSE_EVERY)


class SGLD(Strategy):
    """Sample θ from the DIP posterior and return the posterior mean image and its per-pixel std.

    The temperature follows the task: T = tau·2σ²/P for the task's mean-MSE loss over P observed entries
    and noise std σ (tau = 1 the Bayes posterior, tau < 1 a cold one). After `burn_in` steps the output
    is accumulated every `thin` steps into a running mean and variance (callback `PosteriorAverage`).

    With several chains (on one process, batched, and on every process of a multi-device run), each chain
    is sampled independently and the posterior pools every sample of every chain: its variance includes
    the spread between chains. metrics.json adds each chain's own posterior-mean PSNR (`psnr_per_chain`)
    and the convergence diagnostics split-R̂ (`rhat_median`, `rhat_p99`, `rhat_max`; a map in rhat.png) and
    the batch-means effective sample size (`ess_median`), from the streaming per-batch moments (one chain
    is split into its two halves, so they are reported for one chain too).

    How close the chains come to the stated posterior is measured, not assumed (docs/science.md §3, §8):
    `metropolis` makes sgld/psgld exact at any step size (MALA: each Langevin step is a proposal accepted
    with the Metropolis-Hastings ratio; the step size adapts during burn-in to `target_accept` and is then
    frozen); unadjusted, the same ratio is computed every `DIAGNOSE_EVERY` steps and reported
    (`mh_accept_prob`, its mean: near 1 the step is accurate, near 0 far off). `mse_observation_ratio`
    (the states' mean MSE to the observation over σ² after burn-in, near 1 for posterior samples) is
    reported for every chain.

    With the noise inferred (`model.infer_sigma`, `tasks.noise`), each Langevin step is a Gibbs sweep: the
    noise parameters are drawn given the state's prediction between the decision on the pending proposal and
    the next proposal, from the middle of the burn-in on (before it the chains run at the classical estimate);
    each chain's temperature and band follow its own. metrics.json adds their posterior mean and std.

    Where sgld/psgld are not samplers of the stated posterior they say so: a noise-free task (σ = 0, so
    T = 0: plain gradient descent) is refused; input jitter (`model.reg_noise_std` > 0, gradient noise
    as large as the Langevin noise or larger) gets a warning, and is refused with `metropolis` (it makes
    the energy random). The paper mode runs anywhere, with a warning that it is a heuristic; `metrics.json`
    names the sampler (`sampler`).

    Args:
        sampler: `psgld` RMSprop-preconditioned SGLD (the default: measured best PSNR and calibration),
            `sgld` plain SGLD, or `paper` the GP-DIP code's heuristic (Adam + N(0, (2 lr)²) noise on conv
            weights): a reproduction mode, NOT a valid sampler; it regularises through the task's input
            jitter `reg_noise_std`, which it needs on.
        lr: step size; None takes the measured default of the sampler (sgld 3, psgld 0.01, paper 0.01).
        tau: temperature factor (sgld, psgld).
        prior_std: std σ_p of the zero-mean Gaussian weight prior (sgld, psgld): a number for every
            parameter, `init` per layer at PyTorch's default initialisation scale (σ_p² = 1/(3·fan_in) for
            conv and linear weights and biases, 1 for BatchNorm's scale and shift; `optim.prior`; measured
            worse than 1 on denoising at the default step sizes, docs/benchmarks.md), or None for a flat prior.
        alpha: averaging constant of the pSGLD preconditioner (running mean of squared gradients).
        eps: damping of the pSGLD preconditioner.
        freeze_preconditioner: freeze the pSGLD preconditioner after burn-in (a valid sampler again;
            required by `metropolis`).
        metropolis: Metropolis-adjust the sgld/psgld step (MALA): exact at any step size; `acceptance_rate`
            and the adapted `step_size` per chain in metrics.json.
        target_accept: the acceptance rate the step size adapts to during burn-in with `metropolis`
            (0.574, optimal for MALA in high dimension: Roberts & Rosenthal 1998).
        weight_decay: the paper mode's Adam weight decay.
        noise_std: the paper mode's std of the noise added to conv weights (None: 2·lr).
        burn_in: steps before the first sample.
        thin: steps between samples.
        max_mse_ratio: divergence guard (a truncation of the target, `LangevinChain`): after burn-in, a state
            whose MSE to the observation exceeds this multiple of σ² is out of band (its sample is dropped);
            `.inf` disables it.
        max_recoveries: how often a chain that leaves the band goes back to its last in-band state and goes
            on at half its step size (sgld, psgld; `chain_recoveries`, `chain_recovery_step` and
            `samples_after_recovery` in metrics.json) before it stops giving samples (`chain_left_band_step`);
            the paper mode has backtracking instead and stops at once.
        backtracking: the GP-DIP notebook's Adam guard (paper mode): at every step whose PSNR to the
            observation falls more than `backtracking_drop_db` below the last good step's, the parameters go
            back to that step's and the update is still taken (`callbacks.Backtracking`).
        backtracking_drop_db: the PSNR drop (dB) that counts as an instability.
        chains: independent chains per process (each its own initialisation, code and noise stream).
    """

    name = "sgld"

    def __init__(self, sampler: Literal["sgld", "psgld", "paper"] = "psgld", lr: float | None = None,
                 tau: float = 1.0, prior_std: float | Literal["init"] | None = 1.0, alpha: float = 0.99,
                 eps: float = 1e-5, freeze_preconditioner: bool = True, metropolis: bool = False,
                 target_accept: float = 0.574, weight_decay: float = 5e-8,
                 noise_std: float | None = None, burn_in: int = 1000, thin: int = 10, max_mse_ratio: float = 3.0,
                 max_recoveries: int = 3, backtracking: bool = False, backtracking_drop_db: float = 5.0,
                 chains: int = 1) -> None:
        super().__init__(chains)
        if sampler not in DEFAULT_LR:
            raise ValueError(f"sampler must be one of {', '.join(DEFAULT_LR)}, got {sampler!r}")
        if isinstance(prior_std, str) and prior_std != "init":
            raise InputError(f"model.strategy.prior_std={prior_std!r}: give a number, init or null")
        if metropolis and sampler == "paper":
            raise InputError("model.strategy.metropolis=true needs a Langevin step to adjust: use sampler=sgld or "
                             "psgld (the paper mode's Adam step is no proposal with a known density)")
        if metropolis and sampler == "psgld" and not freeze_preconditioner:
            raise InputError("model.strategy.metropolis=true with psgld needs freeze_preconditioner=true: a "
                             "preconditioner that keeps changing breaks the Metropolis-Hastings ratio")
        if not 0.0 < target_accept < 1.0:
            raise InputError(f"model.strategy.target_accept={target_accept}: give an acceptance rate in (0, 1)")
        self.sampler = sampler
        self.lr = DEFAULT_LR[sampler] if lr is None else lr
        self.tau = tau
        self.prior_std = prior_std
        self.alpha = alpha
        self.eps = eps
        self.freeze_preconditioner = freeze_preconditioner
        self.metropolis = metropolis
        self.target_accept = target_accept
        self.weight_decay = weight_decay
        self.noise_std = noise_std
        self.burn_in = burn_in
        self.thin = thin
        self.max_mse_ratio = max_mse_ratio
        self.max_recoveries = max_recoveries
        self.backtracking = backtracking
        self.backtracking_drop_db = backtracking_drop_db
        self._posterior: PosteriorAverage | None = None
        self._chain: LangevinChain | None = None

    @property
    def infers_noise(self) -> bool:
        return self.sampler != "paper"

    def temperature(self, task: RestorationTask) -> float:
        """T = tau·2σ²/P: the posterior exp(−P·MSE/(2σ²τ)) in terms of the task's mean-MSE loss."""
        return likelihood_temperature(task, self.tau)

    def check(self, task: RestorationTask) -> None:
        """Refuse what sgld/psgld cannot sample: a noise-free task (T = 0), and input jitter under `metropolis`."""
        if self.sampler == "paper":
            return
        if task.noise_model.noise_free:
            raise InputError(f"sampler={self.sampler} needs the observation's noise level: at model.sigma=0 its "
                             f"temperature is 0, so it is plain gradient descent and its spread is no posterior; "
                             f"give model.sigma > 0, or use sampler=paper (a heuristic) for a noise-free task")
        jitter = task.hparams.reg_noise_std
        if jitter > 0 and self.metropolis:
            raise InputError(f"model.reg_noise_std={jitter:g} with model.strategy.metropolis=true: the input jitter "
                             f"makes the energy random, so no Metropolis-Hastings ratio holds; set "
                             f"model.reg_noise_std=0")

    def check_precision(self, trainer: L.Trainer) -> None:
        """Refuse a precision that a Langevin step cannot take: `16-mixed` (its GradScaler skips every step
        whose scaled gradient overflows, which drops Langevin steps and their noise, and reads a flag on
        the host each step) and half-precision weights (`16-true`, `bf16-true`: the noise, of order
        sqrt(2·lr·T), falls below their rounding)."""
        precision = str(trainer.precision)
        if precision in ("16-mixed", "16-true", "bf16-true") or getattr(trainer.precision_plugin, "scaler", None):
            raise InputError(f"trainer.precision={precision} with sampler={self.sampler}: the Langevin step needs "
                             f"float32 weights and unscaled gradients; use --trainer.precision=bf16-mixed")

    def configure_optimizer(self, task: RestorationTask) -> torch.optim.Optimizer:
        # each chain's noise comes from its own stream (seeded per chain, saved in checkpoints by the task)
        params, generators = task.net.parameters(), task.generators
        jitter = task.hparams.reg_noise_std
        if self.sampler == "paper":
            rank_zero_warn("sampler=paper is the GP-DIP code's heuristic, not a valid sampler: its posterior std "
                           "and calibration figures describe its spread, not a posterior")
            if jitter == 0:
                rank_zero_warn("sampler=paper regularises through the input jitter, which is off "
                               "(model.reg_noise_std=0): expect it to overfit like SGD")
            conv_weights = {id(m.weight) for m in task.net.modules() if isinstance(m, ChainConv)}
            groups = [{"params": [p for p in task.net.parameters() if id(p) in conv_weights]},
                      {"params": [p for p in task.net.parameters() if id(p) not in conv_weights], "noise_std": 0.0}]
            return optim.PaperSGLD(groups, lr=self.lr, weight_decay=self.weight_decay, noise_std=self.noise_std,
                                   generator=generators)
        if jitter > 0:
            rank_zero_warn(f"model.reg_noise_std={jitter:g} with sampler={self.sampler}: the input jitter adds "
                           f"gradient noise as large as the Langevin noise or larger, so the chain does not sample "
                           f"the stated posterior; set model.reg_noise_std=0 for a valid sampler")
        temperature = self.temperature(task)
        if self.prior_std == "init":
            params, prior_std = optim.prior_param_groups(task.net.named_parameters(),
                                                         optim.init_prior_stds(task.net)), None
        else:
            params, prior_std = task.net.parameters(), self.prior_std
        common = dict(lr=self.lr, temperature=temperature, prior_std=prior_std, generator=generators,
                      metropolis=self.metropolis, target_accept=self.target_accept,
                      warmup_steps=self.burn_in // 2, adapt_until=self.burn_in,
                      chain_losses=lambda: task.chain_loss,
                      diagnose_every=_diagnose_every(task))
        noise = task.noise_model
        if noise.infer:  # the noise step of each Gibbs sweep, from the middle of the burn-in on
            noise.configure(self.tau, start=self.burn_in // 2, adapt_until=self.burn_in, metropolis=self.metropolis)
            common["noise_update"] = lambda accepted, step: noise.update(task, accepted, step)
        if self.sampler == "sgld":
            return optim.SGLD(params, **common)
        return optim.PSGLD(params, alpha=self.alpha, eps=self.eps, **common)

    def callbacks(self, task: RestorationTask) -> list[Callback]:
        from ..callbacks import Backtracking, LangevinChain, PosteriorAverage

        recoveries = 0 if self.sampler == "paper" else self.max_recoveries  # no step size of its own to reduce
        self._chain = LangevinChain(self.burn_in, self.freeze_preconditioner, self.max_mse_ratio, recoveries)
        self._backtracking = (Backtracking(self.backtracking_drop_db, every_n_steps=1, keep_update=True)
                              if self.backtracking else None)
        self._posterior = PosteriorAverage(self.burn_in, self.thin, sample=self._sample)
        refuse_empty_schedule(self._posterior.planned_samples(task.trainer.max_steps), task.trainer.max_steps,
                              self.burn_in, self.thin)
        return [*([self._backtracking] if self._backtracking else []), self._chain, self._posterior]

    def _sample(self, task: RestorationTask) -> tuple[torch.Tensor, torch.Tensor]:
        """The chains' samples of this step and which to keep: the chain's, less a step backtracking undid."""
        output, keep = self._chain.sample(task)
        if self._backtracking is not None:
            keep = keep & ~self._backtracking.rolled_back
        if task.noise_model.infer:
            task.noise_model.record(keep)  # the noise parameters paired with the kept samples
        return output, keep

    def select(self, task: RestorationTask, gather: Gather) -> Selection:
        """The posterior mean pooled over all chains, with its std and the diagnostics; with fewer than two
        samples, the chains' EMA of the outputs averaged (a warning says so)."""
        count, mean, m2 = (gather(t) for t in self._posterior.moments.state())  # (N, B), (N, B, C, *S)
        diagnostics = {key: gather(value) for key, value in
                       self._chain.diagnostics(task.trainer.optimizers[0]).items()}  # each (N,)
        samples, planned = int(count.sum()), len(count) * self._posterior.planned_samples(task.trainer.max_steps)
        metrics: dict[str, Any] = {"sampler": self.sampler, "metropolis": self.metropolis, "samples": samples,
                                   "samples_planned": planned, "chains": len(count),
                                   **chain_diagnostics(diagnostics)}
        if samples < 0.95 * planned:
            rank_zero_warn(f"{samples} of {planned} planned posterior samples (burn_in={self.burn_in}, "
                           f"thin={self.thin}, {len(count)} chain(s); chain_left_band_step in metrics.json): "
                           + ("the posterior mean averages those" if samples >= 2 else
                              "returning the EMA of the outputs, without an uncertainty map"))
        if samples < 2:
            return Selection(gather(task.ema).mean(0), int(task.step), metrics=metrics)
        total, posterior_mean, posterior_m2 = pool_moments(*(t.flatten(0, 1) for t in (count, mean, m2)))
        posterior_var = variance(total, posterior_m2)
        _, chain_means, _ = pool_moments(count, mean, m2, dim=1)
        metrics.update(chain_metrics(task, chain_means))
        rhat, ess = split_rhat(count, mean, m2), batch_means_ess(count, mean, m2)
        metrics.update(rhat_median=float(rhat.nanmedian()), rhat_p99=float(rhat.nanquantile(0.99)),
                       rhat_max=float(rhat.nan_to_num(nan=-math.inf).max()), ess_median=float(ess.nanmedian()))
        # calibration against the image itself: the posterior variance (docs/science.md §4)
        return uncertainty_selection(task, posterior_mean, posterior_var, metrics, rhat=rhat)


def _per_chain(values: torch.Tensor, digits: int = 4) -> list[float | None]:
    return [None if math.isnan(v) else round(v, digits) for v in values.tolist()]


def chain_diagnostics(figures: dict[str, torch.Tensor]) -> dict[str, Any]:
    """metrics.json entries of `LangevinChain.diagnostics` gathered over the run's N chains (each (N,))."""
    steps = figures["post_steps"]
    metrics: dict[str, Any] = {}
    if float(steps.sum()) > 0:
        metrics["mse_observation_ratio"] = float(figures["mse_ratio_sum"].sum() / steps.sum())
        metrics["mse_observation_ratio_per_chain"] = _per_chain(figures["mse_ratio_sum"] / steps)
    if not bool(figures["mh_accept_prob"].isnan().all()):
        metrics["mh_accept_prob"] = _per_chain(figures["mh_accept_prob"])
    for key in ("acceptance_rate", "step_size"):
        if key in figures:
            metrics[key] = _per_chain(figures[key], 6 if key == "step_size" else 4)
    recoveries, left = figures["recoveries"], figures["left_step"]
    if bool((recoveries > 0).any()):
        metrics["chain_recoveries"] = [int(n) for n in recoveries]
        metrics["chain_recovery_step"] = [int(step) or None for step in figures["first_recovery_step"]]
        metrics["samples_after_recovery"] = int(figures["samples_after_recovery"].sum())
    if bool((left > 0).any()):
        metrics["chain_left_band_step"] = [int(step) or None for step in left]
    return metrics
