"""`python -m dip_lightning fit --config denoise.yaml`: the LightningCLI of dip_lightning.

Subcommands: fit / validate / test / predict (LightningCLI), `gp` (GP inference, no Trainer), `sweep`
(a W&B sweep file run offline) and `bench` (per-image tables over configs x images x seeds).
A bare config name is looked up in `configs/`. Each run writes into a new directory under
`trainer.default_root_dir`; the last line printed is `outputs: <run dir>`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import jsonargparse
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from .distributed import RUN_DIR_ENV, chain_strategy, process_count, shared_run_dir
from .errors import InputError
from .logging import wandb_logger
from .tasks import RestorationTask

CONFIG_DIRS = (Path.cwd() / "configs", Path(__file__).resolve().parents[1] / "configs")


def find_config(name: str) -> str:
    """A config path as given, or a bare name (with or without .yaml) found in `configs/`."""
    if Path(name).is_file():
        return name
    for folder in CONFIG_DIRS:
        for candidate in (folder / name, folder / f"{name}.yaml"):
            if candidate.is_file():
                return str(candidate)
    known = sorted({p.relative_to(d).as_posix() for d in CONFIG_DIRS if d.is_dir() for p in d.rglob("*.yaml")})
    raise InputError(f"config {name!r} not found: give a path or one of {', '.join(known) or '(no configs/ here)'}")


def resolve_config_args(argv: list[str]) -> list[str]:
    """Replace each `--config NAME` / `--config=NAME` / `-c NAME` value by the config's path, and each
    `--key=None` by `--key=null` (W&B's sweep agents write a null value as Python's None)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            args[i + 1] = find_config(args[i + 1])
        elif arg.startswith("--config="):
            args[i] = "--config=" + find_config(arg.split("=", 1)[1])
        elif arg.startswith("--") and arg.endswith("=None"):
            args[i] = arg.removesuffix("None") + "null"
    return args


class LogConfigCallback(SaveConfigCallback):
    """Saves config.yaml in the run directory and sends the whole resolved config to the loggers
    (W&B otherwise sees only the task's own hyperparameters, not net width/depth or the strategy)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        config = self.config.as_dict()
        config.pop("config", None)
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class DIPCLI(LightningCLI):
    """LightningCLI with a run directory per run, W&B (offline without an account) and checkpoints."""

    run_dir: Path | None = None

    def __init__(self) -> None:
        jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        super().__init__(
            RestorationTask,
            LightningDataModule,  # any datamodule with `image` and `is_observation` (ImageData, SignalData)
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LogConfigCallback,
            parser_kwargs={"parser_mode": "omegaconf+"},
            trainer_defaults={
                "max_steps": 3000,
                "max_epochs": -1,
                "log_every_n_steps": 10,
                "use_distributed_sampler": False,
                "num_sanity_val_steps": 0,
                "enable_model_summary": False,
                "default_root_dir": "outputs",
            },
        )

    def instantiate_trainer(self, **kwargs):
        """Create the run directory (one for all processes) and put the logger, checkpoints and artifacts in
        it; several processes get the independent-chains strategy (no gradient averaging)."""
        config = self._get(self.config_init, "trainer", default={})
        name = f"{type(self.model).__name__.lower()}-{self.model.strategy.name}"
        processes = process_count(config.get("accelerator"), config.get("devices"), config.get("num_nodes") or 1)
        if processes > 1:
            kwargs["strategy"] = chain_strategy(config.get("strategy", "auto"))
        self.run_dir = shared_run_dir(config.get("default_root_dir") or "outputs", name, processes)
        kwargs["default_root_dir"] = str(self.run_dir)
        if config.get("logger") in (None, True):
            kwargs["logger"] = wandb_logger(self.run_dir, name)
        callbacks = list(config.get("callbacks") or [])
        if config.get("enable_progress_bar") is not False and not any(
                isinstance(c, TQDMProgressBar) for c in callbacks):
            callbacks.append(TQDMProgressBar(refresh_rate=10))
        if config.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(ModelCheckpoint(dirpath=self.run_dir / "checkpoints", save_last=True,
                                             every_n_train_steps=500, save_top_k=0, save_on_exception=True))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; a run that failed on bad input before producing anything leaves no directory behind."""
        try:
            super()._run_subcommand(subcommand)
        except Exception as err:
            if _input_error(err) and self.trainer.is_global_zero and not (self.run_dir / "metrics.json").exists():
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        except SystemExit:  # Lightning exits after a Ctrl+C, once the callbacks have saved the results
            if self.trainer.is_global_zero and (self.run_dir / "metrics.json").exists():
                _finish_wandb()
                print(f"interrupted: results so far and a checkpoint to resume from (--ckpt_path) are saved\n"
                      f"outputs: {self.run_dir}")
            raise
        finally:
            os.environ.pop(RUN_DIR_ENV, None)  # the next run in this process gets its own directory


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m dip_lightning` and the `dip-lightning` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = None
    try:
        argv = resolve_config_args(argv)
        if argv[:1] == ["gp"]:
            from .gp.cli import main as gp_main

            run_dir = gp_main(argv[1:])
        elif argv[:1] == ["sweep"]:
            from .sweep import main as sweep_main

            run_dir = sweep_main(argv[1:])
        elif argv[:1] == ["bench"]:
            from .bench import main as bench_main

            run_dir = bench_main(argv[1:])
        else:
            sys.argv[1:] = argv  # LightningCLI reads sys.argv; keep it equal to the resolved arguments
            cli = DIPCLI()
            run_dir = cli.run_dir if cli.trainer.is_global_zero else None  # rank 0 alone reports
    except Exception as err:  # noqa: BLE001  (bad input may arrive wrapped by jsonargparse)
        cause = _input_error(err)
        if cause is None:
            raise
        _fail(str(cause))
    finally:
        _finish_wandb()
    if run_dir is not None:
        print(f"outputs: {run_dir}")


def _input_error(err: BaseException | None) -> InputError | None:
    """The InputError that caused `err`, if any (jsonargparse re-raises errors from constructors)."""
    while err is not None and not isinstance(err, InputError):
        err = err.__cause__ or err.__context__
    return err


def _finish_wandb() -> None:
    """Close the W&B run and wait until its offline record is written (`finish` alone returns earlier),
    so the record is complete and W&B's closing messages come before the `outputs:` line."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
        wandb.teardown()
