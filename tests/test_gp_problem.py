"""The GP problems: the Lanczos protocol step and seeded observations."""

from __future__ import annotations

import pytest
import torch

from dip_lightning.artifacts import save_image
from dip_lightning.errors import InputError
from dip_lightning.gp.problem import bernoulli_mask, lanczos_resize, observe
from dip_lightning.images import load_image


def test_lanczos_resize_survives_a_png_round_trip(tmp_path):
    """So a DIP fit given the saved file sees exactly the GP's ground truth."""
    image = lanczos_resize(load_image("astronaut"), 48)
    assert image.shape == (3, 48, 48)
    save_image(tmp_path / "x.png", image)
    assert torch.equal(load_image(tmp_path / "x.png"), image)


def test_lanczos_keeps_the_image_content():
    small = lanczos_resize(load_image("camera"), 64)
    reference = torch.nn.functional.avg_pool2d(load_image("camera")[None], 8)[0]
    assert float((small - reference).abs().mean()) < 0.03


def test_bernoulli_mask_fraction_and_seed():
    a = bernoulli_mask((100, 100), 0.3, torch.Generator().manual_seed(1))
    b = bernoulli_mask((100, 100), 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and abs(float((~a).float().mean()) - 0.3) < 0.02


def test_observations():
    clean = torch.rand(3, 16, 16)
    observation, mask = observe(clean, "inpaint", missing=0.5, seed=0)
    assert mask.shape == (16, 16) and torch.equal(observation[:, mask], clean[:, mask])
    assert float(observation[:, ~mask].abs().max()) == 0.0
    noisy, everywhere = observe(clean, "denoise", sigma=25, seed=0)
    assert everywhere.all() and 0.05 < float((noisy - clean).std()) < 0.1
    assert noisy.min() >= 0 and noisy.max() <= 1


@pytest.mark.parametrize("call,message", [
    (lambda: observe(torch.rand(1, 8, 8), "deblur"), "unknown task"),
    (lambda: observe(torch.rand(1, 8, 8), "inpaint", missing=1.0), "missing must be a fraction"),
    (lambda: lanczos_resize(torch.rand(1, 8, 8), 0), "positive side"),
])
def test_bad_settings_are_refused(call, message):
    with pytest.raises(InputError, match=message):
        call()
