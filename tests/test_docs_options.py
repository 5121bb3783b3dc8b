"""Docs name only options that exist: every `model.…`, `data.…` and `trainer.…` option the README, docs/ and the
configs' comments mention is a parameter of a task, strategy, network, datamodule or the Trainer."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L

from dip_lightning import data, nets, signals, strategies, tasks

ROOT = Path(__file__).resolve().parents[1]
OPTION = re.compile(r"(?<![\w.])(?:--)?((?:model|data|trainer)(?:\.[a-z_][a-z0-9_]*)+)")


def _parameters(*classes: type) -> set[str]:
    names: set[str] = set()
    for cls in classes:
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                names |= set(inspect.signature(klass.__init__).parameters) - {"self", "args", "kwargs"}
    return names


def _exported(module) -> list[type]:
    return [getattr(module, name) for name in module.__all__ if inspect.isclass(getattr(module, name))]


KNOWN = {
    "model.strategy": _parameters(*_exported(strategies)),
    "model.net": _parameters(*_exported(nets)),
    "model": _parameters(*_exported(tasks)),
    "data": _parameters(data.ImageData, signals.SignalData),
    "trainer": _parameters(L.Trainer),
}
"""Options by section; a name after a known option's dots (`trainer.logger.init_args.save_dir`) is its own."""


def unknown_options(text: str) -> list[str]:
    """The options `text` names that no class takes."""
    unknown = []
    for option in OPTION.findall(text):
        parts = option.split(".")
        section = "model.strategy" if parts[:2] == ["model", "strategy"] else \
            "model.net" if parts[:2] == ["model", "net"] else parts[0]
        rest = parts[len(section.split(".")):]
        if rest and rest[0] not in KNOWN[section] and not (section == "model" and rest[0] in ("strategy", "net")):
            unknown.append(option)
    return unknown


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(ROOT.glob("docs/**/*.md")), *sorted(ROOT.glob("configs/**/*.yaml"))]


def test_every_option_the_docs_name_exists():
    found = {str(path.relative_to(ROOT)): bad for path in _documents() if (bad := unknown_options(path.read_text()))}
    assert not found, found


def test_the_option_check_catches_a_misspelt_option():
    text = "use --model.strategy.metropolis=true and model.sigma, not --model.strategy.metropolis_adjusted or data.zoom"
    assert unknown_options(text) == ["model.strategy.metropolis_adjusted", "data.zoom"]
