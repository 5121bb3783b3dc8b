"""1D signals: the paper's toy signal, a user's CSV/NPY file, and the datamodule that serves one."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from .data import step_loader
from .errors import InputError


def toy_signal(length: int = 256) -> torch.Tensor:
    """GP-DIP's 1D toy 0.3 sin(8πx) + 0.1 sin(32πx) at `length` points x = i / length, shape (1, length)."""
    x = torch.arange(length, dtype=torch.float64) / length
    return (0.3 * torch.sin(8 * math.pi * x) + 0.1 * torch.sin(32 * math.pi * x)).float()[None]


def load_signal(path: str | Path) -> torch.Tensor:
    """A signal from .npy or .csv/.txt: a vector of L values or an (L, C) table, as float (C, L).

    Refuses (InputError) NaN/inf values, more than 2 dimensions, and files that do not exist or parse.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"signal file not found: {path} (give a .npy or .csv file, or signal=toy)")
    try:
        array = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix == ".csv"
                                                                       else None, ndmin=1)
    except ValueError as err:
        raise InputError(f"cannot read {path} as numbers ({err}): give one value per line, or one column "
                         f"per channel") from None
    signal = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if signal.dim() not in (1, 2) or signal.numel() == 0:
        raise InputError(f"the signal in {path} has shape {tuple(signal.shape)}: give a vector or an (L, C) table")
    bad = ~torch.isfinite(signal)
    if bool(bad.any()):
        first = int(bad.reshape(signal.shape[0], -1).any(1).nonzero()[0])
        raise InputError(f"the signal in {path} has {int(bad.sum())} NaN/inf values (first at row {first}): "
                         f"fill them in or remove those rows")
    return signal[None] if signal.dim() == 1 else signal.T.contiguous()


def crop_signal_to_multiple(signal: torch.Tensor, multiple: int) -> torch.Tensor:
    """Centre-crop the last axis of (C, L) down to a multiple of `multiple` (a net's 2^depth), with a notice."""
    length = signal.shape[-1]
    new = length - length % multiple
    if new == 0:
        raise InputError(f"the signal of {length} points is shorter than {multiple} (2^depth of the network): "
                         f"use a longer signal or a shallower network (model.net.depth)")
    if new != length:
        print(f"notice: cropped the signal from {length} to {new} points, a multiple of {multiple}")
    start = (length - new) // 2
    return signal[..., start:start + new]


class SignalData(L.LightningDataModule):
    """Serves one 1D signal (C, L) as `image`, like ImageData does for images.

    Args:
        signal: `toy` (the paper's 1D toy) or a .npy / .csv file (a vector, or an (L, C) table).
        length: points of the toy signal.
        is_observation: the file is the observation itself (no ground truth).
    """

    def __init__(self, signal: str = "toy", length: int = 256, is_observation: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        if signal == "toy" and is_observation:
            raise InputError("the toy signal is a ground truth: drop data.is_observation or give a signal file")
        self.is_observation = is_observation
        self.image = toy_signal(length) if signal == "toy" else load_signal(signal)

    def train_dataloader(self) -> DataLoader:
        return step_loader()
