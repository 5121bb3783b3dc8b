"""The datamodule: one image (or one observation) per problem, served as an endless run of steps."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from .console import warn
from .images import center_crop, load_image, resize_longer_side

MAX_UPSCALE = 2.0
"""`data.size` above this multiple of the file's longer side gets a warning: DIP would fit interpolated pixels."""


class _Steps(IterableDataset):
    """The step indices 0, 1, 2, ... without end: DIP fits one problem, so a batch carries nothing but its
    index, and `trainer.max_steps` (or a stopping rule) ends the run."""

    def __iter__(self) -> Iterator[int]:
        return itertools.count()


def step_loader() -> DataLoader:
    """The loader of a single-problem datamodule: one endless epoch of step indices.

    One epoch: a run resumed from any step continues the same epoch, with nothing to fast-forward.
    batch_size=None: no collation, the batch is a plain int and nothing is copied to the device.
    An own generator: creating the iterator must not draw from the global stream (exact resumes).
    """
    return DataLoader(_Steps(), batch_size=None, generator=torch.Generator())


class ImageData(L.LightningDataModule):
    """Loads the image the task restores: the file, resized (`size`), then centre-cropped (`crop`).

    Args:
        image: a file path (PNG, JPEG, TIFF; grey or RGB) or a built-in name (`astronaut`, `camera`, ...).
        crop: side of a centred square crop (of the resized image when `size` is given); None keeps the
            whole image.
        size: resize so that the longer side is `size` pixels, keeping the aspect ratio (antialiased
            bicubic): a whole photo at a size a CPU fits quickly. None keeps the file's pixels. Upscaling by
            more than MAX_UPSCALE gets a warning.
        is_observation: the file is the degraded observation itself (a real noisy photo): there is no
            ground truth, so no ground-truth metrics and only blind stopping.
    """

    def __init__(self, image: str = "astronaut", crop: int | None = None, size: int | None = None,
                 is_observation: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.is_observation = is_observation
        source = load_image(image)  # loaded now, so that bad input fails before anything runs
        self.source_size: tuple[int, int] = tuple(source.shape[-2:])  # (H, W) of the file
        if size is not None and size > MAX_UPSCALE * max(self.source_size):
            height, width = self.source_size
            warn(f"data.size={size} upscales the {height}x{width} image {size / max(height, width):.1f}x: the network "
                 f"then fits the interpolation's blur, not detail of the photo; give a larger image, or data.size=null "
                 f"to fit its own pixels")
        self.image = self.transform(source)  # (C, H', W') in [0, 1]

    def transform(self, image: torch.Tensor) -> torch.Tensor:
        """Apply this datamodule's resize and crop to a (C, H, W) image of the file's size (e.g. a mask)."""
        if self.hparams.size is not None:
            image = resize_longer_side(image, self.hparams.size)
        if self.hparams.crop is not None:
            image = center_crop(image, self.hparams.crop)
        return image

    def train_dataloader(self) -> DataLoader:
        return step_loader()
