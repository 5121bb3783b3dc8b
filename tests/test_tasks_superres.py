"""Super-resolution: DIP's lanczos2 operator, DIP's Y-channel PSNR (studio range, 4 px border), the bicubic baseline."""

import math

import pytest
import torch
from conftest import TINY, fit_tiny, run_cli
from kornia.color import rgb_to_ycbcr
from task_helpers import set_up, tiny_net

from dip_lightning.artifacts import save_image
from dip_lightning.data import ImageData
from dip_lightning.errors import InputError
from dip_lightning.images import lanczos2_downsample, lanczos2_kernel, load_image, resize
from dip_lightning.tasks import SuperResolution
from dip_lightning.tasks.base import psnr
from dip_lightning.tasks.superres import psnr_y, studio_luma


def superres(data: ImageData, **kwargs) -> SuperResolution:
    return set_up(SuperResolution(net=tiny_net, **kwargs), data)


def test_observation_is_dips_lanczos2_downsampling_and_the_output_is_factor_times_larger():
    task = superres(ImageData("astronaut", 64), factor=4)
    assert task.observation.shape == (1, 3, 16, 16) and task.output.shape == task.z.shape[:1] + (3, 64, 64)
    # sigma 0: the observation is the downsampled truth, clipped to [0, 1] like any image
    assert torch.allclose(task.forward_operator(task.ground_truth).clamp(0, 1), task.observation, atol=1e-6)
    assert torch.allclose(task.forward_operator(task.ground_truth), lanczos2_downsample(task.ground_truth, 4))
    # antialiased: a pixel checkerboard (all energy at Nyquist) averages out instead of aliasing
    board = (torch.arange(64)[:, None] + torch.arange(64)).remainder(2).float().expand(1, 3, 64, 64)
    assert float(task.forward_operator(board).std()) < 0.05
    bicubic = superres(ImageData("astronaut", 64), factor=4, downsampler="antialiased_bicubic")
    assert torch.allclose(bicubic.forward_operator(bicubic.ground_truth), resize(bicubic.ground_truth, (16, 16)))
    assert not torch.allclose(bicubic.observation, task.observation, atol=1e-3)
    with pytest.raises(InputError, match="choose lanczos2 or antialiased_bicubic"):
        SuperResolution(downsampler="bilinear")


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_lanczos2_taps_are_the_stretched_lanczos_window_centred_on_each_block(factor):
    taps = lanczos2_kernel(factor)
    assert taps.numel() == 4 * factor + factor % 2 and float(taps.sum()) == pytest.approx(1.0)
    assert torch.allclose(taps, taps.flip(0))  # symmetric about the block centre
    # tap j at d = (j - (n-1)/2) / factor weighs sinc(d) sinc(d/2) = 2 sin(pi d) sin(pi d / 2) / (pi d)²
    n = taps.numel()
    d = [(j - (n - 1) / 2) / factor for j in range(n)]
    window = [2 * math.sin(math.pi * x) * math.sin(math.pi * x / 2) / (math.pi * x) ** 2 if x else 1.0 for x in d]
    assert taps.tolist() == pytest.approx([w / sum(window) for w in window], abs=1e-7)
    # size-preserving: H / factor out; a constant stays constant (replicate padding); a ramp keeps its centres
    side = 8 * factor
    assert torch.allclose(lanczos2_downsample(torch.full((1, 2, side, side), 0.3), factor), torch.tensor(0.3))
    ramp = torch.arange(side, dtype=torch.float32).expand(1, 1, side, side)
    low = lanczos2_downsample(ramp, factor)[0, 0, 0, 2:-2]  # away from the replicate-padded border
    assert torch.allclose(low, (torch.arange(2, 8 - 2) * factor + (factor - 1) / 2).float(), atol=1e-4)


def test_psnr_y_is_dips_studio_range_luma_with_a_fixed_4_pixel_border():
    truth = torch.full((1, 3, 24, 24), 0.5)
    redder = truth.clone()
    redder[:, 0] += 0.1  # Y moves by 65.481 / 255 * 0.1
    assert float(psnr_y(redder, truth)) == pytest.approx(-20 * math.log10(65.481 / 255 * 0.1), abs=1e-3)
    grey = torch.full((1, 1, 24, 24), 0.5)  # grey is R = G = B: Y moves by 219 / 255 of the change
    assert float(psnr_y(grey + 0.1, grey)) == pytest.approx(-20 * math.log10(219 / 255 * 0.1), abs=1e-3)
    assert float(studio_luma(torch.zeros(1, 3, 1, 1))) == pytest.approx(16 / 255)
    assert float(studio_luma(torch.ones(1, 3, 1, 1))) == pytest.approx(235 / 255)
    # on any pair, studio range reads exactly 20 log10(255/219) dB above full-range Y (same border)
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 3, 32, 32, generator=generator)
    full = psnr(rgb_to_ycbcr(a)[:, :1, 4:-4, 4:-4], rgb_to_ycbcr(b)[:, :1, 4:-4, 4:-4])
    assert float(psnr_y(a, b) - full) == pytest.approx(20 * math.log10(255 / 219), abs=1e-4)
    # the border is 4 pixels whatever the factor: errors only there are invisible to psnr_y
    task = superres(ImageData("astronaut", 64), factor=2)
    frame = torch.ones_like(task.ground_truth, dtype=torch.bool)
    frame[..., 4:-4, 4:-4] = False
    bordered = torch.where(frame, 1 - task.ground_truth, task.ground_truth)
    assert float(task.image_metrics(bordered)["psnr_y"]) > 80 > float(task.image_metrics(bordered)["psnr"])
    frame[..., 4, 10] = True  # one pixel just inside the border wrong too: now seen
    assert float(task.image_metrics(torch.where(frame, 1 - task.ground_truth, task.ground_truth))["psnr_y"]) < 60
    bicubic = resize(task.observation, (64, 64)).clamp(0, 1)
    metrics = task.image_metrics(task.ground_truth)
    assert float(metrics["psnr_bicubic"]) == pytest.approx(float(psnr(bicubic, task.ground_truth)), abs=1e-4)
    assert float(metrics["psnr_y_bicubic"]) == pytest.approx(float(psnr_y(bicubic, task.ground_truth)), abs=1e-4)


def test_a_factor_that_does_not_divide_the_image_is_a_clear_error():
    with pytest.raises(InputError, match="factor 3 does not divide the 64x64 image"):
        superres(ImageData("astronaut", 64), factor=3)
    with pytest.raises(InputError, match="factor must be an integer >= 1"):
        SuperResolution(factor=0)


def test_run_reports_the_baseline_and_a_low_resolution_photo_without_ground_truth_is_upscaled(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.factor=2", "--trainer.max_steps=10", config="superres.yaml")
    assert {"psnr_selected", "psnr_y", "psnr_bicubic", "psnr_y_bicubic"} <= metrics.keys()
    assert load_image(run_dir / "observation.png").shape == (3, 16, 16)
    assert load_image(run_dir / "restored.png").shape == load_image(run_dir / "bicubic.png").shape == (3, 32, 32)
    save_image(tmp_path / "small.png", load_image("astronaut", 51)[:, :, :43])  # 51x43: cropped to 50x42
    photo = [f"--data.image={tmp_path / 'small.png'}", "--data.is_observation=true", "--data.crop=null"]
    photo_dir, photo_metrics = fit_tiny(capsys, tmp_path, *photo, "--model.factor=2", "--trainer.max_steps=3",
                                        config="superres.yaml")
    assert load_image(photo_dir / "restored.png").shape == (3, 100, 84)  # x2, each side a multiple of 2^2
    assert "psnr_bicubic" not in photo_metrics and not (photo_dir / "ground_truth.png").exists()
    _, _, err, code = run_cli(capsys, "fit", "--config", "superres", *TINY, "--model.factor=3",
                              f"--trainer.default_root_dir={tmp_path}")
    assert code == 2 and "factor 3 does not divide the 32x32 image" in err
