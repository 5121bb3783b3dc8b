"""Super-resolution: y = D(x), D an antialiased bicubic downsampling by `factor` (kornia)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from kornia.color import rgb_to_ycbcr

from ..artifacts import save_image
from ..errors import InputError
from ..images import crop_to_multiple, resize
from ..strategies.base import Selection
from .base import RestorationTask, psnr


class SuperResolution(RestorationTask):
    """Recover an image `factor` times larger than its low-resolution observation.

    The observation is the ground truth downsampled by `factor` (Gaussian antialiasing + bicubic,
    kornia), plus optional noise; the loss compares the downsampled output with it. Given an
    observation only (`data.is_observation`), the output is `factor` times its size, with no ground truth.
    `metrics.json` adds `psnr_bicubic` (bicubic upsampling of the observation, the baseline), and
    `psnr_y` / `psnr_y_bicubic`: PSNR of the luma Y of the [0, 1] images (kornia's YCbCr) with a border
    of `factor` pixels cut, DIP's evaluation convention. The run directory gets bicubic.png.

    Args:
        factor: the upsampling factor (2, 4, 8, ...); each side of the ground truth must be divisible by it.
        sigma: std of noise added to the low-resolution observation, 0-255 units (0: noise-free).
        **kwargs: the RestorationTask arguments (net, strategy, reg_noise_std, ...).
    """

    def __init__(self, factor: int = 4, sigma: float = 0.0, **kwargs) -> None:
        if factor < 1:
            raise InputError(f"model.factor={factor}: the super-resolution factor must be an integer >= 1")
        super().__init__(sigma=sigma, **kwargs)

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
        return (low + torch.randn(low.shape, generator=generator) * self.noise_std).clamp(0, 1)

    def forward_operator(self, output: torch.Tensor) -> torch.Tensor:
        return self._downsample(output)

    def _downsample(self, image: torch.Tensor) -> torch.Tensor:
        """(1, C, H, W) -> (1, C, H / factor, W / factor), antialiased bicubic."""
        height, width = image.shape[-2:]
        return resize(image, (height // self.factor, width // self.factor), interpolation="bicubic")

    def bicubic(self) -> torch.Tensor:
        """The baseline: the observation upsampled by `factor` with bicubic interpolation, (1, C, H, W)."""
        return resize(self.observation, self.output_size(self.observation[0]), interpolation="bicubic").clamp(0, 1)

    def psnr_y(self, image: torch.Tensor) -> torch.Tensor:
        """PSNR of the luma of (1, C, H, W) [0, 1] images with `factor` border pixels cut (grey: the image)."""
        def luma(x: torch.Tensor) -> torch.Tensor:
            y = rgb_to_ycbcr(x)[:, :1] if x.shape[1] == 3 else x
            cut = self.factor
            return y[..., cut:-cut, cut:-cut]

        return psnr(luma(image), luma(self.ground_truth))

    def image_metrics(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        bicubic = self.bicubic()
        return {**super().image_metrics(image), "psnr_y": self.psnr_y(image),
                "psnr_bicubic": psnr(bicubic, self.ground_truth), "psnr_y_bicubic": self.psnr_y(bicubic)}

    def save_artifacts(self, run_dir: Path, selection: Selection) -> None:
        """bicubic.png: the baseline, for comparison with restored.png."""
        save_image(run_dir / "bicubic.png", self.bicubic()[0])
