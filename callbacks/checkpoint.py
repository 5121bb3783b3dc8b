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
        self.first_step: int | None = None  # the step training started from (None: it has not started)

    def load_state_dict(self, state_dict: dict) -> None:
        """Nothing to restore: one file and no ranking of checkpoints (and where the saving run wrote may differ
        from where this one writes: a resumed part writes into its staging folder first, `resume.Staging`)."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_last(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.first_step = trainer.global_step  # a resumed run's checkpoint is restored by now

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.first_step is not None and trainer.global_step > self.first_step:  # this run fitted steps: keep them
            self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        trainer.save_checkpoint(path, weights_only=False)
