"""The empirical DIP kernel: accuracy from few samples, reproducibility, cache, batching, stationarity."""

from __future__ import annotations

import pytest
import torch

import dip_lightning.gp.empirical as empirical
from dip_lightning.gp.empirical import build_net, estimate_kernel, inference_kernel
from dip_lightning.gp.stationary import negative_ratio




def _skip(width: int = 32, depth: int = 2, **extra) -> dict:
    return {"class_path": "skip", "init_args": dict(in_channels=32, out_channels=1, width=width, depth=depth,
                                                    sigmoid=False, **extra)}


def _deviation(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| relative to b's K(0)."""
    return float((a - b).abs().max() / b[tuple(s // 2 for s in b.shape)])


def test_ten_samples_are_close_to_many():
    """Position averaging + the marginalised output layer: 10 nets within 2% of 40 (a 64-wide net here;
    the 128-wide acceptance check against 400 samples is the slow test below)."""
    many = estimate_kernel(_skip(64), 16, samples=40, size=96, seed=100)
    few = estimate_kernel(_skip(64), 16, samples=10, size=96, seed=0)
    assert _deviation(few.table, many.table) <= 0.02
    one = estimate_kernel(_skip(64), 16, samples=1, size=96, seed=0)
    assert _deviation(one.table, many.table) > _deviation(few.table, many.table)


@pytest.mark.slow
def test_ten_samples_are_within_two_percent_of_four_hundred_at_width_128():
    many = estimate_kernel(_skip(128), 48, samples=400, seed=1000)
    few = estimate_kernel(_skip(128), 48, samples=10, seed=0)
    assert _deviation(few.table, many.table) <= 0.02


def test_estimates_are_reproducible_and_symmetric():
    a = estimate_kernel(_skip(16), 8, samples=2, size=48, seed=5)
    b = estimate_kernel(_skip(16), 8, samples=2, size=48, seed=5)
    c = estimate_kernel(_skip(16), 8, samples=2, size=48, seed=6)
    assert torch.equal(a.table, b.table) and not torch.equal(a.table, c.table)
    assert torch.allclose(a.table, a.table.flip(0, 1))


def test_cache_is_keyed_by_the_configuration(tmp_path, monkeypatch):
    first = estimate_kernel(_skip(16), 8, samples=2, size=48, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    monkeypatch.setattr(empirical, "_estimate", lambda *a, **k: pytest.fail("recomputed a cached kernel"))
    again = estimate_kernel(_skip(16), 8, samples=2, size=48, cache_dir=tmp_path)
    assert torch.equal(first.table, again.table) and again.phase_spread == first.phase_spread
    with pytest.raises(pytest.fail.Exception):
        estimate_kernel(_skip(24), 8, samples=2, size=48, cache_dir=tmp_path)


def test_batched_networks_equal_one_by_one():
    spec = _skip(16)
    codes = torch.rand(3, 32, 32, 32) * 0.1
    torch.manual_seed(7)
    batched = empirical._activations(spec, codes)
    torch.manual_seed(7)
    nets = [build_net(spec).train() for _ in range(3)]
    with torch.no_grad():
        single = torch.cat([net.body(codes[i:i + 1]) for i, net in enumerate(nets)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_down_and_upsampling_show_in_the_phase_spread():
    skip = estimate_kernel(_skip(32), 8, samples=4, size=64)
    conv = estimate_kernel({"class_path": "conv", "init_args": dict(in_channels=32, out_channels=1, width=32,
                                                                    depth=2)}, 8, samples=4, size=48)
    assert conv.phase_spread == 0.0
    assert 0.005 < skip.phase_spread < 0.2


@pytest.mark.parametrize("spec", [
    {"class_path": "autoencoder", "init_args": dict(in_channels=8, out_channels=1, width=16, depth=2)},
    {"class_path": "skip", "init_args": dict(in_channels=8, out_channels=1, width=16, depth=2, dim=1)},
    {"class_path": "dip_lightning.nets.ConvNet", "init_args": dict(in_channels=8, out_channels=1, width=16,
                                                                    depth=2, dim=1)},
])
def test_every_network_and_dimension(spec):
    estimate = estimate_kernel(spec, 6, samples=2, size=256 if spec["init_args"].get("dim") == 1 else 48)
    assert estimate.table.shape == (13,) * spec["init_args"].get("dim", 2)
    centre = estimate.table[(6,) * estimate.table.dim()]
    assert torch.all(estimate.table <= centre + 1e-9)  # K(0) is the largest value


def test_inference_kernel_is_normalised_psd_and_compact():
    estimate = estimate_kernel(_skip(32), 16, samples=4, size=64)
    table = inference_kernel(estimate, taper_radius=12)
    assert float(table[16, 16]) == pytest.approx(1.0 - float(estimate.table[0].mean() / estimate.table[16, 16]),
                                                 abs=0.05)
    assert negative_ratio(table) > -1e-10
    assert float(table[16, 16 + 12].abs()) == 0.0 and float(table[16 + 12, 16].abs()) == 0.0


def test_a_border_that_eats_the_image_is_refused():
    with pytest.raises(ValueError, match="border"):
        estimate_kernel(_skip(16), 20, size=48, border=16)
