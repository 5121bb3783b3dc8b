"""Super-resolution: the downsampling operator, Y-channel PSNR with a border cut, the bicubic baseline."""

import pytest
import torch
from conftest import TINY, fit_tiny, run_cli
from kornia.color import rgb_to_ycbcr
from task_helpers import set_up, tiny_net

from dip_lightning.artifacts import save_image
from dip_lightning.data import ImageData
from dip_lightning.errors import InputError
from dip_lightning.images import load_image, resize
from dip_lightning.tasks import SuperResolution
from dip_lightning.tasks.base import psnr


def superres(data: ImageData, **kwargs) -> SuperResolution:
    return set_up(SuperResolution(net=tiny_net, **kwargs), data)


def test_observation_is_the_antialiased_downsampling_and_the_output_is_factor_times_larger():
    task = superres(ImageData("astronaut", 64), factor=4)
    assert task.observation.shape == (1, 3, 16, 16) and task.output.shape == task.z.shape[:1] + (3, 64, 64)
    # sigma 0: the observation is the downsampled truth, clipped to [0, 1] like any image
    assert torch.allclose(task.forward_operator(task.ground_truth).clamp(0, 1), task.observation, atol=1e-6)
    # antialiased: a pixel checkerboard (all energy at Nyquist) averages out instead of aliasing
    board = (torch.arange(64)[:, None] + torch.arange(64)).remainder(2).float().expand(1, 3, 64, 64)
    assert float(task.forward_operator(board).std()) < 0.05


def test_psnr_y_uses_luma_with_factor_border_cut_and_bicubic_is_the_baseline():
    task = superres(ImageData("astronaut", 64), factor=4)
    truth = task.ground_truth
    # errors only in the 4-pixel border: invisible to psnr_y, visible to the plain PSNR
    frame = torch.ones_like(truth, dtype=torch.bool)
    frame[..., 4:-4, 4:-4] = False
    bordered = torch.where(frame, 1 - truth, truth)
    assert float(task.image_metrics(bordered)["psnr_y"]) > 80 > float(task.image_metrics(bordered)["psnr"])
    # a chroma-only change at constant luma leaves psnr_y (nearly) untouched
    shifted = truth.clone()
    shifted[:, 0] += 0.02 * 0.587
    shifted[:, 1] -= 0.02 * 0.299
    assert float(task.psnr_y(shifted)) > 70
    expected_y = psnr(rgb_to_ycbcr(shifted)[:, :1, 4:-4, 4:-4], rgb_to_ycbcr(truth)[:, :1, 4:-4, 4:-4])
    assert float(task.psnr_y(shifted)) == pytest.approx(float(expected_y))
    bicubic = resize(task.observation, (64, 64)).clamp(0, 1)
    assert float(task.image_metrics(truth)["psnr_bicubic"]) == pytest.approx(float(psnr(bicubic, truth)), abs=1e-4)


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
