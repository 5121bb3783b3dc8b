"""A progress bar over the whole run: steps done out of `trainer.max_steps`, with its time left."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """TQDM's bar with the run's step count as its total (a run is one endless epoch: see `step_loader`);
    a stopping rule may end the run before the total. It shows the task's `psnr` (read from the callback
    metrics at each refresh: no host sync on the other steps), not the logger's version (`v_num`, a W&B run id)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        if "psnr" in trainer.callback_metrics:  # read here, at a refresh: the task logs it for the bar alone
            metrics["psnr"] = float(trainer.callback_metrics["psnr"])
        return metrics

    @property
    def total_train_batches(self) -> int | float:
        max_steps = self.trainer.max_steps
        return max_steps if max_steps > 0 else super().total_train_batches

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description("steps")
        self.train_progress_bar.initial = trainer.global_step  # a resumed run starts where it stopped
        self.train_progress_bar.n = trainer.global_step
