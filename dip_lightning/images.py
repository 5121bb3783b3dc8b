"""Image loading, cropping and resizing: files through kornia, built-ins from scikit-image's bundled data."""

from __future__ import annotations

from pathlib import Path

import kornia
import kornia.io
import skimage.data
import torch

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

