"""Super-resolution: y = clip(D(x) + n, 0, 1), D DIP's Lanczos-2 or an antialiased bicubic downsampling."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch

from ..artifacts import save_image
from ..errors import InputError
from ..images import crop_to_multiple, lanczos2_downsample, lanczos2_kernel, resize
from ..strategies.base import Selection
from .base import RestorationTask, psnr

LUMA_BORDER = 4
"""Pixels cut from each side before `psnr_y`, whatever the factor (DIP's evaluation)."""


def studio_luma(image: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 studio-range luma of [0, 1] RGB (B, 3, H, W), or grey (B, 1, H, W) taken as R = G = B:
    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, in [16/255, 235/255], shape (B, 1, H, W)."""
    weights = image.new_tensor([65.481, 128.553, 24.966]) / 255
    rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
    return 16 / 255 + (rgb * weights[:, None, None]).sum(1, keepdim=True)


def psnr_y(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DIP's super-resolution score: PSNR of the studio-range luma, peak 1, `LUMA_BORDER` pixels cut per side.

    The studio range compresses the luma to 219/255 of full-range Y (0.299 R + 0.587 G + 0.114 B), so on
    the same pair it reads exactly 20·log10(255/219) = 1.32 dB higher than a full-range Y PSNR.
    """
    cut = (..., slice(LUMA_BORDER, -LUMA_BORDER), slice(LUMA_BORDER, -LUMA_BORDER))
    return psnr(studio_luma(prediction)[cut], studio_luma(target)[cut])


class SuperResolution(RestorationTask):
    """Recover an image `factor` times larger than its low-resolution observation.

    The observation is the ground truth downsampled by `factor` with the forward model itself, plus
    optional noise, clipped to [0, 1] (DIP's scripts make it with PIL's 8-bit Lanczos-3 resize instead);
    the loss compares the downsampled output with it. Given an observation only (`data.is_observation`),
    the output is `factor` times its size, with no ground truth. `metrics.json` adds `psnr_bicubic`
    (bicubic upsampling of the observation, the baseline), and `psnr_y` / `psnr_y_bicubic` in DIP's
    convention (`psnr_y`: studio-range BT.601 luma, a fixed 4-pixel border cut). The run directory gets
    bicubic.png.

    Args:
        factor: the upsampling factor (2, 4, 8, ...); each side of the ground truth must be divisible by it.
        sigma: std of noise added to the low-resolution observation, 0-255 units (0: noise-free; null: unknown).
        downsampler: the operator D: `lanczos2`, DIP's (`images.lanczos2_downsample`), or
            `antialiased_bicubic` (kornia's resize: a Gaussian antialiasing blur, then bicubic sampling).
        **kwargs: the RestorationTask arguments (net, strategy, reg_noise_std, ...).
    """

    def __init__(self, factor: int = 4, sigma: float | None = 0.0,
                 downsampler: Literal["lanczos2", "antialiased_bicubic"] = "lanczos2", **kwargs) -> None:
        if factor < 1:
            raise InputError(f"model.factor={factor}: the super-resolution factor must be an integer >= 1")
        if downsampler not in ("lanczos2", "antialiased_bicubic"):
            raise InputError(f"model.downsampler={downsampler!r}: choose lanczos2 or antialiased_bicubic")
        super().__init__(sigma=sigma, **kwargs)
        self.register_buffer("lanczos_taps", lanczos2_kernel(factor), persistent=False)

    @property
    def factor(self) -> int:
        return self.hparams.factor

    def fit_to_network(self, image: torch.Tensor, multiple: int) -> torch.Tensor:
        """Ground truth: check it divides by `factor`, then crop to the network's multiple (kept divisible).
        An observation: crop it so that `factor` times its size suits the network."""
        if self.datamodule.is_observation:
            return crop_to_multiple(image, multiple // math.gcd(multiple, self.factor))
        height, width = image.shape[-2:]
        if height % self.factor or width % self.factor:
            raise InputError(f"super-resolution factor {self.factor} does not divide the {height}x{width} image: "
                             f"crop it to a multiple of {self.factor} (data.crop) or change model.factor")
        return crop_to_multiple(image, math.lcm(multiple, self.factor))

    def output_size(self, observation: torch.Tensor) -> tuple[int, ...]:
        return tuple(side * self.factor for side in observation.shape[1:])

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        low = self._downsample(clean[None])[0]
        return self.add_noise(low, generator)

    def forward_operator(self, output: torch.Tensor) -> torch.Tensor:
        return self._downsample(output)

    def _downsample(self, image: torch.Tensor) -> torch.Tensor:
        """(K, C, H, W) -> (K, C, H / factor, W / factor) by the configured downsampler."""
        if self.hparams.downsampler == "lanczos2":
            return lanczos2_downsample(image, self.factor, self.lanczos_taps)
        height, width = image.shape[-2:]
        return resize(image, (height // self.factor, width // self.factor), interpolation="bicubic")

    def bicubic(self) -> torch.Tensor:
        """The baseline: the observation upsampled by `factor` with bicubic interpolation, (1, C, H, W)."""
        return resize(self.observation, self.output_size(self.observation[0]), interpolation="bicubic").clamp(0, 1)

    def image_metrics(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        bicubic = self.bicubic()
        return {**super().image_metrics(image), "psnr_y": psnr_y(image, self.ground_truth),
                "psnr_bicubic": psnr(bicubic, self.ground_truth), "psnr_y_bicubic": psnr_y(bicubic, self.ground_truth)}

    def save_artifacts(self, run_dir: Path, selection: Selection) -> None:
        """bicubic.png: the baseline, for comparison with restored.png."""
        save_image(run_dir / "bicubic.png", self.bicubic()[0])
