"""Write a run's results when fitting ends (or is interrupted): images, uncertainty, metrics, logger images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from dip_lightning.artifacts import save_image, save_rhat, save_summary, save_uncertainty, to_uint8, write_metrics
from dip_lightning.console import warn
from dip_lightning.tasks.masked import MaskedTask
from dip_lightning.verdict import run_error, run_warnings

from .interrupt import StopOnInterrupt


def _log_figure(trainer: L.Trainer, key: str, path: Path) -> None:
    """Send a saved figure (PNG) as it is to every logger that takes images (W&B)."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)


def _summary_panels(pl_module: L.LightningModule, images: dict[str, torch.Tensor],
                    metrics: dict) -> list[tuple[str, torch.Tensor]]:
    """summary.png's images with their titles: observation | restored | ground truth (when known)."""
    def db(key: str) -> str:
        return f"PSNR {metrics[key]:.2f} dB" if metrics.get(key) is not None else ""

    restored = "posterior mean" if "posterior_mean" in images else "restored"
    observation = "observation (missing pixels black)" if isinstance(pl_module, MaskedTask) else "observation"
    if pl_module.has_ground_truth:
        panels = [(f"{observation}\n{db('psnr_observation_input')}", images["observation"]),
                  (f"{restored}\n{db('psnr_selected')}", images["restored"]),
                  ("ground truth", images["ground_truth"])]
    else:
        panels = [(observation, images["observation"]),
                  (f"{restored}\n{db('psnr_observation_output')} to the observation", images["restored"])]
    return [(title.strip(), image[0]) for title, image in panels]


def _std_title(std: torch.Tensor | None, metrics: dict) -> str:
    """The std panel's title: its mean, and the split-R̂ (median, p99) that says whether the chains mixed."""
    if std is None:
        return ""
    mean = float(std.float().mean())
    title = f"posterior std\nmean {mean:.4f} = {255 * mean:.1f}/255"
    if metrics.get("rhat_median") is not None:
        title += f"\nsplit-R̂ median {metrics['rhat_median']:.2f}, p99 {metrics['rhat_p99']:.2f}"
    return title


def _summary_title(pl_module: L.LightningModule, metrics: dict) -> str:
    """Task, strategy, run length and, when it is not the last one, the step the output comes from."""
    title = f"{type(pl_module).__name__}, {type(pl_module.strategy).__name__}: {metrics['steps']} steps"
    if metrics.get("step_selected") not in (None, metrics["steps"]):
        title += f", the output of step {metrics['step_selected']}"
    return title + (" (interrupted)" if metrics.get("interrupted") else "")


def _log_images(trainer: L.Trainer, images: dict[str, torch.Tensor], step: int) -> None:
    """Send [0, 1] images (1, C, H, W) as uint8 to every logger that takes images (W&B); skips 1D data."""
    images = {key: image for key, image in images.items() if image.dim() == 4}  # 2D images only
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            for key, image in images.items():
                array = to_uint8(image[0]).permute(1, 2, 0).numpy()
                logger.log_image(key=key, images=[array[..., 0] if array.shape[-1] == 1 else array], step=step)


class RunArtifacts(L.Callback):
    """Saves in `trainer.default_root_dir`: restored.png, observation.png, ground_truth.png (when known),
    for uncertainty strategies posterior_mean.png, uncertainty.png, posterior_std.npy, rhat.png (samplers)
    and each further map of the selection as <name>.npy and <name>.png, summary.png (all of them in one figure,
    titled with PSNR, mean std and split-R̂) and metrics.json; PNGs for 2D images only. Then the task's
    `save_artifacts` hook adds files of its own (a mask, a 1D plot). Then it prints a warning line for each
    result to read with care and keeps the reason a finished run has no valid result in `error` (`verdict`),
    which the CLI turns into exit status 1.

    Also sends the current output (chain 0's) to image loggers every `image_every_n_steps` of the task,
    and the final images and summary.png at the end. `seconds` in metrics.json is the fitting time of the
    whole run: a resumed run adds the time its checkpoint had recorded. Every process selects the result
    together (the chains of all processes are gathered); rank 0 alone writes. An interrupted run (Ctrl+C,
    an error) still writes what it has, from rank 0's chains alone.
    """

    def __init__(self) -> None:
        self.start_time = 0.0
        self.seconds_before = 0.0  # fitting time of the run's earlier parts (from the checkpoint resumed)
        self.written = False
        self.first_step: int | None = None  # the step training started from (None: it has not started)
        self.error: str | None = None  # why the finished run has no valid result (verdict.run_error), on rank 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_time = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.first_step = trainer.global_step  # a resumed run's checkpoint is restored by now

    def seconds(self) -> float:
        """Fitting time so far, earlier parts of a resumed run included."""
        return self.seconds_before + time.perf_counter() - self.start_time

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds_before = state_dict["seconds"]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.is_global_zero and trainer.global_step % pl_module.hparams.image_every_n_steps == 0:
            _log_images(trainer, {"images/output": pl_module.output[:1]}, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # before Lightning's teardown, which moves the task (not the callbacks' state) to the CPU and may end
        # the process group: the results are computed where the run ran, every process together
        stopped = any(isinstance(c, StopOnInterrupt) and c.interrupted for c in trainer.callbacks)
        self.write(trainer, pl_module, interrupted=stopped)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.first_step is not None and trainer.global_step > self.first_step:  # this run fitted steps: keep them
            self.write(trainer, pl_module, interrupted=True)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, interrupted: bool = False) -> None:
        if self.written:
            return
        self.written = True
        selection = pl_module.select(gather=not interrupted)  # every process, together (unless interrupted)
        if not trainer.is_global_zero:
            return
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics = pl_module.summary(selection)
        metrics["seconds"] = self.seconds()
        if interrupted:
            metrics["interrupted"] = True
        images = {"restored": selection.image[None], "observation": pl_module.observation}
        if pl_module.has_ground_truth:
            images["ground_truth"] = pl_module.ground_truth
        if selection.std is not None:
            images["posterior_mean"] = selection.image[None]
            np.save(run_dir / "posterior_std.npy", selection.std.float().cpu().numpy())
        for name, values in selection.maps.items():
            np.save(run_dir / f"{name}.npy", values.float().cpu().numpy())
        if selection.image.dim() == 3:  # PNGs hold 2D images (C, H, W); other data is the task's to write
            heat_maps = {}
            if selection.std is not None:
                save_uncertainty(run_dir / "uncertainty.png", selection.std)
                _log_figure(trainer, "images/uncertainty", run_dir / "uncertainty.png")  # with its colour bar
            for name, values in selection.maps.items():
                save_uncertainty(run_dir / f"{name}.png", values, title=name.replace("_", " "))
            if selection.rhat is not None:
                save_rhat(run_dir / "rhat.png", selection.rhat)
                _log_figure(trainer, "images/rhat", run_dir / "rhat.png")
            for name, image in images.items():
                save_image(run_dir / f"{name}.png", image[0])
            save_summary(run_dir / "summary.png", _summary_panels(pl_module, images, metrics), selection.std,
                         _std_title(selection.std, metrics), _summary_title(pl_module, metrics))
            _log_figure(trainer, "images/summary", run_dir / "summary.png")
        pl_module.save_artifacts(run_dir, selection)
        write_metrics(run_dir / "metrics.json", metrics)
        print(pl_module.noise_model.report(metrics, pl_module.sigma_scale))  # which noise the run found or used
        _log_images(trainer, {f"images/{k}": v for k, v in images.items()}, trainer.global_step)
        for logger in trainer.loggers:
            logger.log_metrics({f"final/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
                               step=trainer.global_step)
        if metrics.get("nonfinite_loss"):
            print(f"warning: the loss became non-finite (lower the learning rate); stopped after "
                  f"{metrics['steps']} steps and saved the best finite output (step {metrics.get('step_selected')})")
        for line in run_warnings(metrics):
            warn(line)
        self.error = run_error(metrics)
