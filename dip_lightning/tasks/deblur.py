"""Deblurring: y = clip(k * x + n, 0, 1), k a Gaussian or a user's blur kernel (kornia filtering)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from kornia.filters import filter2d, get_gaussian_kernel2d

from ..errors import InputError
from ..images import load_image
from .base import RestorationTask


def load_kernel(path: str | Path) -> torch.Tensor:
    """A blur kernel (kh, kw) from .npy, a text/CSV table or a grey image; normalised to sum 1 with a notice.

    Refuses (InputError) a kernel that is not 2D, has non-finite values or a sum <= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"blur kernel file not found: {path} (give a .npy, .csv/.txt table or an image)")
    if path.suffix == ".npy":
        kernel = torch.from_numpy(np.load(path)).float()
    elif path.suffix in (".csv", ".txt"):
        kernel = torch.from_numpy(np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)).float()
    else:
        kernel = load_image(path).mean(0)
    if kernel.dim() != 2:
        raise InputError(f"the blur kernel {path} has shape {tuple(kernel.shape)}: give a 2D kernel (height x width)")
    if not bool(torch.isfinite(kernel).all()) or float(kernel.sum()) <= 0:
        raise InputError(f"the blur kernel {path} has non-finite values or a sum <= 0: give non-negative weights")
    total = float(kernel.sum())
    if abs(total - 1.0) > 1e-4:
        print(f"notice: the blur kernel {path} sums to {total:.4g}; normalised to sum 1 (brightness preserved)")
        kernel = kernel / total
    return kernel


class Deblur(RestorationTask):
    """Recover an image blurred by a known kernel and corrupted by Gaussian noise.

    The operator is a 2D correlation with the kernel, reflect-padded at the border (same size out).

    Args:
        kernel_size: side of the Gaussian kernel (odd), pixels.
        blur_sigma: std of the Gaussian kernel, pixels.
        kernel: a kernel file (.npy, .csv/.txt, grey image) used instead of the Gaussian; a kernel that
            does not sum to 1 is normalised (with a notice), one that is not 2D is refused.
        sigma: std of the additive noise, 0-255 units (null: unknown; see RestorationTask).
        **kwargs: the RestorationTask arguments (net, strategy, reg_noise_std, ...).
    """

    def __init__(self, kernel_size: int = 9, blur_sigma: float = 2.0, kernel: str | None = None,
                 sigma: float | None = 5.0, **kwargs) -> None:
        super().__init__(sigma=sigma, **kwargs)
        if kernel is not None:
            weights = load_kernel(kernel)
        elif kernel_size < 1 or kernel_size % 2 == 0 or blur_sigma <= 0:
            raise InputError(f"model.kernel_size={kernel_size}, model.blur_sigma={blur_sigma}: "
                             f"give an odd kernel size >= 1 and a positive sigma")
        else:
            weights = get_gaussian_kernel2d(kernel_size, (blur_sigma, blur_sigma))[0]
        self.register_buffer("kernel", weights[None])  # (1, kh, kw), shared by all channels

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        blurred = self.forward_operator(clean[None])[0]
        return self.add_noise(blurred, generator)

    def forward_operator(self, output: torch.Tensor) -> torch.Tensor:
        return filter2d(output, self.kernel, border_type="reflect")
