"""Posterior moments: Welford updates, Chan merges, and a resumed chain ending with the same posterior."""

import pytest
import torch

from conftest import fit_tiny
from dip_lightning.callbacks import Moments, merge_moments

SHAPE = (1, 3, 4, 4)


def _samples(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.5 + 0.1 * torch.randn(n, *SHAPE, generator=gen) + torch.linspace(0, 1, 48).reshape(SHAPE)


def _moments(samples: torch.Tensor, keep: list[bool] | None = None) -> Moments:
    moments = Moments(SHAPE)
    for i, sample in enumerate(samples):
        moments.update(sample, None if keep is None else torch.tensor(keep[i]))
    return moments


def test_welford_matches_batch_moments_and_skips_rejected_samples():
    samples = _samples(50)
    keep = [i % 3 != 0 for i in range(50)]  # every third sample rejected, a non-finite one among them
    samples[3] = float("nan")
    kept = samples[torch.tensor(keep)]
    moments = _moments(samples, keep)
    assert int(moments.count) == len(kept)
    torch.testing.assert_close(moments.mean, kept.mean(0))
    torch.testing.assert_close(moments.variance(), kept.var(0))


def test_merge_equals_moments_of_the_union_and_empty_sets_are_neutral():
    samples = _samples(30)
    whole, left, right = _moments(samples), _moments(samples[:7]), _moments(samples[7:])
    count, mean, m2 = merge_moments(left.state(), right.state())
    assert float(count) == 30
    torch.testing.assert_close(mean, whole.mean)
    torch.testing.assert_close(m2, whole.m2)
    empty = Moments(SHAPE).state()
    for merged in (merge_moments(empty, whole.state()), merge_moments(whole.state(), empty)):
        for got, want in zip(merged, whole.state(), strict=True):
            torch.testing.assert_close(got, want)


def test_fewer_than_two_samples_give_zero_variance():
    moments = _moments(_samples(1))
    assert int(moments.count) == 1 and float(moments.variance().abs().max()) == 0.0


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
    assert state.keys() == reference.keys() == {"count", "mean", "m2"}
    for key in reference:
        torch.testing.assert_close(state[key], reference[key], rtol=1e-5, atol=1e-7)
    assert resumed["psnr_posterior_mean"] == pytest.approx(whole["psnr_posterior_mean"], abs=1e-4)
