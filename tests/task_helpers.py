"""Set a task up on a datamodule without fitting it: the observation, mask and buffers, as a run has them."""

from __future__ import annotations

import lightning as L
import torch

from dip_lightning.nets import SkipNet
from dip_lightning.tasks import RestorationTask


def tiny_net(in_channels: int, out_channels: int) -> SkipNet:
    """A 2-scale, 8-channel skip net: builds in milliseconds; inputs are cropped to multiples of 4."""
    return SkipNet(in_channels, out_channels, width=8, depth=2)


def set_up(task: RestorationTask, data: L.LightningDataModule) -> RestorationTask:
    """Build the task's problem on `data` as a run does before fitting, and its chains as a one-process CPU
    run does."""
    task.build_problem(data)
    task.build_chains(0, torch.device("cpu"))
    return task
