"""The datamodule: one image (or one observation) per problem, served as an endless run of steps."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .images import load_image


class _Steps(Dataset):
    """`length` step indices; DIP fits one image, so a batch carries nothing but its index."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


def step_loader(steps_per_epoch: int) -> DataLoader:
    """The loader of a single-problem datamodule: `steps_per_epoch` step indices per epoch.

    batch_size=None: no collation, the batch is a plain int and nothing is copied to the device.
    An own generator: a new epoch's iterator must not draw from the global stream (exact resumes).
    """
    return DataLoader(_Steps(steps_per_epoch), batch_size=None, generator=torch.Generator())


class ImageData(L.LightningDataModule):
    """Loads the image the task restores.

    Args:
        image: a file path (PNG, JPEG, TIFF; grey or RGB) or a built-in name (`astronaut`, `camera`, ...).
        crop: side of a centred square crop; None keeps the whole image.
        is_observation: the file is the degraded observation itself (a real noisy photo): there is no
            ground truth, so no ground-truth metrics and only blind stopping.
        steps_per_epoch: optimizer steps per epoch (epochs only pace epoch-level hooks; `trainer.max_steps`
            sets the run length).
    """

    def __init__(self, image: str = "astronaut", crop: int | None = None, is_observation: bool = False,
                 steps_per_epoch: int = 100) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.is_observation = is_observation
        self.image = load_image(image, crop)  # (C, H, W) in [0, 1]; loaded now so bad input fails early

    def train_dataloader(self) -> DataLoader:
        return step_loader(self.hparams.steps_per_epoch)
