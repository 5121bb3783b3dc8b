"""Several chains on one device: the stacked network, chain k reproduced alone, pooled results."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import fit_tiny
from dip_lightning.errors import InputError
from dip_lightning.images import load_image
from dip_lightning.moments import pool_moments, variance
from dip_lightning.nets import ConvNet, SkipNet
from dip_lightning.nets.chains import chain_state_dict, stack_chains


@pytest.mark.parametrize("make", [lambda: SkipNet(4, 3, width=8, depth=2), lambda: ConvNet(4, 2, width=8, dim=1)],
                         ids=["skip2d", "conv1d"])
def test_stacked_chains_compute_each_network_alone_with_separate_gradients(make):
    nets = [make().double() for _ in range(3)]
    ensemble = stack_chains(nets)
    z = torch.rand(3, 4, *([16, 16] if isinstance(nets[0], SkipNet) else [32]), dtype=torch.double)
    out = ensemble(z)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k:k + 1], net(z[k:k + 1]), rtol=0, atol=1e-12)
    out[1].sum().backward()  # chain 1's loss alone: chains 0 and 2 get no gradient
    for param in ensemble.parameters():
        assert param.grad[[0, 2]].abs().max() == 0 and param.grad[1].abs().max() > 0
    alone = make().double()
    alone.load_state_dict(chain_state_dict(ensemble, 2), strict=False)
    torch.testing.assert_close(alone(z[2:3]), nets[2](z[2:3]))


def test_a_layer_that_cannot_be_stacked_is_a_clear_error():
    with pytest.raises(InputError, match=r"'1' \(Linear\) cannot run several chains.*chains=1"):
        stack_chains([nn.Sequential(nn.Conv1d(2, 2, 1), nn.Linear(2, 2))])


def _outputs(run_dir) -> torch.Tensor:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]["output"]


# 10 steps, 5 of them sampling: pSGLD on this tiny net is chaotic, so the grouped and the single convolution's
# float64 rounding (1e-15) grows by orders of magnitude per 10 steps (to 3e-7 by step 40 and 6e-2 by step 100 at
# some seeds, `python benchmarks/test_tolerances.py chains`)
STEPS = ["--trainer.max_steps=10", "--model.strategy.burn_in=5", "--model.strategy.thin=1",
         "--model.strategy.max_mse_ratio=1e9", "--model.strategy.eps=1e-5"]


@pytest.mark.parametrize("config, args, precision, atol", [
    ("denoise", ["--trainer.max_steps=10", "--model.strategy.stopping=fixed"], "64-true", 1e-10),
    ("sgld_denoise", STEPS, "64-true", 1e-10),
    ("paper/sgld_denoise", STEPS, "64-true", 1e-10),
    ("sgld_denoise", [*STEPS, "--model.strategy.sampler=sgld"], "32-true", 1e-5),
], ids=["adam-f64", "psgld-f64", "paper-f64", "sgld-f32"])
def test_chain_k_of_a_batched_run_is_the_one_chain_run_of_seed_plus_k(capsys, tmp_path, config, args, precision, atol):
    """The largest difference over the output, measured over seeds 0-9 on one thread, and 0-3 on two for the
    samplers (`python benchmarks/test_tolerances.py chains`): 0 (adam, paper), 1.2e-13 (psgld, float64) and
    1.3e-6 (sgld, float32); each bound is 8x or more above it."""
    common = [*args, f"--trainer.precision={precision}"]
    batched, _ = fit_tiny(capsys, tmp_path, "--model.strategy.chains=3", *common, config=config)
    alone, _ = fit_tiny(capsys, tmp_path, "--seed_everything=2", *common, config=config)
    outputs, output = _outputs(batched), _outputs(alone)
    assert outputs.shape[0] == 3 and output.shape[0] == 1
    torch.testing.assert_close(outputs[2], output[0], rtol=0, atol=atol)
    assert (outputs[0] - outputs[2]).abs().max() > 0.01  # the chains are independent


def test_sgd_restarts_average_their_selected_outputs_and_report_each(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.strategy.chains=3", "--model.strategy.stopping=fixed")
    assert metrics["chains"] == 3 and len(metrics["psnr_per_chain"]) == 3 and "step_selected" not in metrics
    assert metrics["step_per_chain"] == [30, 30, 30]
    restored = load_image(run_dir / "restored.png")
    assert torch.allclose(restored, _outputs(run_dir).mean(0), atol=0.5 / 255 + 1e-6)  # the average, as 8 bits
    assert metrics["psnr_selected"] > min(metrics["psnr_per_chain"])


def test_sgld_chains_pool_into_one_posterior_with_diagnostics(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.strategy.chains=2", "--model.strategy.burn_in=10",
                                "--model.strategy.thin=2", "--model.strategy.max_mse_ratio=1e9", config="sgld_denoise")
    assert metrics["chains"] == 2 and metrics["samples"] == 2 * 10 and len(metrics["psnr_per_chain"]) == 2
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    (moments,) = [v for k, v in state.items() if k.startswith("PosteriorAverage")]
    count, mean, m2 = moments["count"], moments["mean"], moments["m2"]
    per_chain = pool_moments(count, mean, m2, dim=1)  # each chain's own moments, then merged
    total, pooled, pooled_m2 = pool_moments(*per_chain)
    std = np.load(run_dir / "posterior_std.npy")
    np.testing.assert_allclose(std, variance(total, pooled_m2).sqrt().numpy(), atol=1e-6)
    assert (per_chain[1][0] - per_chain[1][1]).abs().max() > 0.01  # the chains differ ...
    assert bool((pooled_m2 >= per_chain[2].sum(0)).all())  # ... and the pooled spread holds the gap between them
    assert float((pooled_m2 - per_chain[2].sum(0)).max()) > 0
    for key in ("rhat_median", "rhat_p99", "rhat_max", "ess_median"):
        assert np.isfinite(metrics[key]), key
    assert 1.0 <= metrics["rhat_median"] <= metrics["rhat_p99"] <= metrics["rhat_max"]
    assert (run_dir / "rhat.png").is_file() and json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_one_chain_reports_its_split_halves_diagnostics(capsys, tmp_path):
    _, metrics = fit_tiny(capsys, tmp_path, "--model.strategy.burn_in=10", "--model.strategy.thin=2",
                          "--model.strategy.max_mse_ratio=1e9", config="sgld_denoise")
    assert metrics["chains"] == 1 and metrics["samples"] == 10
    assert metrics["rhat_max"] >= metrics["rhat_median"] > 0.9 and metrics["ess_median"] > 0
