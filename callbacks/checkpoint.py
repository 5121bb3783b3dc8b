"""The checkpoint a run is resumed from: one file, `last.ckpt`, kept up to date."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """Writes `<dirpath>/last.ckpt` every `every_n_train_steps`, when fitting ends (at max_steps, on an early
    stop or after Ctrl+C) and on an exception: no other checkpoint file.

    (Lightning's own end-of-fit save skips a run that saved once already, and its exception save adds a
    second file beside last.ckpt.)
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 500) -> None:
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, every_n_train_steps=every_n_train_steps)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_last(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.global_step > 0:  # something was fitted: keep it
            self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        trainer.save_checkpoint(path, weights_only=False)
