"""A resumed chain ends with the same posterior moments as an uninterrupted one."""

import pytest
import torch

from conftest import fit_tiny
from dip_lightning.moments import pool_moments

def _posterior_state(run_dir) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 16
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("PosteriorAverage")]
    return state


@pytest.mark.parametrize("sampler", ["psgld"])
def test_a_resumed_chain_ends_with_the_same_posterior(capsys, tmp_path, sampler):
    chain = ["--model.strategy.burn_in=4", "--model.strategy.thin=2", "--model.strategy.max_mse_ratio=1e9",
             f"--model.strategy.sampler={sampler}"]
    whole_dir, whole = fit_tiny(capsys, tmp_path, *chain, "--trainer.max_steps=16", config="sgld_denoise")
    first_dir, first = fit_tiny(capsys, tmp_path, *chain, "--trainer.max_steps=9", config="sgld_denoise")
    assert first["samples"] == 2  # steps 6 and 8: the interruption falls between samples, after the freeze
    resumed_dir, resumed = fit_tiny(capsys, tmp_path, *chain, "--trainer.max_steps=16",
                                    f"--ckpt_path={first_dir / 'checkpoints' / 'last.ckpt'}", config="sgld_denoise")
    assert resumed["samples"] == whole["samples"] == 6
    state, reference = _posterior_state(resumed_dir), _posterior_state(whole_dir)
    assert state.keys() == reference.keys() == {"count", "mean", "m2", "batch_size"}
    # the resumed run keeps the batch layout planned by the run that saved it (9 steps): compare the pooled moments
    pooled = [pool_moments(*(s[k].flatten(0, 1) for k in ("count", "mean", "m2"))) for s in (state, reference)]
    for got, want in zip(*pooled, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert resumed["psnr_posterior_mean"] == pytest.approx(whole["psnr_posterior_mean"], abs=1e-4)
