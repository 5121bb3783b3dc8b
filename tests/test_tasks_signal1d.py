"""1D signals: the toy, signal files, the 1D task's mask and metrics, the band figure through the CLI."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import run_cli
from task_helpers import set_up

from dip_lightning.errors import InputError
from dip_lightning.nets import ConvNet
from dip_lightning.signals import SignalData, load_signal, toy_signal
from dip_lightning.strategies.base import Selection
from dip_lightning.tasks import Signal1D

SIGNAL_TINY = ["--model.net.width=8", "--trainer.max_steps=10", "--trainer.logger=false",
               "--trainer.enable_progress_bar=false", "--data.length=64"]


def signal1d(data: SignalData, **kwargs) -> Signal1D:
    return set_up(Signal1D(net=lambda i, o: ConvNet(i, o, width=8, depth=2, dim=1), **kwargs), data)


def test_toy_is_the_papers_two_sines():
    toy = toy_signal(100)
    x = torch.arange(100) / 100
    assert toy.shape == (1, 100)
    assert torch.allclose(toy[0], 0.3 * torch.sin(8 * math.pi * x) + 0.1 * torch.sin(32 * math.pi * x), atol=1e-6)


def test_signal_files_load_as_channels_by_length_and_nans_are_refused(tmp_path):
    table = np.stack([np.linspace(0, 1, 50), np.linspace(1, 0, 50)], axis=1)  # (L, C) = (50, 2)
    np.savetxt(tmp_path / "two.csv", table, delimiter=",")
    np.save(tmp_path / "one.npy", table[:, 0])
    assert torch.allclose(load_signal(tmp_path / "two.csv"), torch.from_numpy(table.T).float())
    assert load_signal(tmp_path / "one.npy").shape == (1, 50)
    table[7, 1] = np.nan
    np.savetxt(tmp_path / "nan.csv", table, delimiter=",")
    with pytest.raises(InputError, match=r"1 NaN/inf values \(first at row 7\): fill them in or remove"):
        load_signal(tmp_path / "nan.csv")
    (tmp_path / "words.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="cannot read .* as numbers"):
        load_signal(tmp_path / "words.csv")


def test_task_observes_a_seeded_fraction_unclipped_and_scores_coverage_on_unobserved_points():
    task = signal1d(SignalData(length=512), observed=0.1, sigma=0.01)
    known = task.mask[0, 0].bool()
    assert abs(float(known.float().mean()) - 0.1) < 0.03
    assert task.noise_std == 0.01  # in the signal's units, not 1/255
    residual = (task.observation - task.ground_truth)[0, 0]
    assert float(residual[known].std()) == pytest.approx(0.01, rel=0.3)
    assert bool((task.observation[0, 0][~known] == 0).all())
    assert float(task.observation.min()) < -0.2  # negative values survive: no [0, 1] clipping
    truth = task.ground_truth[0]
    std = torch.full_like(truth, 0.1)
    inside = truth + 0.15 * (torch.arange(truth.shape[-1]) % 4 == 0)  # a quarter of points 1.5 std off
    outside = truth + 0.25 * (torch.arange(truth.shape[-1]) % 4 == 0)  # ... or 2.5 std off
    assert task.summary(Selection(inside, None, std=std))["coverage_2std_unobserved"] == 1.0
    coverage = task.summary(Selection(outside, None, std=std))["coverage_2std_unobserved"]
    assert coverage == pytest.approx(float((torch.arange(512)[~known] % 4 != 0).float().mean()))


def test_psnr_takes_the_signals_own_range_as_its_peak():
    task = signal1d(SignalData(length=256), observed=0.1, sigma=0.01)
    truth = task.ground_truth
    span = float(truth.max() - truth.min())
    assert task.data_range == span and 0.7 < span < 0.8  # the toy spans about ±0.4, not [0, 1]
    off = truth + 0.01
    metrics = task.image_metrics(off)
    assert float(metrics["psnr"]) == pytest.approx(20 * math.log10(span / 0.01), abs=1e-3)
    assert float(metrics["rmse"]) == pytest.approx(0.01, rel=1e-4)


def test_sgd_run_draws_the_signal_figure_and_a_file_with_nans_fails_in_one_line(capsys, tmp_path):
    run_dir, _, err, code = run_cli(capsys, "fit", "--config", "signal1d", *SIGNAL_TINY,
                                      f"--trainer.default_root_dir={tmp_path}")
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"rmse", "rmse_unobserved"} <= metrics.keys() and "coverage_2std_unobserved" not in metrics
    arrays = np.load(run_dir / "signal.npz")
    assert arrays["estimate"].shape == arrays["truth"].shape == (1, 64) and "std" not in arrays
    assert (run_dir / "signal.png").stat().st_size > 10_000 and not (run_dir / "restored.png").exists()
    np.savetxt(tmp_path / "gappy.csv", [0.1, np.nan, 0.3])
    _, _, err, code = run_cli(capsys, "fit", "--config", "signal1d", *SIGNAL_TINY,
                              f"--data.signal={tmp_path / 'gappy.csv'}", f"--trainer.default_root_dir={tmp_path}")
    assert code == 2 and "NaN/inf values (first at row 1)" in err


def test_sgld_run_scores_coverage_and_draws_the_band(capsys, tmp_path):
    run_dir, _, err, code = run_cli(capsys, "fit", "--config", "sgld_signal1d", *SIGNAL_TINY,
                                    "--model.strategy.burn_in=4", "--model.strategy.thin=2",
                                    "--model.strategy.max_mse_ratio=.inf", f"--trainer.default_root_dir={tmp_path}")
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["samples"] == 3 and 0 <= metrics["coverage_2std_unobserved"] <= 1
    arrays = np.load(run_dir / "signal.npz")
    assert arrays["std"].shape == (1, 64) and (arrays["std"] > 0).all()
    assert np.allclose(arrays["std"], np.load(run_dir / "posterior_std.npy"))
    assert not (run_dir / "uncertainty.png").exists()  # a 2D heat map would misdraw a 1D signal
