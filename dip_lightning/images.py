"""Image loading, cropping and resizing: files through kornia, built-ins from scikit-image's bundled data."""

from __future__ import annotations

from pathlib import Path

import kornia
import kornia.io
import skimage.data
import torch
import torch.nn.functional as F

from .errors import InputError

_SKIMAGE_DATA = Path(skimage.data.__file__).parent
# Built-in name -> file bundled inside the scikit-image wheel (never downloaded).
BUILTIN_IMAGES = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cell": "cell.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "moon": "moon.png",
    "page": "page.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "text": "text.png",
}


def resolve_image_path(spec: str | Path) -> Path:
    """The file behind `spec`: an existing path, or the bundled file of a built-in name."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if str(spec) in BUILTIN_IMAGES:
        return _SKIMAGE_DATA / BUILTIN_IMAGES[str(spec)]
    if path.suffix or path.parent != Path("."):
        raise InputError(f"image file not found: {spec} (give an existing PNG/JPEG/TIFF path or a built-in name)")
    raise InputError(f"unknown built-in image {spec!r}: choose one of {', '.join(BUILTIN_IMAGES)} or give a file path")


def load_image(spec: str | Path, crop: int | None = None) -> torch.Tensor:
    """Read an image as float (C, H, W) in [0, 1]: C = 1 for grey, 3 for colour (alpha dropped).

    `spec` is a file path (PNG, JPEG, TIFF; 8 or 16 bit) or a name of `BUILTIN_IMAGES`;
    `crop` centre-crops a square of that side.
    """
    path = resolve_image_path(spec)
    try:
        raw = kornia.io.load_image(path, kornia.io.ImageLoadType.UNCHANGED)
    except (ValueError, RuntimeError) as err:
        raise InputError(f"cannot read {path} as an image ({err}); give a PNG, JPEG or TIFF file") from None
    scale = torch.iinfo(raw.dtype).max if not raw.dtype.is_floating_point else 1.0
    image = raw.float().div(scale).clamp(0, 1)
    if image.shape[0] in (2, 4):  # grey + alpha or RGBA
        image = image[:-1]
    return image if crop is None else center_crop(image, crop)


def center_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    """The centred side x side square of a (C, H, W) image, as a copy.

    A copy, not a view: a view keeps the uncropped image's storage alive, in memory and in checkpoints.
    """
    height, width = image.shape[-2:]
    if side < 1 or side > min(height, width):
        raise InputError(f"crop {side} does not fit the {height}x{width} image: choose 1..{min(height, width)}")
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top:top + side, left:left + side].clone()


def resize_longer_side(image: torch.Tensor, side: int) -> torch.Tensor:
    """Resize (C, H, W) so that its longer side is `side` pixels, keeping the aspect ratio (antialiased bicubic,
    clamped to [0, 1]); each side at least 1 pixel."""
    height, width = image.shape[-2:]
    if side < 1:
        raise InputError(f"size {side} is not a side length: give a number of pixels >= 1")
    scale = side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return image if size == (height, width) else resize(image, size).clamp(0, 1)


def crop_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Centre-crop the last two sides of (C, H, W) down to multiples of `multiple` (a net's 2^depth)."""
    height, width = image.shape[-2:]
    new_h, new_w = height - height % multiple, width - width % multiple
    if new_h == 0 or new_w == 0:
        raise InputError(f"the {height}x{width} image is smaller than {multiple} (2^depth of the network): "
                         f"use a larger image or a shallower network (model.net.depth)")
    if (new_h, new_w) != (height, width):
        print(f"notice: cropped the image from {height}x{width} to {new_h}x{new_w}, a multiple of {multiple}")
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return image[..., top:top + new_h, left:left + new_w].clone()  # a copy, as in center_crop


def resize(image: torch.Tensor, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """Antialiased resize of (C, H, W) or (B, C, H, W) to `size` = (H', W')."""
    batch = image if image.dim() == 4 else image[None]
    out = kornia.geometry.transform.resize(batch, size, interpolation=interpolation, antialias=True)
    return out if image.dim() == 4 else out[0]


def lanczos2_kernel(factor: int) -> torch.Tensor:
    """DIP's 'lanczos2' downsampling taps (1D, sum 1): Lanczos support 2 stretched by `factor`.

    Tap j sits at d = (j − (n − 1)/2) / factor and weighs sinc(d)·sinc(d/2), for n = 4·factor taps
    (DIP's kernel width 4·factor + 1 at phase 0.5) when `factor` is even, or 4·factor + 1 taps at phase 0
    when it is odd, so that each output pixel is centred on the block of `factor` input pixels it
    summarises. The 2D kernel is the outer product of these taps with themselves.
    """
    taps = 4 * factor + factor % 2
    d = (torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2) / factor
    kernel = torch.sinc(d) * torch.sinc(d / 2)
    return (kernel / kernel.sum()).float()


def lanczos2_downsample(image: torch.Tensor, factor: int, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """DIP's super-resolution forward model: (B, C, H, W) -> (B, C, H / factor, W / factor).

    The separable `lanczos2_kernel` applied with stride `factor` after replicate padding of
    (taps − factor) / 2 pixels per side, which keeps the size an exact division (DIP's "preserve_size").
    `kernel` may pass the taps precomputed (on the image's device).
    """
    taps = lanczos2_kernel(factor).to(image.device) if kernel is None else kernel
    pad = (taps.numel() - factor) // 2
    batch, channels, height, width = image.shape
    flat = F.pad(image.reshape(batch * channels, 1, height, width), (pad,) * 4, mode="replicate")
    low = F.conv2d(flat, (taps[:, None] * taps[None, :])[None, None].to(image.dtype), stride=factor)
    return low.reshape(batch, channels, height // factor, width // factor)
