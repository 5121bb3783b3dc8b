"""Deblurring: Gaussian and file kernels, the blur operator, bad kernels."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from task_helpers import set_up, tiny_net

from dip_lightning.data import ImageData
from dip_lightning.errors import InputError
from dip_lightning.tasks import Deblur
from dip_lightning.tasks.deblur import load_kernel


def test_gaussian_blur_preserves_flat_regions_and_smooths_edges():
    task = set_up(Deblur(net=tiny_net, kernel_size=9, blur_sigma=2.0, sigma=0), ImageData("camera", 32))
    assert task.kernel.shape == (1, 9, 9) and float(task.kernel.sum()) == pytest.approx(1.0)
    flat = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(task.forward_operator(flat), flat, atol=1e-6)  # reflect padding: no dark border
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1
    profile = task.forward_operator(step)[0, 0, 8]
    assert 0 < float(profile[7]) < 0.5 < float(profile[8]) < 1  # the edge is spread over both sides
    assert torch.allclose(task.observation, task.forward_operator(task.ground_truth).clamp(0, 1))


def test_kernel_files_are_read_and_normalised_with_a_notice(tmp_path, capsys):
    box = np.ones((3, 5))
    np.save(tmp_path / "box.npy", box)
    np.savetxt(tmp_path / "box.csv", box, delimiter=",")
    for name in ("box.npy", "box.csv"):
        kernel = load_kernel(tmp_path / name)
        assert kernel.shape == (3, 5) and torch.allclose(kernel, torch.full((3, 5), 1 / 15))
    assert "sums to 15; normalised to sum 1" in capsys.readouterr().out
    np.save(tmp_path / "unit.npy", box / 15)
    load_kernel(tmp_path / "unit.npy")
    assert "notice" not in capsys.readouterr().out


def test_bad_kernels_are_clear_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.ones(9))
    np.save(tmp_path / "stack.npy", np.ones((2, 3, 3)))
    np.save(tmp_path / "negative.npy", -np.ones((3, 3)))
    for name in ("flat.npy", "stack.npy"):
        with pytest.raises(InputError, match="give a 2D kernel"):
            load_kernel(tmp_path / name)
    with pytest.raises(InputError, match="sum <= 0"):
        load_kernel(tmp_path / "negative.npy")
    with pytest.raises(InputError, match="blur kernel file not found"):
        Deblur(kernel=str(tmp_path / "none.npy"))
    with pytest.raises(InputError, match="odd kernel size"):
        Deblur(kernel_size=4)


def test_run_with_a_kernel_file_normalises_it_with_a_notice_through_the_cli(capsys, tmp_path):
    kernel = np.zeros((5, 5))
    kernel[2, :] = 1  # horizontal motion blur, sums to 5
    np.save(tmp_path / "motion.npy", kernel)
    run_dir, out, err, code = run_cli(capsys, "fit", "--config", "deblur", *TINY, "--trainer.max_steps=10",
                                      f"--model.kernel={tmp_path / 'motion.npy'}",
                                      f"--trainer.default_root_dir={tmp_path}")
    assert code == 0, err
    assert "motion.npy sums to 5; normalised to sum 1" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "restored.png").is_file() and metrics["steps"] == 10
