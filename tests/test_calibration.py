"""Calibration metrics against closed-form values: calibrated, over-confident and hand-binned predictions."""

import math

import pytest
import torch

from dip_lightning.calibration import (Coverage, GaussianNLL, StdErrorSpearman, UncertaintyCalibrationError,
                                       calibration_metrics)

N = 100_000


def _predictions(variance_scale: float = 1.0):
    """Heteroscedastic Gaussian errors: true std log-uniform over 0.01..0.1; predicted variance scaled."""
    gen = torch.Generator().manual_seed(0)
    std = torch.exp(torch.empty(N).uniform_(math.log(0.01), math.log(0.1), generator=gen))
    target = torch.rand(N, generator=gen)
    mean = target + std * torch.randn(N, generator=gen)
    return mean, variance_scale * std.square(), target, std


def test_calibrated_predictions_score_as_ideal():
    mean, variance, target, std = _predictions()
    figures = {k: float(v) for k, v in calibration_metrics().forward(mean, variance, target).items()}
    assert figures["coverage_95"] == pytest.approx(0.95, abs=0.003)
    assert figures["uce"] < 0.05 * float(variance.mean())  # sampling noise only; over-confident: 0.75
    expected_nll = float((0.5 * torch.log(2 * math.pi * variance)).mean() + 0.5)
    assert figures["nll"] == pytest.approx(expected_nll, abs=0.01)
    # |error| = std·|z|: ranks follow std, diluted by |z|; an uninformative std would give 0
    assert 0.4 < figures["spearman_std_abs_err"] < 0.7


def test_overconfident_predictions_are_flagged():
    mean, variance, target, _ = _predictions()
    calibrated = {k: float(v) for k, v in calibration_metrics().forward(mean, variance, target).items()}
    shrunk = {k: float(v) for k, v in calibration_metrics().forward(mean, variance / 4, target).items()}
    # std halved: the interval is mean ± 0.98 true std, P(|Z| <= 0.98) = 0.673
    assert shrunk["coverage_95"] == pytest.approx(0.673, abs=0.005)
    # every bin's MSE exceeds its predicted variance by 3/4 of the true variance
    assert shrunk["uce"] == pytest.approx(0.75 * float(variance.mean()), rel=0.05)
    assert shrunk["nll"] > calibrated["nll"] + 0.5
    assert shrunk["spearman_std_abs_err"] == pytest.approx(calibrated["spearman_std_abs_err"], abs=1e-6)  # rank-only


def test_uce_by_hand():
    # 2 bins over [0, 0.4]: variances 0.1, 0.1 (bin 0) and 0.3, 0.4 (bin 1)
    variance = torch.tensor([0.1, 0.1, 0.3, 0.4])
    error = torch.tensor([0.0, 0.5, 0.0, 0.0])  # squared errors 0, 0.25, 0, 0
    uce = UncertaintyCalibrationError(n_bins=2)
    uce.update(error, variance, torch.zeros(4))
    # bin 0: |0.25 − 0.2| = 0.05; bin 1: |0 − 0.7| = 0.7; over N = 4
    assert float(uce.compute()) == pytest.approx((0.05 + 0.7) / 4)


@pytest.mark.parametrize("metric", [UncertaintyCalibrationError, Coverage, GaussianNLL, StdErrorSpearman])
def test_updates_in_parts_equal_one_update(metric):
    mean, variance, target, _ = _predictions()
    whole, parts = metric(), metric()
    whole.update(mean, variance, target)
    for chunk in torch.arange(N).chunk(3):
        parts.update(mean[chunk], variance[chunk], target[chunk])
    assert float(parts.compute()) == pytest.approx(float(whole.compute()), rel=1e-5)


def test_zero_variance_gives_a_finite_nll_and_no_coverage():
    target = torch.zeros(10)
    mean = target + 0.1
    nll, coverage = GaussianNLL(), Coverage()
    nll.update(mean, torch.zeros(10), target)
    coverage.update(mean, torch.zeros(10), target)
    assert math.isfinite(float(nll.compute())) and float(nll.compute()) > 1e8
    assert float(coverage.compute()) == 0.0
