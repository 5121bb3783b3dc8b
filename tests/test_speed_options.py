"""model.channels_last and model.compile: the same computation, through the CLI with every strategy."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import fit_tiny, run_cli

from dip_lightning import compiled
from dip_lightning.compiled import CompiledForward
from dip_lightning.nets import SkipNet
from dip_lightning.nets.chains import chains_channels_last, stack_chains, to_channels_last

SGLD_ARGS = ("--model.strategy.burn_in=10", "--model.strategy.thin=2", "--model.strategy.max_mse_ratio=1e9")


@pytest.mark.parametrize("chains", [1, 2])
def test_channels_last_network_computes_the_same_outputs_and_gradients(chains):
    torch.manual_seed(0)
    nets = [SkipNet(8, 3, width=8, depth=3) for _ in range(chains)]
    plain, fast = stack_chains(nets), stack_chains(copy.deepcopy(nets))
    to_channels_last(fast)
    z, target = torch.rand(chains, 8, 32, 32), torch.rand(1, 3, 32, 32)
    outputs = [plain(z), fast(chains_channels_last(z))]
    for output in outputs:
        (output - target).square().mean().backward()
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-4)
    scale = max(float(p.grad.abs().max()) for p in plain.parameters())
    for (name, a), (_, b) in zip(plain.named_parameters(), fast.named_parameters(), strict=True):
        # rounding differs (float32 against float64: 4e-4 of the largest gradient either way); before the
        # BatchNorm fix in chains.py the channels_last gradients were wrong by more than their size
        assert (a.grad - b.grad).abs().max() <= 2e-3 * scale, name
    first = fast.body.merge[1][0]  # a 3x3 conv: its stacked weight is channels_last, its gradient laid out alike
    assert first.weight.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert first.weight.grad.stride() == first.weight.stride()


@pytest.mark.parametrize("config", ["denoise.yaml", "sgld_denoise.yaml", "paper/sgld_denoise.yaml"])
def test_channels_last_runs_through_the_cli(capsys, tmp_path, config):
    args = (*SGLD_ARGS, "--data.crop=32") if "sgld" in config else ()
    _, metrics = fit_tiny(capsys, tmp_path, "--model.channels_last=true", "--model.strategy.chains=2", *args,
                          config=config)
    assert metrics["steps"] == 30 and metrics["psnr_selected"] > metrics["psnr_observation_input"] - 10


def test_channels_last_refuses_a_1d_network(capsys, tmp_path):
    _, _, err, code = run_cli(capsys, "fit", "--config", "signal1d.yaml", "--trainer.max_steps=5",
                              "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}",
                              "--model.channels_last=true")
    assert code == 2 and "model.channels_last applies to 2D convolutions" in err


def test_compile_falls_back_to_the_eager_network_with_one_warning(monkeypatch):
    def failing_compile(fn):
        def compiled_fn(x):
            raise RuntimeError("no C++ compiler found\nmore lines")
        return compiled_fn

    monkeypatch.setattr(compiled.torch, "compile", failing_compile)
    net = torch.nn.Linear(2, 2)
    forward = CompiledForward(net)
    x = torch.rand(3, 2)
    with pytest.warns(UserWarning, match=r"model.compile: .*\(RuntimeError: no C\+\+ compiler found\); running it "
                                         r"uncompiled$"):
        torch.testing.assert_close(forward(x), net(x))
    assert not forward.compiled
    torch.testing.assert_close(forward(x), net(x))  # no second warning, no second try


def test_a_run_goes_on_uncompiled_when_compile_fails(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(compiled.torch, "compile", lambda fn: (lambda x: (_ for _ in ()).throw(RuntimeError("x"))))
    with pytest.warns(UserWarning, match="running it uncompiled"):
        _, metrics = fit_tiny(capsys, tmp_path, "--model.compile=true")
    assert metrics["steps"] == 30


@pytest.mark.slow
@pytest.mark.parametrize("config", ["denoise.yaml", "sgld_denoise.yaml"])
def test_compile_runs_through_the_cli(capsys, tmp_path, config):
    """torch.compile on the CPU (inductor, a C++ compiler): about a minute per run here."""
    args = SGLD_ARGS if "sgld" in config else ()
    _, plain = fit_tiny(capsys, tmp_path, *args, config=config)
    _, fast = fit_tiny(capsys, tmp_path, "--model.compile=true", "--model.channels_last=true", *args, config=config)
    assert fast["steps"] == 30 and abs(fast["psnr_final"] - plain["psnr_final"]) < 1.0
