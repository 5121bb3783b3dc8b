"""Resuming a run: its own config, a refusal of options that would change its problem, and a resumed part that
changes the run's files only once it has succeeded.

`fit --ckpt_path=<run dir>/checkpoints/last.ckpt` needs no other option: every checkpoint carries the run's
resolved config (`CONFIG_KEY`), which the CLI puts first (`--config <that config>`), so the options given
beside the checkpoint, a `--config` file's included, apply over it. Those that would change what the run
computes (`fixed_options`: the task, network, strategy, data, seed and process count) are refused before
anything is written; the others (`trainer.max_steps` to go on longer, the logger, the progress bar) apply.

A resumed part writes into `<run dir>/.resume/` (`Staging`) and moves its files over the run's only when it
ends normally or is stopped by Ctrl+C; a part that fails leaves the run's files as they were.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

CONFIG_KEY = "dip_lightning_config"
"""The key of the run's resolved config (YAML text, without ckpt_path) in every checkpoint the CLI saves."""

RUNTIME_OPTIONS = frozenset({"model.init_args.image_every_n_steps", "model.init_args.channels_last",
                             "model.init_args.compile"})
"""Options under `model` that change how a run is carried out, not what it computes: a resume may change them."""

PROCESS_OPTIONS = frozenset({"trainer.devices", "trainer.num_nodes"})
"""Trainer options that set the number of processes, so the number of chains and checkpoint files."""


@dataclass(frozen=True)
class Checkpoint:
    """What a resume reads from a checkpoint before anything runs: its path, the step it was saved at and the
    resolved config of its run (None for a checkpoint saved before configs were stored in them)."""

    path: Path
    step: int
    config: str | None


def checkpoint_argument(argv: list[str]) -> str | None:
    """The value of `--ckpt_path=X` / `--ckpt_path X` in a `fit` command line, or None."""
    for i, arg in enumerate(argv):
        if arg.startswith("--ckpt_path="):
            return arg.split("=", 1)[1]
        if arg == "--ckpt_path" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def read_checkpoint(path: str) -> Checkpoint:
    """The step and config of checkpoint `path` (memory-mapped: its tensors are not read); InputError when it is
    missing or is not a checkpoint. The config is the one stored in it, else its run directory's config.yaml."""
    import torch

    file = Path(path)
    if not file.is_file():
        raise InputError(f"checkpoint not found: {path} (a run saves <run dir>/checkpoints/last.ckpt)")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001  (any unreadable file is the same mistake)
        raise InputError(f"cannot read {path} as a checkpoint ({str(err).splitlines()[0]})") from err
    config = checkpoint.get(CONFIG_KEY)
    run_dir = run_dir_of_checkpoint(file)
    if config is None and run_dir is not None:
        config = (run_dir / "config.yaml").read_text()
    return Checkpoint(file, int(checkpoint.get("global_step", 0)), config)


def run_dir_of_checkpoint(checkpoint: str | Path) -> Path | None:
    """The run directory a checkpoint belongs to (`<run dir>/checkpoints/<file>`, beside its config.yaml),
    or None for a checkpoint kept elsewhere."""
    folder = Path(checkpoint).resolve().parent
    run_dir = folder.parent
    return run_dir if folder.name == "checkpoints" and (run_dir / "config.yaml").is_file() else None


def is_fixed(key: str) -> bool:
    """Whether the dotted config `key` is part of what a run computes, which a resume may not change."""
    if key in RUNTIME_OPTIONS:
        return False
    return key == "seed_everything" or key.startswith(("model.", "data.")) or key in PROCESS_OPTIONS


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted key: leaf value}; lists are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def flag(key: str) -> str:
    """The command-line flag of a dotted config key: `model.init_args.net.init_args.width` -> `--model.net.width`,
    `model.init_args.strategy.class_path` -> `--model.strategy`."""
    return "--" + key.removesuffix(".class_path").replace(".init_args.", ".").replace(".init_args", "")


def shown_value(value: Any) -> str:
    """A value as typed on the command line: null, true, 25.0, camera, [1, 2]."""
    if value is None or isinstance(value, (bool, list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    return str(value)


def changed_options(saved: dict, given: dict) -> list[str]:
    """`--flag=given (the run: saved)` for every fixed option whose value in `given` differs from the run's
    `saved` config; a changed class is named once (its options then differ as a matter of course). Options
    the saved config does not have (added to the code since) are not compared."""
    before, after = flatten(saved), flatten(given)
    changed_classes = [key.removesuffix("class_path") for key in before
                       if key.endswith("class_path") and key in after and after[key] != before[key]]
    changes = []
    for key, value in before.items():
        if not is_fixed(key) or key not in after or shown_value(after[key]) == shown_value(value):  # "2" is 2 (devices)
            continue
        if any(key.startswith(prefix) and not key.endswith("class_path") for prefix in changed_classes):
            continue
        changes.append(f"{flag(key)}={shown_value(after[key])} (the run: {shown_value(value)})")
    return changes


def refuse_changes(saved_config: str, given_config: str, run: str) -> None:
    """Refuse (InputError, one line) options that would change the problem of the run saved in `saved_config`."""
    changes = changed_options(yaml.safe_load(saved_config) or {}, yaml.safe_load(given_config) or {})
    if changes:
        raise InputError(f"resuming {run} takes its own config; these options would change its problem: "
                         f"{', '.join(changes)}: leave them out (or start a new run without --ckpt_path)")


def resume_command(run_dir: Path, extra: list[str]) -> str:
    """The command that resumes the run in `run_dir` (with the command-wide options in `extra`)."""
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    return shlex.join(["python", "-m", "dip_lightning", "fit", *extra, f"--ckpt_path={checkpoint}"])


def _rank_of(path: Path) -> int:
    """The process that writes `path`: r for `<name>.rank<r>.<ext>` (distributed.IndependentChains), else 0."""
    found = re.search(r"\.rank(\d+)\.[^.]+$", path.name)
    return int(found.group(1)) if found else 0


class Staging:
    """The folder a resumed part writes into, `<run dir>/.resume/`, laid out like the run directory.

    `commit(rank)` moves the files process `rank` wrote over the run's (each move atomic); `discard` deletes the
    folder and what this part added to the run's W&B folder (its record, and the links W&B moved to it), so a
    part that failed leaves the run's files as they were.
    """

    NAME = ".resume"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.folder = run_dir / self.NAME
        wandb = run_dir / "wandb"
        self._wandb_before = ({entry.name: os.readlink(entry) if entry.is_symlink() else None
                               for entry in wandb.iterdir()} if wandb.is_dir() else {})

    def start(self) -> None:
        """A fresh folder (one left by a part that was killed holds nothing of the run)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir()

    def wrote(self, name: str) -> bool:
        return (self.folder / name).exists()

    def commit(self, rank: int = 0) -> None:
        for file in sorted(self.folder.rglob("*")):
            if file.is_file() and _rank_of(file) == rank:
                target = self.run_dir / file.relative_to(self.folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, target)
        for folder in sorted(self.folder.rglob("*"), reverse=True) + [self.folder]:  # the last process removes it
            try:
                folder.rmdir()
            except OSError:
                pass

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        wandb = self.run_dir / "wandb"
        if not wandb.is_dir():
            return
        for entry in wandb.iterdir():
            if entry.name not in self._wandb_before:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            elif entry.is_symlink() and os.readlink(entry) != self._wandb_before[entry.name]:
                entry.unlink()
                entry.symlink_to(self._wandb_before[entry.name])
