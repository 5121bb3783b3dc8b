"""MC dropout: channel dropout per chain as a network option, the spread of dropout passes, the heteroscedastic head."""

from functools import partial

import numpy as np
import pytest
import torch

from conftest import TINY, fit_tiny, run_cli
from dip_lightning.data import ImageData
from dip_lightning.images import load_image
from dip_lightning.nets import SkipNet
from dip_lightning.nets.chains import stack_chains, use_streams
from dip_lightning.nets.layers import ChannelDropout
from dip_lightning.strategies import MCDropout
from dip_lightning.tasks import Denoise
from task_helpers import set_up

# denoise.yaml's SGD options (adam, wmv) would carry over to the new strategy class: set them
MCD = ["--model.strategy=dip_lightning.strategies.MCDropout", "--model.net.dropout=0.3",
       "--model.strategy.optimizer=adamw", "--model.strategy.stopping=fixed"]


def test_dropout_sits_after_the_convs_of_the_chosen_blocks_only():
    net = SkipNet(4, 3, width=8, depth=2, dropout=0.3)
    places = [name for name, module in net.named_modules() if isinstance(module, ChannelDropout)]
    assert places and all(".down." in name or ".merge." in name for name in places)  # down and up blocks
    assert len(places) == 2 * 4  # per scale: two encoder convs, the decoder's 3x3 and 1x1
    everywhere = SkipNet(4, 3, width=8, depth=2, dropout=0.3, dropout_at=["down", "up", "skip", "output"])
    assert sum(isinstance(m, ChannelDropout) for m in everywhere.modules()) == 2 * 4 + 2 + 1
    assert not any(isinstance(m, ChannelDropout) for m in SkipNet(4, 3, width=8, depth=2).modules())
    with pytest.raises(ValueError, match=r"unknown dropout_at \['middle'\]"):
        SkipNet(4, 3, dropout=0.3, dropout_at=["middle"])
    with pytest.raises(ValueError, match="dropout must be a probability"):
        SkipNet(4, 3, dropout=1.0)


def test_stacked_dropout_drops_whole_channels_per_chain_from_each_chains_stream():
    layer = ChannelDropout(0.3)
    x = torch.ones(3, 200, 8, 8, dtype=torch.double)
    streams = [torch.Generator().manual_seed(k) for k in range(3)]
    with use_streams(layer, streams):
        y = layer(x)
    kept = y[:, :, 0, 0] > 0
    # a whole channel is dropped or scaled by 1/(1 - p)
    torch.testing.assert_close(y, (kept.double() / 0.7)[..., None, None].expand_as(y))
    assert (kept[0] != kept[1]).any()  # each chain its own mask
    assert 0.6 < float(kept.double().mean()) < 0.8
    # a stacked dropout net computes chain k as the network alone would, with chain k's stream
    nets = [SkipNet(4, 3, width=8, depth=2, dropout=0.3).double() for _ in range(3)]
    stacked, z = stack_chains(nets), torch.rand(3, 4, 16, 16, dtype=torch.double)
    with use_streams(stacked, [torch.Generator().manual_seed(k) for k in range(3)]):
        together = stacked(z)
    for k, net in enumerate(nets):
        with use_streams(net, [torch.Generator().manual_seed(k)]):
            torch.testing.assert_close(together[k:k + 1], net(z[k:k + 1]), rtol=0, atol=1e-12)


def test_the_spread_of_the_passes_is_zero_without_dropout_and_grows_with_p():
    """One network fitted with p = 0.3 (200 AdamW steps), its dropout layers then set to p = 0, 0.1, 0.3, 0.5
    in turn, 50 passes each: mean std measured 0, 0.034, 0.059, 0.079. (An unfitted network's std levels off
    above p = 0.3: its sigmoid output saturates.)"""
    task = set_up(Denoise(net=partial(SkipNet, width=8, depth=2, dropout=0.3), strategy=MCDropout(samples=50)),
                  ImageData("astronaut", 32))
    optimizer = torch.optim.AdamW(task.net.parameters(), lr=0.01, weight_decay=1e-4)
    for _ in range(200):
        optimizer.zero_grad()
        task.data_loss(task(task.z)).sum().backward()
        optimizer.step()
    stds = []
    for p in (0.0, 0.1, 0.3, 0.5):
        for layer in task.net.modules():
            if isinstance(layer, ChannelDropout):
                layer.p = p
        (count, _, m2), _ = task.strategy.predict(task)
        assert int(count) == 50
        stds.append((m2 / 49).sqrt())
    assert float(stds[0].abs().max()) == 0.0
    means = [float(std.mean()) for std in stds]
    assert 0 < means[1] < means[2] < means[3], means


def test_a_network_without_dropout_gets_a_warning_and_a_zero_std(capsys, tmp_path):
    with pytest.warns(UserWarning, match="without dropout: every pass is the same and the std is 0"):
        run_dir, metrics = fit_tiny(capsys, tmp_path, *MCD, "--model.net.dropout=0")
    # zero up to the rounding of the pooled mean (25·x/25 may be an ulp off x: std ~6e-8)
    assert float(np.abs(np.load(run_dir / "posterior_std.npy")).max()) < 1e-6


def test_passes_leave_the_fit_untouched(capsys, tmp_path):
    """Evaluations every 10 steps during fitting change no step: the same outputs as without them."""
    args = [*MCD, "--trainer.log_every_n_steps=10"]
    with_evals, a = fit_tiny(capsys, tmp_path, *args, "--model.strategy.eval_every_n_steps=10")
    without, b = fit_tiny(capsys, tmp_path, *args, "--model.strategy.eval_every_n_steps=0")
    outputs = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for d in (with_evals,
                                                                                                       without)]
    assert all(torch.equal(outputs[0][key], outputs[1][key]) for key in outputs[0])
    assert a["psnr_posterior_mean"] == b["psnr_posterior_mean"]


def test_heteroscedastic_head_learns_the_residual_noise_and_reports_it_apart(capsys, tmp_path):
    """The NLL-optimal variance is the expected squared residual of a pass, (y − mean)² + the passes' variance:
    after 300 steps (AdamW 0.03) the head's RMS std was 1.10x that level (1.06-1.17x over 300-600 steps and
    lr 0.01-0.03), from an initial std near 1 (10x). The tiny net fits the image poorly, so the residual is
    well above sigma here (1.6-1.8 sigma)."""
    run_dir, metrics = fit_tiny(capsys, tmp_path, *MCD, "--model.strategy.heteroscedastic=true",
                                "--model.strategy.lr=0.03", "--trainer.max_steps=300")
    aleatoric, epistemic = np.load(run_dir / "aleatoric_std.npy"), np.load(run_dir / "posterior_std.npy")
    assert aleatoric.shape == epistemic.shape == (3, 32, 32) and (run_dir / "aleatoric_std.png").is_file()
    observation, mean = (load_image(run_dir / f"{name}.png").numpy() for name in ("observation", "restored"))
    residual = np.sqrt(((observation - mean) ** 2 + epistemic**2).mean())
    assert 0.75 < np.sqrt((aleatoric**2).mean()) / residual < 1.25
    assert metrics["aleatoric_std_mean"] == pytest.approx(float(aleatoric.mean()), rel=1e-5)
    assert not np.allclose(aleatoric, epistemic) and 0 <= metrics["coverage_95"] <= 1  # scored on the epistemic std


def test_heteroscedastic_loss_is_their_gaussian_nll_with_the_log_precision_clamped():
    task = set_up(Denoise(net=partial(SkipNet, width=8, depth=2, dropout=0.3),
                          strategy=MCDropout(heteroscedastic=True)), ImageData("astronaut", 32))
    image = torch.rand(1, 3, 32, 32)
    s = torch.linspace(-30, 30, 3 * 32 * 32).view(1, 3, 32, 32)
    returned, prediction, loss = task.strategy.training_loss(task, torch.cat([image, s], 1))
    clamped = s.clamp(-20, 20)
    expected = (clamped.exp() * (image - task.observation).square() - clamped).mean()
    assert torch.equal(returned, image) and torch.equal(prediction, image)  # denoising: A is the identity
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_heteroscedastic_super_resolution_is_refused_and_leaves_nothing(capsys, tmp_path):
    _, _, err, code = run_cli(capsys, "fit", "--config", "superres.yaml", *TINY, "--model.factor=2", *MCD,
                              "--model.strategy.heteroscedastic=true", f"--trainer.default_root_dir={tmp_path}")
    assert code != 0 and "heteroscedastic=true needs an observation of the output's size" in err
    assert "Traceback" not in err and not any(tmp_path.iterdir())
