import numpy as np
import pytest
import torch
from PIL import Image

from dip_lightning.errors import InputError
from dip_lightning.images import BUILTIN_IMAGES, center_crop, crop_to_multiple, load_image


def test_every_builtin_loads_from_the_installed_package(monkeypatch):
    monkeypatch.setattr("socket.socket", None)  # any download attempt would fail
    for name in BUILTIN_IMAGES:
        image = load_image(name)
        assert image.dim() == 3 and image.shape[0] in (1, 3), name
        assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1


@pytest.mark.parametrize("suffix, mode", [(".png", "RGB"), (".png", "L"), (".jpg", "RGB"), (".tif", "L"),
                                          (".tif", "RGB"), (".png", "RGBA"), (".png", "I;16")])
def test_image_files_keep_their_channels_and_scale(tmp_path, suffix, mode):
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "L": 1, "RGBA": 4, "I;16": 1}[mode]
    if mode == "I;16":
        pixels = rng.integers(0, 65535, (20, 24), dtype=np.uint16)
        Image.fromarray(pixels).save(tmp_path / f"a{suffix}")
        expected = torch.from_numpy(pixels.astype(np.float32) / 65535)[None]
    else:
        ramp = np.linspace(0, 1, 20 * 24 * channels).reshape(20, 24, channels)  # smooth: JPEG keeps it
        pixels = (255 * ramp).astype(np.uint8).squeeze()
        Image.fromarray(pixels, mode).save(tmp_path / f"a{suffix}", quality=100)
        expected = torch.from_numpy(pixels.astype(np.float32) / 255).reshape(20, 24, -1).permute(2, 0, 1)[:3]
    image = load_image(tmp_path / f"a{suffix}")
    assert image.shape == (min(channels, 3), 20, 24)
    tolerance = 0.02 if suffix == ".jpg" else 1e-6
    assert (image - expected).abs().mean() < tolerance


def test_missing_file_unknown_builtin_and_non_image_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="image file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="unknown built-in image 'astronot'.*astronaut"):
        load_image("astronot")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot read .*notes.png as an image"):
        load_image(tmp_path / "notes.png")


def test_crops():
    image = torch.arange(3 * 10 * 12, dtype=torch.float32).reshape(3, 10, 12)
    assert torch.equal(center_crop(image, 4), image[:, 3:7, 4:8])
    with pytest.raises(InputError, match="does not fit"):
        center_crop(image, 11)


def test_crop_to_multiple_says_so_once(capsys):
    image = torch.rand(1, 37, 70)
    out = crop_to_multiple(image, 32)
    assert out.shape == (1, 32, 64)
    assert torch.equal(out, image[:, 2:34, 3:67])
    assert capsys.readouterr().out.count("notice: cropped the image from 37x70 to 32x64") == 1
    with pytest.raises(InputError, match="smaller than 64 .*model.net.depth"):
        crop_to_multiple(image, 64)
