"""Streaming moments of several chains' samples, their pooled posterior and convergence diagnostics.

Each chain's samples are kept as Welford (count, mean, M2) per batch of consecutive samples: no list of
samples. Everything else follows from these moments, exactly:
- the pooled posterior (Chan's merge over chains and batches: its variance includes the spread between chains);
- split-R̂ per entry (Gelman et al.; Vehtari et al. 2021): each chain's first and second half of batches
  are two sequences; W the mean within-sequence variance, B/n the variance of the sequence means,
  var⁺ = (n − 1)/n·W + B/n, R̂ = sqrt(var⁺ / W);
- the effective sample size by batch means: n draws in a batches have ESS = a·s²/s_b² (s² the variance of
  the draws, s_b² that of the batch means), with the batches of all chains taken together.
Thinned DIP draws are autocorrelated, so the unbiased-looking variance M2/(n − 1) is not enough alone: read
it with the ESS.
"""

from __future__ import annotations

import math

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(count, mean, M2): counts (*sets) and means / M2 (*sets, *S), a sum of squared deviations."""


def _align(count: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Counts (*sets) shaped to broadcast against moments (*sets, *S)."""
    return count.reshape(*count.shape, *[1] * (like.dim() - count.dim()))


def pool_moments(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor, dim: int = 0) -> State:
    """Chan's merge of the sample sets along `dim` into the moments of their union (that dim removed).

    Exact: M2 = Σ M2_i + Σ n_i (mean_i − mean)². Empty sets (count 0) are neutral.
    """
    weight = _align(count, mean)
    total = count.sum(dim)
    pooled = (weight * mean).sum(dim) / _align(total, mean.sum(dim)).clamp(min=1)
    spread = (weight * (mean - pooled.unsqueeze(dim)).square()).sum(dim)
    return total, pooled, m2.sum(dim) + spread


def variance(count: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """Unbiased sample variance M2 / (count − 1); zero with fewer than two samples."""
    return m2 / _align(count - 1, m2).clamp(min=1)


def split_rhat(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """Split-R̂ per entry (*S) from per-chain, per-batch moments: count (M, B), mean / M2 (M, B, *S).

    Batches [0, B/2) and [B/2, B) of each chain are its two halves: 2M sequences j of n_j draws, mean m_j and
    variance s_j². var⁺ = mean_j((n_j − 1)/n_j · s_j²) + Var_j(m_j), R̂ = sqrt(var⁺ / mean_j(s_j²)): with
    equal n_j the usual (n − 1)/n·W + B/n, with unequal halves (vetoed samples) each half's own count. Sequences
    with fewer than two draws are left out; NaN where fewer than two sequences remain or the within variance is
    zero. Well-mixed chains give values on both sides of 1.
    """
    half = count.shape[1] // 2
    halves = [pool_moments(c, m, s, dim=1) for c, m, s in
              ((count[:, :half], mean[:, :half], m2[:, :half]), (count[:, half:], mean[:, half:], m2[:, half:]))]
    n, means, m2s = (torch.cat(parts) for parts in zip(*halves, strict=True))  # (2M,), (2M, *S)
    used = n >= 2
    n, means, within = n[used], means[used], variance(n[used], m2s[used])
    if n.numel() < 2:
        return torch.full(mean.shape[2:], math.nan, device=mean.device)
    w = within.mean(0)
    var_plus = (_align((n - 1) / n, within) * within).mean(0) + means.var(0)
    return (var_plus / w).sqrt()


def batch_means_ess(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """Effective sample size per entry (*S) by batch means over all chains: count (M, B), mean / M2 (M, B, *S).

    A batch of n_i draws has a mean of variance ≈ τ·s²/n_i (τ the integrated autocorrelation time), so
    τ̂ = Σ_i n_i (m_i − m̄)² / ((a − 1)·s²) over the a non-empty batches and ESS = N/τ̂, with N all draws,
    s² their variance (pooled over chains: the spread between chains included) and m̄ their mean; chains
    that disagree have spread-out batch means, which lowers the ESS. Weighting by the counts makes batches
    of unequal size (a short last batch, vetoed samples) exact; with equal batches it is a·s²/s_b².
    """
    count, mean, m2 = (t.flatten(0, 1) for t in (count, mean, m2))
    total, pooled, pooled_m2 = pool_moments(count, mean, m2)
    filled = count > 0
    batches = int(filled.sum())
    if batches < 2:
        return torch.full(mean.shape[1:], math.nan, device=mean.device)
    spread = (_align(count[filled], mean) * (mean[filled] - pooled).square()).sum(0) / (batches - 1)
    return total * variance(total, pooled_m2) / spread


def batching(planned_samples: int) -> tuple[int, int]:
    """(batches, batch size) for a chain of `planned_samples` draws: an even number of about sqrt(n) batches
    (the usual batch-means choice) of equal size, enough to hold every planned draw."""
    batches = 2 * max(1, math.ceil(math.sqrt(max(planned_samples, 1)) / 2))
    size = max(1, math.ceil(planned_samples / batches))
    return 2 * math.ceil(math.ceil(max(planned_samples, 1) / size) / 2), size


class ChainMoments(nn.Module):
    """Welford moments of K chains' samples per batch of `batch_size` consecutive samples, on the device.

    Buffers count (K, B), mean and m2 (K, B, *shape): they move and checkpoint with the module. A sample
    past the last batch joins the last one. `update` takes a per-chain `keep` mask, so a rejected sample
    (even a non-finite one) changes nothing and the caller never branches on a device value.
    """

    def __init__(self, chains: int, batches: int, batch_size: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.register_buffer("count", torch.zeros(chains, batches))
        self.register_buffer("mean", torch.zeros(chains, batches, *shape))
        self.register_buffer("m2", torch.zeros(chains, batches, *shape))

    @torch.no_grad()
    def update(self, sample: torch.Tensor, index: int, keep: torch.Tensor | None = None) -> None:
        """Add the chains' sample number `index` (K, *shape), each unless its `keep` (K,) is False."""
        batch = min(index // self.batch_size, self.count.shape[1] - 1)
        count, mean, m2 = self.count[:, batch], self.mean[:, batch], self.m2[:, batch]  # views
        keep = torch.ones_like(count, dtype=torch.bool) if keep is None else keep
        sample = torch.where(_align(keep, sample), sample, mean)  # a rejected sample adds a zero deviation
        count += keep
        delta = sample - mean
        mean += delta / _align(count, mean).clamp(min=1)
        m2 += delta * (sample - mean)

    def state(self) -> State:
        return self.count, self.mean, self.m2

    def replan(self, planned_samples: int) -> None:
        """Re-plan the batches for a chain of `planned_samples` draws (a resumed run whose `max_steps` changed):
        groups of g consecutive batches merge into one (g·batch_size draws, g the nearest whole multiple of
        `batching`'s size), and empty batches are added to hold every planned draw; the samples kept so far
        stay where they are, and every batch but the last is full."""
        batches, size = batching(planned_samples)
        group = max(1, round(size / self.batch_size))
        count, mean, m2 = self.state()
        chains, old = count.shape
        if group > 1:
            padded = math.ceil(old / group) * group
            pad = lambda t: torch.cat([t, t.new_zeros(chains, padded - old, *t.shape[2:])], 1)  # noqa: E731
            grouped = [pad(t).reshape(chains, padded // group, group, *t.shape[2:]) for t in (count, mean, m2)]
            count, mean, m2 = pool_moments(*grouped, dim=2)
        new_size = self.batch_size * group
        needed = 2 * math.ceil(math.ceil(planned_samples / new_size) / 2)
        extra = max(0, needed - count.shape[1])
        self.batch_size = new_size
        self.count, self.mean, self.m2 = (torch.cat([t, t.new_zeros(chains, extra, *t.shape[2:])], 1)
                                          for t in (count, mean, m2))

    def posterior(self) -> State:
        """(count, mean, M2) of all the chains' samples pooled: 0-d, *shape, *shape."""
        return pool_moments(*(t.flatten(0, 1) for t in self.state()))
