"""`python -m dip_lightning options [NAME ...] [--config FILE]`: the options of a task, strategy, network or
datamodule, each with the command-line flag that sets it in a `fit` run, its type, default and meaning.

`options Inpaint SGLD` shows those two classes; `options --config inpaint.yaml` the four classes a config
uses, with the config's values; `options` alone lists the shipped classes of each kind.

The shipped classes are described by `ClassInfo` records read from `options_index.json` while it is up to date
(`options_index`: no torch or Lightning import, so `options` answers in a fraction of a second), else from the
classes themselves; any other class (`module.Class`) is always imported and read.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import InputError

PROG = "python -m dip_lightning options"


@dataclass(frozen=True)
class Kind:
    """A kind of configurable class: where its shipped classes live and the flag prefix of its options."""

    label: str
    plural: str
    base: str  # import path of the base class
    modules: tuple[str, ...]  # modules exporting the shipped classes
    key: str  # config key: its options are `--<key>.<name>`


KINDS = (
    Kind("task", "tasks", "dip_lightning.tasks.RestorationTask", ("dip_lightning.tasks",), "model"),
    Kind("strategy", "strategies", "dip_lightning.strategies.Strategy", ("dip_lightning.strategies",),
         "model.strategy"),
    Kind("network", "networks", "torch.nn.Module", ("dip_lightning.nets",), "model.net"),
    Kind("datamodule", "datamodules", "lightning.pytorch.LightningDataModule",
         ("dip_lightning.data", "dip_lightning.signals"), "data"),
)
TASK_PARTS = {"net": ("network", "SkipNet"), "strategy": ("strategy", "SGD")}
"""A task's options that take a class: their kind and the class used when they are null."""
NETWORK_CALL_ARGS = ("in_channels", "out_channels")  # given by the task when it builds the network, not options


@dataclass(frozen=True)
class Option:
    """One constructor argument: `name`, its type and default as text, and the docstring's line on it."""

    name: str
    type: str
    default: str
    help: str


@dataclass(frozen=True)
class ClassInfo:
    """What `options` says about a class: its `name`, the `path` it is imported by (module.Class, the module that
    defines it), its kind's label, the first line and the first paragraph of its docstring, and its options."""

    name: str
    path: str
    kind: str
    headline: str
    summary: str
    options: tuple[Option, ...]

    @property
    def kind_info(self) -> Kind:
        return next(kind for kind in KINDS if kind.label == self.kind)


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _is_concrete(cls: type) -> bool:
    """No abstract method left (LightningModule subclasses are not ABCs, so inspect.isabstract cannot tell)."""
    return not any(getattr(getattr(cls, name, None), "__isabstractmethod__", False) for name in dir(cls))


def shipped_classes(kind: Kind) -> dict[str, type]:
    """The concrete classes of `kind` that dip_lightning ships, by class name (imports them)."""
    base = _import(kind.base)
    found = {}
    for module_name in kind.modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", dir(module)):
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, base) and value.__module__.startswith("dip_lightning") \
                    and _is_concrete(value):
                found[name] = value
    return found


def shipped(kind: Kind) -> dict[str, ClassInfo]:
    """The records of the concrete classes of `kind` that dip_lightning ships, by class name: from the index while
    it is up to date, else from the classes."""
    from .options_index import load

    index = load()
    if index is not None:
        return {info.name: info for info in index if info.kind == kind.label}
    return {name: class_info(cls) for name, cls in shipped_classes(kind).items()}


def class_info(cls: type) -> ClassInfo:
    """The record of a class, read from the class itself."""
    doc = inspect.getdoc(cls) or ""
    return ClassInfo(cls.__name__, f"{cls.__module__}.{cls.__name__}", kind_of(cls).label, doc.split("\n", 1)[0],
                     doc.split("\n\n", 1)[0].replace("\n", " "), tuple(class_options(cls)))


def kind_of(cls: type) -> Kind:
    """The kind a class belongs to (the first whose base it subclasses)."""
    for kind in KINDS:
        if issubclass(cls, _import(kind.base)):
            return kind
    raise InputError(f"{cls.__module__}.{cls.__qualname__} is not a task, strategy, network or datamodule")


def find_class(name: str) -> ClassInfo:
    """A shipped class by name (any case) or by either import path (`dip_lightning.strategies.SGLD`,
    `dip_lightning.strategies.sgld.SGLD`), or any class by import path `module.Class`."""
    classes = {key: info for kind in KINDS for key, info in shipped(kind).items()}
    by_lower = {key.lower(): info for key, info in classes.items()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    for kind in KINDS:  # the path a config names: the kind's module, then the class
        for module in kind.modules:
            if name.startswith(f"{module}.") and name.removeprefix(f"{module}.") in classes:
                return classes[name.removeprefix(f"{module}.")]
    by_path = {info.path: info for info in classes.values()}
    if name in by_path:
        return by_path[name]
    if "." in name:
        try:
            return class_info(_import(name))
        except (ImportError, AttributeError, ValueError):
            raise InputError(f"cannot import {name!r}: give module.Class importable from the Python path") from None
    close = difflib.get_close_matches(name, list(classes), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    raise InputError(f"no class named {name!r}: {hint}choose one of {', '.join(classes)} or give module.Class")


def _type_text(action: argparse.Action) -> str:
    hint = getattr(action, "_typehint", None)
    text = getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")
    return (text or "").replace("NoneType", "None")


def _default_text(value) -> str:
    if isinstance(value, dict) and "class_path" in value:
        return value["class_path"].rsplit(".", 1)[-1]
    return "null" if value is None else str(value)


def class_options(cls: type) -> list[Option]:
    """The options of `cls`'s constructor as jsonargparse sees them (so `**kwargs` passed to a parent class are
    included), in signature order; a network's two call arguments are left out."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(cls, "x", sub_configs=True)
    skip = NETWORK_CALL_ARGS if kind_of(cls).label == "network" else ()
    options = []
    for action in parser._actions:
        name = action.dest.removeprefix("x.")
        if not action.dest.startswith("x.") or "." in name or name in skip or action.help == argparse.SUPPRESS:
            continue
        options.append(Option(name, _type_text(action), _default_text(action.default),
                              " ".join((action.help or "").split())))
    return options


def describe(info: ClassInfo, values: dict | None = None, width: int | None = None) -> str:
    """The options of a class with their flags, types, defaults (or the config's `values`) and help."""
    kind = info.kind_info
    width = width or min(120, shutil.get_terminal_size((100, 24)).columns)
    lines = [f"{info.name} ({kind.label}, {info.path}): {info.summary}"]
    for option in info.options:
        value = (values or {}).get(option.name, option.default)
        if isinstance(value, dict):
            value = _default_text(value)
        flag = f"  --{kind.key}.{option.name}={value}"
        meaning = option.help or "(no description)"
        if option.name in TASK_PARTS and kind.label == "task":
            part, fallback = TASK_PARTS[option.name]
            names = ", ".join(shipped(next(k for k in KINDS if k.label == part)))
            shown = fallback if value == "null" else value
            meaning = f"{meaning} One of {names} or module.Class; its options: {PROG} {shown}"
        else:
            meaning = f"{option.type}. {meaning}"
        lines.append(flag)
        lines.extend(textwrap.wrap(meaning, width=width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines)


def config_classes(path: str) -> list[tuple[ClassInfo, dict]]:
    """The task, strategy, network and datamodule a config names, each with the init_args it gives."""
    from .cli import find_config

    config = yaml.safe_load(Path(find_config(path)).read_text()) or {}
    model = config.get("model") or {}
    model_args = model.get("init_args") or {}
    found = []
    for section in (model, model_args.get("strategy"), model_args.get("net"), config.get("data")):
        if isinstance(section, dict) and section.get("class_path"):
            found.append((find_class(section["class_path"]), section.get("init_args") or {}))
    return found


def overview() -> str:
    """The shipped classes of every kind, one line each, and how to see their options."""
    lines = [f"usage: {PROG} NAME [NAME ...] | --config FILE", ""]
    for kind in KINDS:
        lines.append(f"{kind.plural} (options --{kind.key}.NAME):")
        for name, info in shipped(kind).items():
            lines.append(f"  {name:<16} {info.headline}")
    lines += ["", f"e.g. {PROG} Inpaint SGLD, or {PROG} --config inpaint.yaml for a config's classes with its values"]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Print the options of the classes named in `argv` (or of a config's classes); nothing else happens."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="class names (Inpaint, SGLD, SkipNet, ImageData, ...) or module.Class")
    parser.add_argument("--config", "-c", help="a config: show the options of the classes it uses, with its values")
    args = parser.parse_args(argv)
    if not args.names and not args.config:
        print(overview())
        return
    sections = [(find_class(name), {}) for name in args.names]
    sections += config_classes(args.config) if args.config else []
    print("\n\n".join(describe(cls, values) for cls, values in sections))
