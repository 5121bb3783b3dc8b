"""`python -m dip_lightning COMMAND ...`: the command line of dip_lightning.

COMMANDS names every command with its one-line summary: `fit` is a LightningCLI (fit.py: a task with its
network and strategy, a datamodule, a Trainer); the others are plain functions of their arguments, each
imported when it runs, so that this module imports neither torch nor Lightning and `--help` answers at once.
Options of every command: `--threads N` (CPU threads, see `threads.py`) and `--verbose` (the parser's full
report on a config error). Commands that run torch keep freed memory in the heap (`allocator.py`). A bare
config name is looked up in `configs/`, and a config file that is not valid YAML is refused with its line.
Each run writes into its own directory under `trainer.default_root_dir` (a resumed run into the directory of
its checkpoint); the last line printed is `outputs: <run dir>`. Exit status: 0, 2 for bad input (one or two
`error:` lines), 1 for a run that finished without a valid result (its files written), 130 after Ctrl+C.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from .allocator import keep_freed_memory
from .config_errors import check_yaml
from .errors import InputError
from .quiet import one_line_warnings, silence_library_noise
from .resume import resume_command
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
    runs_torch: bool = True  # `--threads` applies (False: the command only reads files, and starts faster)

    def run(self, argv: list[str]) -> Path | None:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)(argv)


COMMANDS: dict[str, Command] = {
    "fit": Command("restore an image or signal: fit a task's network with a strategy (SGD + early stopping, "
                   "or SGLD)", "dip_lightning.fit:fit"),
    "gp": Command("restore an image by GP inference with the DIP kernel (or an RBF one): no network training",
                  "dip_lightning.gp.cli:main"),
    "options": Command("list the options of a task, strategy, network or datamodule, with their flags",
                       "dip_lightning.options:main", runs_torch=False),
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
    """Replace each `--config NAME` / `--config=NAME` / `-c NAME` value by the config's path (its YAML checked:
    a syntax error is named with its file and line), and each `--key=None` by `--key=null` (W&B's sweep agents
    write a null value as Python's None)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args) and "\n" not in args[i + 1]:  # not YAML text (a resume's)
            args[i + 1] = check_yaml(find_config(args[i + 1]))
        elif arg.startswith("--config="):
            args[i] = "--config=" + check_yaml(find_config(arg.split("=", 1)[1]))
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


class RunFailed(Exception):
    """A run that finished and wrote its results in `run_dir` but has no valid result (e.g. a sampler that took
    no posterior sample); the message says why and what to change."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


def _fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m dip_lightning` and the `dip-lightning` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    run_dir = verbose = threads = None
    try:
        argv, threads, verbose = pop_common_options(argv)
        if not argv or argv[0] in ("-h", "--help"):
            print(usage())
            sys.exit(0 if argv else 2)
        if argv[0] not in COMMANDS:
            close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
            raise InputError(f"unknown command {argv[0]!r}: {f'did you mean {close[0]}? ' if close else ''}choose one "
                             f"of {', '.join(COMMANDS)} ({PROG} --help says what each does)")
        command, args = COMMANDS[argv[0]], resolve_config_args(argv[1:])
        if command.runs_torch:
            apply_threads(threads)
            keep_freed_memory()
            silence_library_noise()
            one_line_warnings()
        run_dir = command.run(args)
    except Interrupted as stop:
        finish_wandb()
        if stop.run_dir is None:
            _fail("interrupted before the first step: nothing was saved", INTERRUPTED_STATUS)
        common = [f"--threads={threads}"] if threads is not None else []
        print(f"interrupted: the results so far are saved; resume with: {resume_command(stop.run_dir, common)}\n"
              f"outputs: {stop.run_dir}")
        sys.exit(INTERRUPTED_STATUS)
    except RunFailed as failed:
        finish_wandb()
        print(f"outputs: {failed.run_dir}")
        _fail(str(failed), 1)
    except Exception as err:  # noqa: BLE001  (bad input may arrive wrapped by jsonargparse)
        cause = input_error(err)
        if cause is None:
            raise
        if verbose and cause.__cause__ is not None:
            print(cause.__cause__, file=sys.stderr)
        _fail(str(cause))
    finally:
        finish_wandb()
    if run_dir is not None:
        print(f"outputs: {run_dir}")


def input_error(err: BaseException | None) -> InputError | None:
    """The InputError that caused `err`, if any (jsonargparse re-raises errors from constructors)."""
    while err is not None and not isinstance(err, InputError):
        err = err.__cause__ or err.__context__
    return err


def finish_wandb() -> None:
    """Close the W&B run and wait until its offline record is written (`finish` alone returns earlier),
    so the record is complete and W&B's closing messages come before the `outputs:` line."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
        wandb.teardown()
