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


def wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run recorded under `run_dir/wandb` (its latest record), if any: a resumed run
    continues that W&B run. Record folders are named `[offline-]run-<date>_<time>-<id>`."""
    records = sorted((run_dir / "wandb").glob("*run-*-*"), key=lambda path: path.name.split("run-", 1)[1])
    return records[-1].name.rsplit("-", 1)[1] if records else None


def wandb_logger(run_dir: Path, name: str) -> WandbLogger:
    """A WandbLogger writing under `run_dir`: online with an account, offline otherwise; it continues the
    W&B run already recorded there (a resumed run).

    The run's group is `name` (task-strategy) unless WANDB_RUN_GROUP names one (a sweep's runs share it).
    WANDB_MODE (online / offline / disabled) overrides the choice; WANDB_PROJECT the project name.
    """
    mode = os.environ.get("WANDB_MODE") or ("online" if wandb_account_configured() else "offline")
    logger = WandbLogger(name=f"{run_dir.name}", save_dir=str(run_dir), id=wandb_run_id(run_dir),
                         project=os.environ.get("WANDB_PROJECT", PROJECT), offline=mode == "offline", mode=mode,
                         group=os.environ.get("WANDB_RUN_GROUP") or name)
    # Lightning passes `anonymous=None`, which W&B >= 0.19 answers with a deprecation warning on every run;
    # leaving the setting out is what W&B asks for (it has no effect either way)
    logger._wandb_init.pop("anonymous", None)
    return logger
