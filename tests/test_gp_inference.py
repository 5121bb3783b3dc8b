"""GP inference: CG against dense solves, Matheron std against the exact one, and bad input."""

from __future__ import annotations

import pytest
import torch

from dip_lightning.errors import InputError
from dip_lightning.gp.cg import ConvergenceError, conjugate_gradients
from dip_lightning.gp.inference import gp_posterior
from dip_lightning.gp.kernels import rbf_kernel, rbf_radius
from dip_lightning.gp.stationary import GridCovariance




def _rbf(lengthscale: float = 2.0, variance: float = 0.05) -> torch.Tensor:
    return rbf_kernel(rbf_radius(lengthscale), lengthscale, variance)


def _problem(side: int = 32, channels: int = 1, seed: int = 0):
    """An image drawn from the RBF prior around 0.5, with half of its pixels missing."""
    g = torch.Generator().manual_seed(seed)
    image = 0.5 + GridCovariance(_rbf(), (side, side)).sample(channels, g)
    mask = torch.rand(side, side, generator=g) >= 0.5
    return image * mask, mask, image


def test_batched_cg_solves_each_system():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(4, 6, generator=g, dtype=torch.float64)
    result = conjugate_gradients(lambda v: v @ a.T, b, tol=1e-10, max_iter=50)
    assert torch.allclose(result.solution, torch.linalg.solve(a, b.T).T, atol=1e-8)
    assert result.iterations <= 7 and result.residual <= 1e-10


def test_cg_that_does_not_converge_says_so_with_the_residual():
    observation, mask, _ = _problem()
    with pytest.raises(ConvergenceError, match=r"relative residual [0-9.e-]+ after 5 iterations.*noise"):
        gp_posterior(_rbf(), observation, mask, 1e-9, max_iter=5, variance_samples=0)


def test_cg_mean_matches_the_dense_solve():
    observation, mask, _ = _problem(channels=3)
    cg = gp_posterior(_rbf(), observation, mask, 1e-4, variance_samples=0)
    dense = gp_posterior(_rbf(), observation, mask, 1e-4, solver="dense")
    assert float((cg.mean - dense.mean).abs().max()) <= 1e-3
    assert cg.cg_iterations > 0


def test_matheron_std_matches_the_dense_std():
    observation, mask, _ = _problem(side=24)
    dense = gp_posterior(_rbf(), observation, mask, 1e-4, solver="dense")
    sampled = gp_posterior(_rbf(), observation, mask, 1e-4, variance_samples=64,
                           generator=torch.Generator().manual_seed(1))
    ratio = (sampled.std / dense.std).square().median()
    assert 0.9 <= float(ratio) <= 1.1


def test_interpolates_observed_pixels_and_is_unsure_about_missing_ones():
    observation, mask, image = _problem()
    post = gp_posterior(_rbf(), observation, mask, 1e-5, variance_samples=32)
    assert float((post.mean - image)[:, mask].abs().max()) < 1e-2
    assert float((post.mean - image)[:, ~mask].abs().mean()) < 0.05  # the prior is right: a good guess
    assert float(post.std[:, ~mask].mean()) > 3 * float(post.std[:, mask].mean())


def test_channels_are_independent():
    observation, mask, _ = _problem(channels=2)
    joint = gp_posterior(_rbf(), observation, mask, 1e-4, variance_samples=0)
    for c in range(2):
        single = gp_posterior(_rbf(), observation[c:c + 1], mask, 1e-4, variance_samples=0)
        assert torch.allclose(joint.mean[c], single.mean[0], atol=1e-3)  # within the CG tolerance


def test_per_channel_masks():
    observation, mask, _ = _problem(channels=2)
    masks = torch.stack([mask, ~mask])
    post = gp_posterior(_rbf(), observation, masks, 1e-4, solver="dense")
    dense0 = gp_posterior(_rbf(), observation[:1], mask, 1e-4, solver="dense")
    assert torch.allclose(post.mean[0], dense0.mean[0], atol=1e-6)
    assert post.std[1][~mask].mean() < post.std[1][mask].mean()


def test_a_mask_of_the_wrong_size_is_refused():
    observation, mask, _ = _problem()
    with pytest.raises(InputError, match=r"mask of shape \(31, 32\) does not match.*give a mask of shape \(32, 32\)"):
        gp_posterior(_rbf(), observation, mask[:31], 1e-4)


def test_an_empty_mask_is_refused():
    observation, mask, _ = _problem()
    with pytest.raises(InputError, match="observes no pixel"):
        gp_posterior(_rbf(), observation, torch.zeros_like(mask), 1e-4)


def test_the_dense_solver_refuses_large_images():
    observation, mask, _ = _problem(side=72)
    with pytest.raises(InputError, match=r"72x72 image .* too large for the dense solver.*solver=cg"):
        gp_posterior(_rbf(), observation, mask, 1e-4, solver="dense")


def test_a_non_psd_kernel_is_repaired_with_a_notice():
    observation, mask, _ = _problem()
    box = torch.full((9, 9), 0.05, dtype=torch.float64)
    with pytest.warns(UserWarning, match="not positive semi-definite"):
        post = gp_posterior(box, observation, mask, 1e-4, variance_samples=8)
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.std).all()


def test_an_unknown_solver_is_refused():
    observation, mask, _ = _problem()
    with pytest.raises(InputError, match="unknown solver"):
        gp_posterior(_rbf(), observation, mask, 1e-4, solver="lu")
