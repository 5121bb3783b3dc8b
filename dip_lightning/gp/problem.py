"""The restoration problems GP inference is run on: the image protocol step and simulated observations."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import InputError


def lanczos_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a [0, 1] image (C, H, W) to size x size with PIL's Lanczos filter (the GP-DIP protocol
    step; kornia has no Lanczos), rounded to 8 bits like a saved PNG: the result written with
    `artifacts.save_image` and read back is the same image (so a DIP fit can be given it as a file)."""
    if size < 1:
        raise InputError(f"size must be a positive side in pixels, got {size}")
    channels = [Image.fromarray(c.numpy().astype(np.float32), mode="F").resize((size, size), Image.LANCZOS)
                for c in image.float()]
    resized = torch.from_numpy(np.stack([np.asarray(c) for c in channels])).clamp(0, 1)
    return resized.mul(255).round().div(255)


def bernoulli_mask(shape: tuple[int, ...], missing: float, generator: torch.Generator) -> torch.Tensor:
    """Bool mask (*shape), True = observed: each pixel is missing independently with probability `missing`."""
    if not 0 <= missing < 1:
        raise InputError(f"missing must be a fraction in [0, 1), got {missing}")
    return torch.rand(shape, generator=generator) >= missing


def observe(clean: torch.Tensor, task: str, *, missing: float = 0.5, sigma: float = 0.0,
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated observation (C, *S) and mask (*S) of a clean [0, 1] image, seeded.

    inpaint: a Bernoulli mask shared by the channels (missing pixels set to 0), plus noise if sigma > 0;
    denoise: every pixel observed, y = clip(x + N(0, (sigma/255)²), 0, 1) (the DIP protocol).
    `sigma` is in 0-255 units, like the fit CLI's.
    """
    generator = torch.Generator().manual_seed(seed)
    if task == "inpaint":
        mask = bernoulli_mask(tuple(clean.shape[1:]), missing, generator)
    elif task == "denoise":
        mask = torch.ones(clean.shape[1:], dtype=torch.bool)
    else:
        raise InputError(f"unknown task {task!r}: choose 'inpaint' or 'denoise'")
    noisy = clean + torch.randn(clean.shape, generator=generator) * (sigma / 255) if sigma > 0 else clean
    return noisy.clamp(0, 1) * mask, mask
