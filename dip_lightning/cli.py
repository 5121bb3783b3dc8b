"""`python -m dip_lightning COMMAND ...`: the command line of dip_lightning.

COMMANDS names every command with its one-line summary: `fit` is a LightningCLI (a task with its network
and strategy, a datamodule, a Trainer); the others are plain functions of their arguments. Options of
every command: `--threads N` (CPU threads, see `threads.py`) and `--verbose` (the parser's full report on
a config error). A bare config name is looked up in `configs/`. Each run writes into its own directory
under `trainer.default_root_dir` (a resumed run into the directory of its checkpoint); the last line
printed is `outputs: <run dir>`.
"""

from __future__ import annotations

import os
import contextlib
import difflib
import importlib
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonargparse
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from .distributed import RUN_DIR_ENV, chain_strategy, process_count, shared_run_dir
from .artifacts import run_dir_of_checkpoint
from .callbacks import RunCheckpoint, StepProgressBar, StopOnInterrupt
from .config_errors import explain
from .errors import InputError
from .logging import wandb_logger
from .quiet import silence_library_noise
from .tasks import RestorationTask
from .threads import apply_threads, default_threads

PROG = "python -m dip_lightning"
CONFIG_DIRS = (Path.cwd() / "configs", Path(__file__).resolve().parents[1] / "configs")
INTERRUPTED_STATUS = 130  # the shell's status for a process stopped by Ctrl+C (128 + SIGINT)


@dataclass(frozen=True)
class Command:
    """A command: its one-line summary for `--help`, and its function as "module:function". The function
    takes the arguments after the command's name and returns the run directory it wrote, or None."""

    summary: str
    target: str

    def run(self, argv: list[str]) -> Path | None:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)(argv)


COMMANDS: dict[str, Command] = {
    "fit": Command("restore an image or signal: fit a task's network with a strategy (SGD + early stopping, "
                   "or SGLD)", "dip_lightning.cli:fit"),
    "gp": Command("restore an image by GP inference with the DIP kernel (or an RBF one): no network training",
                  "dip_lightning.gp.cli:main"),
    "options": Command("list the options of a task, strategy, network or datamodule, with their flags",
                       "dip_lightning.options:main"),
    "sweep": Command("run a W&B sweep file (grid or random) offline: every run, resumable, with a summary table "
                     "and heat map", "dip_lightning.sweep:main"),
    "bench": Command("the papers' tables: configs x images x seeds, one row per config, one column per image",
                     "dip_lightning.bench:main"),
}
"""Every command, in the order `--help` lists them: a new command is one entry here."""


def usage() -> str:
    """The top-level help: every command with its summary, the options of every command, examples."""
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items())
    return f"""usage: {PROG} COMMAND [--config FILE] [--KEY=VALUE ...]

Deep Image Prior restoration with Bayesian inference (SGLD, GP view), on PyTorch Lightning.

commands:
{commands}

options of every command:
  --threads N  CPU threads for torch (default here: {default_threads()}, half the CPUs; OMP_NUM_THREADS, if set, wins)
  --verbose    on a config error, print the parser's full report too
  -h, --help   this list; `{PROG} COMMAND --help` lists a command's own options

examples:
  {PROG} fit --config denoise.yaml                  # configs/denoise.yaml; each option can follow
  {PROG} fit --config denoise.yaml --print_config   # every option of the run, with its value
  {PROG} options --config inpaint.yaml              # the task, strategy, network and data options
  {PROG} options SGLD                               # one class's options, with their flags"""


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


def pop_common_options(argv: list[str]) -> tuple[list[str], int | None, bool]:
    """Take `--threads N` / `--threads=N` and `--verbose` out of `argv`: (the rest, threads, verbose)."""
    rest, threads, verbose = [], None, False
    args = iter(argv)
    for arg in args:
        if arg == "--verbose":
            verbose = True
        elif arg == "--threads" or arg.startswith("--threads="):
            value = arg.split("=", 1)[1] if "=" in arg else next(args, "")
            if not value.isdigit():
                raise InputError(f"--threads expects a number of threads, got {value!r}")
            threads = int(value)
        else:
            rest.append(arg)
    return rest, threads, verbose


class Interrupted(Exception):
    """A run stopped by Ctrl+C; `run_dir` holds what it saved (None: nothing was fitted)."""

    def __init__(self, run_dir: Path | None) -> None:
        super().__init__(run_dir)
        self.run_dir = run_dir


class LogConfigCallback(SaveConfigCallback):
    """Saves config.yaml in the run directory and sends the whole resolved config to the loggers
    (W&B otherwise sees only the task's own hyperparameters, not net width/depth or the strategy).

    The saved config has no `ckpt_path`: rerunning it (`--config <run dir>/config.yaml`) is a fresh run.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.config = self.config.clone()
        self.config.ckpt_path = None
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        config = self.config.as_dict()
        config.pop("config", None)
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class DIPCLI(LightningCLI):
    """The `fit` command: LightningCLI with a run directory per run (a resumed run continues its own), W&B
    (offline without an account), checkpoints for resuming, and a Ctrl+C that stops after the current step."""

    run_dir: Path | None = None
    resumed = False

    def __init__(self) -> None:
        self.stop_on_interrupt = StopOnInterrupt()
        jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        parser_kwargs = {"parser_mode": "omegaconf+", "exit_on_error": False, "prog": PROG}
        description = (f"Fit a task's network to one image or signal. The options of the task, strategy, network and "
                       f"data in a config, with their flags: {PROG} options --config FILE")
        super().__init__(
            RestorationTask,
            LightningDataModule,  # any datamodule with `image` and `is_observation` (ImageData, SignalData)
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},  # a resumed run writes its config again
            parser_kwargs={**parser_kwargs, "fit": {**parser_kwargs, "prog": f"{PROG} fit",
                                                    "description": description}},
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

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only `fit`: a task fits one problem, it has no validation, test or prediction loop."""
        return {"fit": LightningCLI.subcommands()["fit"]}

    def parse_arguments(self, parser, args) -> None:
        """Parse; a config error becomes a short InputError (the parser's report stays its cause)."""
        try:
            super().parse_arguments(parser, args)
        except jsonargparse.ArgumentError as err:
            parsers = (parser, *getattr(self, "_subcommand_parsers", {}).values())
            flags = [flag for p in parsers for action in p._actions for flag in action.option_strings]
            raise InputError(explain(str(err), flags)) from err

    def instantiate_trainer(self, **kwargs):
        """Build the problem (bad input fails here, before anything is written), choose the run directory (one
        for all processes) and put the logger, checkpoints and artifacts in it; several processes get the
        independent-chains strategy (no gradient averaging)."""
        self.model.build_problem(self.datamodule)
        config = self._get(self.config_init, "trainer", default={})
        name = f"{type(self.model).__name__.lower()}-{self.model.strategy.name}"
        processes = process_count(config.get("accelerator"), config.get("devices"), config.get("num_nodes") or 1)
        if processes > 1:
            kwargs["strategy"] = chain_strategy(config.get("strategy", "auto"))
        self.run_dir = self._choose_run_dir(config.get("default_root_dir") or "outputs", name, processes)
        kwargs["default_root_dir"] = str(self.run_dir)
        if config.get("logger") in (None, True):
            kwargs["logger"] = wandb_logger(self.run_dir, name)
        callbacks = [*(config.get("callbacks") or []), self.stop_on_interrupt]
        if config.get("enable_progress_bar") is not False and not any(
                isinstance(c, TQDMProgressBar) for c in callbacks):
            callbacks.append(StepProgressBar(refresh_rate=10))
        if config.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(RunCheckpoint(self.run_dir / "checkpoints"))
        kwargs["callbacks"] = callbacks
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as err:  # trainer options: e.g. an accelerator not here
            self._discard_run()
            raise InputError(str(err).strip().splitlines()[0]) from err

    def _choose_run_dir(self, root: str, name: str, processes: int) -> Path:
        """The checkpoint's run directory when resuming one (`--ckpt_path <run dir>/checkpoints/...`), else a
        new one, shared by the run's `processes`."""
        checkpoint = self._get(self.config, "ckpt_path")
        if checkpoint is None:
            return shared_run_dir(root, name, processes)
        if not Path(checkpoint).is_file():
            raise InputError(f"checkpoint not found: {checkpoint} (a run saves <run dir>/checkpoints/last.ckpt)")
        run_dir = run_dir_of_checkpoint(checkpoint)
        if run_dir is None:
            print(f"notice: {checkpoint} is not in a run directory (<run dir>/checkpoints/): the resumed run "
                  f"writes a new one")
            return shared_run_dir(root, name, processes)
        self.resumed = True
        return run_dir

    def _discard_run(self) -> None:
        """Leave nothing of a run that failed before producing anything: its W&B record and new directory."""
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _finish_wandb()  # W&B would write its record (and suggest syncing it) after the directory is gone
        if self.run_dir is not None and not self.resumed and not (self.run_dir / "metrics.json").exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; bad input leaves no directory behind; a Ctrl+C ends it with what it saved."""
        try:
            super()._run_subcommand(subcommand)
        except Exception as err:
            if _input_error(err) and self.trainer.is_global_zero:
                self._discard_run()
            raise
        except SystemExit:  # Lightning exits after a second Ctrl+C, once the callbacks have saved the results
            if not self.trainer.is_global_zero:
                raise
            if not (self.run_dir / "metrics.json").exists():  # stopped before the first step
                self._discard_run()
                raise Interrupted(None) from None
            raise Interrupted(self.run_dir) from None
        finally:
            os.environ.pop(RUN_DIR_ENV, None)  # the next run in this process gets its own directory
        if self.stop_on_interrupt.interrupted and self.trainer.is_global_zero:
            raise Interrupted(self.run_dir)


def fit(argv: list[str]) -> Path | None:
    """The `fit` command: returns the run directory; raises Interrupted after a Ctrl+C."""
    sys.argv[1:] = ["fit", *argv]  # LightningCLI parses sys.argv, and DDP's launcher runs it again for each rank
    cli = DIPCLI()
    return cli.run_dir if cli.trainer.is_global_zero else None  # rank 0 alone reports


def _fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m dip_lightning` and the `dip-lightning` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    run_dir = verbose = None
    try:
        argv, threads, verbose = pop_common_options(argv)
        if not argv or argv[0] in ("-h", "--help"):
            print(usage())
            sys.exit(0 if argv else 2)
        if argv[0] not in COMMANDS:
            close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
            raise InputError(f"unknown command {argv[0]!r}: {f'did you mean {close[0]}? ' if close else ''}choose one "
                             f"of {', '.join(COMMANDS)} ({PROG} --help says what each does)")
        apply_threads(threads)
        silence_library_noise()
        run_dir = COMMANDS[argv[0]].run(resolve_config_args(argv[1:]))
    except Interrupted as stop:
        _finish_wandb()
        if stop.run_dir is None:
            _fail("interrupted before the first step: nothing was saved", INTERRUPTED_STATUS)
        print(f"interrupted: the results so far are saved; resume with "
              f"--ckpt_path={stop.run_dir / 'checkpoints' / 'last.ckpt'}\noutputs: {stop.run_dir}")
        sys.exit(INTERRUPTED_STATUS)
    except Exception as err:  # noqa: BLE001  (bad input may arrive wrapped by jsonargparse)
        cause = _input_error(err)
        if cause is None:
            raise
        if verbose and cause.__cause__ is not None:
            print(cause.__cause__, file=sys.stderr)
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
