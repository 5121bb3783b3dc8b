"""Inpainting: masks (Bernoulli, file, box), the loss on known pixels, psnr_missing, pasting, bad masks."""

import pytest
import torch
from conftest import TINY, fit_tiny, run_cli
from task_helpers import set_up, tiny_net

from dip_lightning.artifacts import save_image
from dip_lightning.data import ImageData
from dip_lightning.errors import InputError
from dip_lightning.images import load_image
from dip_lightning.tasks import Inpaint


def inpaint(data: ImageData, **kwargs) -> Inpaint:
    return set_up(Inpaint(net=tiny_net, **kwargs), data)


def test_bernoulli_mask_is_seeded_removes_the_fraction_asked_and_blanks_missing_pixels():
    data = ImageData("astronaut", 64)
    task = inpaint(data, missing=0.3)
    assert task.mask.shape == (1, 1, 64, 64)
    assert abs(float(task.mask.mean()) - 0.7) < 0.03
    known = task.mask.bool().expand_as(task.observation)
    assert torch.equal(task.observation[known], task.ground_truth[known])  # sigma 0: known pixels exact
    assert bool((task.observation[~known] == 0).all())
    assert torch.equal(inpaint(data, missing=0.3).mask, task.mask)
    assert not torch.equal(inpaint(data, missing=0.3, observation_seed=1).mask, task.mask)
    assert task.num_observed == int(task.mask.sum()) * 3


def test_loss_sees_known_pixels_only_and_psnr_missing_sees_missing_pixels_only():
    task = inpaint(ImageData("camera", 32), missing=0.5)
    missing = task.mask == 0
    wrong_where_missing = torch.where(missing, 1 - task.ground_truth, task.ground_truth)
    assert float(task.data_loss(wrong_where_missing)) == 0
    assert float(task.data_loss(torch.where(missing, task.ground_truth, 1 - task.ground_truth))) > 0.01
    off = task.ground_truth + 0.1 * missing  # error 0.1 on missing pixels only: psnr_missing = 20 dB
    metrics = task.image_metrics(off)
    assert metrics["psnr_missing"] == pytest.approx(20.0, abs=1e-3)
    assert metrics["psnr"] == pytest.approx(20.0 - 10 * torch.log10(missing.float().mean()).item(), abs=1e-3)


def test_mask_file_of_the_full_image_is_cropped_alike_and_a_box_adds_a_missing_region(tmp_path):
    full = torch.ones(1, 512, 512)
    full[:, 256:, :] = 0  # the bottom half of the 512x512 camera image is missing
    save_image(tmp_path / "mask.png", full)
    task = inpaint(ImageData("camera", 64), mask=str(tmp_path / "mask.png"), box=[0, 0, 8, 16])
    expected = torch.ones(64, 64)
    expected[32:] = 0
    expected[:8, :16] = 0
    assert torch.equal(task.mask[0, 0], expected)
    resized = inpaint(ImageData("camera", size=64), mask=str(tmp_path / "mask.png"))  # the whole image, resized
    assert resized.mask.shape == (1, 1, 64, 64) and float(resized.mask[0, 0, :32].min()) == 1
    assert float(resized.mask[0, 0, 32:].max()) == 0


def test_bad_masks_and_boxes_are_clear_errors(tmp_path):
    save_image(tmp_path / "small.png", torch.ones(1, 10, 12))
    with pytest.raises(InputError, match=r"mask .* is 10x12 but the image is 64x64 \(512x512 in its file\)"):
        inpaint(ImageData("camera", 64), mask=str(tmp_path / "small.png"))
    save_image(tmp_path / "black.png", torch.zeros(1, 64, 64))
    with pytest.raises(InputError, match="no pixel as known"):
        inpaint(ImageData("camera", 64), mask=str(tmp_path / "black.png"))
    with pytest.raises(InputError, match="does not fit the 32x32 image"):
        inpaint(ImageData("camera", 32), box=[30, 0, 4, 4])
    with pytest.raises(InputError, match="choose 0 <= missing < 1"):
        Inpaint(missing=1.0)


def test_run_reports_psnr_missing_pastes_known_pixels_and_its_mask_restores_its_observation(capsys, tmp_path):
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--model.missing=0.5", "--model.paste_known=true",
                                config="inpaint.yaml")
    assert {"psnr_missing", "psnr_selected"} <= metrics.keys() and metrics["psnr_missing"] < metrics["psnr_selected"]
    restored, observed, mask = (load_image(run_dir / f"{n}.png") for n in ("restored", "observation", "mask"))
    known = mask.bool().expand_as(restored)
    assert abs(mask.float().mean() - 0.5) < 0.1
    assert torch.equal(restored[known], observed[known]) and not torch.equal(restored, observed)
    # the saved observation + mask are a real user's input: no ground truth, the mask from the file
    observation_args = [f"--data.image={run_dir / 'observation.png'}", "--data.is_observation=true",
                        "--trainer.max_steps=5"]
    again_dir, again = fit_tiny(capsys, tmp_path, *observation_args, f"--model.mask={run_dir / 'mask.png'}",
                                config="inpaint.yaml")
    assert "psnr_missing" not in again and torch.equal(load_image(again_dir / "mask.png"), mask)
    _, _, err, code = run_cli(capsys, "fit", "--config", "inpaint", *TINY, *observation_args,
                              f"--trainer.default_root_dir={tmp_path}")
    assert code == 2 and "needs its missing pixels: give model.mask=PATH" in err


def test_noise_free_inpainting_samples_under_the_papers_sgld_with_the_guard_off(capsys, tmp_path):
    # sigma 0 has no noise band: configs/paper/inpaint_sgld.yaml turns the guard off (max_mse_ratio .inf)
    run_dir, metrics = fit_tiny(capsys, tmp_path, "--trainer.max_steps=12", "--model.strategy.burn_in=4",
                                "--model.strategy.thin=2", config="paper/inpaint_sgld.yaml")
    assert metrics["samples"] == 4 and "chain_left_band_step" not in metrics
    assert {"psnr_posterior_mean", "psnr_missing"} <= metrics.keys()
    assert (run_dir / "uncertainty.png").is_file() and (run_dir / "mask.png").is_file()
