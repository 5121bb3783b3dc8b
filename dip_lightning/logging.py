"""W&B logging that works without an account: offline unless one is configured."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

PROJECT = "dip_lightning"


def wandb_account_configured() -> bool:
    """True when W&B can reach an account: WANDB_API_KEY is set or `wandb login` stored a key in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(run_dir: Path, name: str) -> WandbLogger:
    """A WandbLogger writing under `run_dir`: online with an account, offline otherwise.

    The run's group is `name` (task-strategy) unless WANDB_RUN_GROUP names one (a sweep's runs share it).
    WANDB_MODE (online / offline / disabled) overrides the choice; WANDB_PROJECT the project name.
    """
    mode = os.environ.get("WANDB_MODE") or ("online" if wandb_account_configured() else "offline")
    return WandbLogger(name=f"{run_dir.name}", save_dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", PROJECT),
                       offline=mode == "offline", mode=mode,
                       group=os.environ.get("WANDB_RUN_GROUP") or name)
