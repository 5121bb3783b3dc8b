"""Calibration of a per-pixel uncertainty against the ground truth (docs/science.md §4), as torchmetrics metrics.

Every metric here is updated with `(mean, variance, target)`: the predicted mean, the predicted
variance and the true values, all of one shape, in image intensity units ([0, 1] scale). Against the
clean ground truth pass the *posterior* variance (the uncertainty about the image itself); the
predictive variance (posterior variance + sigma²) describes a new noisy observation instead.

Example:
    >>> import torch
    >>> target = torch.zeros(20_000)
    >>> variance = torch.full_like(target, 0.04)
    >>> mean = target + variance.sqrt() * torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    >>> metrics = calibration_metrics()
    >>> metrics.update(mean, variance, target)
    >>> round(float(metrics.compute()["coverage_95"]), 2)
    0.95
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.regression import SpearmanCorrCoef
from torchmetrics.utilities import dim_zero_cat


class UncertaintyCalibrationError(Metric):
    """UCE (Laves et al. 2020): entries binned by predicted variance into `n_bins` equal-width bins over
    [0, max variance]; UCE = Σ_b (n_b/N)·|MSE_b − mean variance_b| = (1/N)·Σ_b |Σ_{i∈b} (err_i² − var_i)|.

    0 is perfect; in squared intensity units. Keeps all entries until `compute` (the bins need the max).
    """

    full_state_update = False

    def __init__(self, n_bins: int = 15, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_bins = n_bins
        self.add_state("variance", default=[], dist_reduce_fx="cat")
        self.add_state("squared_error", default=[], dist_reduce_fx="cat")

    def update(self, mean: Tensor, variance: Tensor, target: Tensor) -> None:
        self.variance.append(variance.detach().flatten())
        self.squared_error.append((mean - target).detach().square().flatten())

    def compute(self) -> Tensor:
        variance, squared_error = dim_zero_cat(self.variance), dim_zero_cat(self.squared_error)
        width = variance.max().clamp(min=torch.finfo(variance.dtype).tiny) / self.n_bins
        bins = (variance / width).long().clamp(max=self.n_bins - 1)
        gap = torch.zeros(self.n_bins, dtype=variance.dtype, device=variance.device)
        gap.index_add_(0, bins, squared_error - variance)
        return gap.abs().sum() / variance.numel()


class Coverage(Metric):
    """Fraction of entries whose true value lies in mean ± z·std (z = 1.96: the 95 % interval)."""

    full_state_update = False

    def __init__(self, z: float = 1.96, **kwargs) -> None:
        super().__init__(**kwargs)
        self.z = z
        self.add_state("covered", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, mean: Tensor, variance: Tensor, target: Tensor) -> None:
        self.covered += ((mean - target).abs() <= self.z * variance.sqrt()).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return self.covered / self.total


class GaussianNLL(Metric):
    """Mean negative log-likelihood (nats per entry) of the target under N(mean, variance).

    Variances are floored at `min_variance` so a zero-variance entry gives a large finite value.
    On [0, 1] intensities with small variances the value is negative; lower is better.
    """

    full_state_update = False

    def __init__(self, min_variance: float = 1e-12, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_variance = min_variance
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, mean: Tensor, variance: Tensor, target: Tensor) -> None:
        variance = variance.clamp(min=self.min_variance)
        nll = 0.5 * (torch.log(2 * math.pi * variance) + (target - mean).square() / variance)
        self.nll += nll.double().sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return (self.nll / self.total).float()


class StdErrorSpearman(SpearmanCorrCoef):
    """Spearman rank correlation between the predicted std and the absolute error |mean − target|."""

    def __init__(self, **kwargs) -> None:
        with warnings.catch_warnings():  # its "keeps all inputs in memory" notice: one image is small
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(**kwargs)

    def update(self, mean: Tensor, variance: Tensor, target: Tensor) -> None:
        super().update(variance.sqrt().flatten(), (mean - target).abs().flatten())


def calibration_metrics() -> MetricCollection:
    """The metrics.json calibration figures: `uce`, `coverage_95`, `nll`, `spearman_std_abs_err`.

    Not synced across processes: each process scores the same pooled posterior, already gathered.
    """
    local = {"sync_on_compute": False}
    return MetricCollection({
        "uce": UncertaintyCalibrationError(**local),
        "coverage_95": Coverage(**local),
        "nll": GaussianNLL(**local),
        "spearman_std_abs_err": StdErrorSpearman(**local),
    }, compute_groups=False)
