"""A stored copy of what `options` says about the shipped classes (options_index.json), so that `options` answers
without importing torch or Lightning, whose import alone takes seconds.

The index holds each shipped class's record (`options.ClassInfo`: its options as jsonargparse reads them, its
docstring's summary) and the SHA-1 of every source file the records were read from: the modules of the classes
and of their dip_lightning base classes, and the modules that list the shipped classes. It is used while those
files are unchanged; otherwise `options` reads the classes themselves (slower, the same answer).
`python -m dip_lightning.options_index` rewrites it; tests/test_options.py fails while it is out of date.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from dataclasses import asdict
from functools import cache
from pathlib import Path

from .options import KINDS, ClassInfo, Option, class_info, shipped_classes

INDEX = Path(__file__).with_name("options_index.json")
ROOT = Path(__file__).resolve().parents[1]  # the folder holding the dip_lightning package


def _digest(relative: str) -> str | None:
    path = ROOT / relative
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None


def _relative(module_name: str) -> str | None:
    """The source file of a module, relative to ROOT (None outside it: a library's)."""
    file = inspect.getsourcefile(importlib.import_module(module_name))
    path = Path(file).resolve() if file else None
    return path.relative_to(ROOT).as_posix() if path is not None and path.is_relative_to(ROOT) else None


def build() -> dict:
    """The index, read from the classes themselves (imports every shipped class)."""
    records, modules = [], set()
    for kind in KINDS:
        modules.update(kind.modules)
        for cls in shipped_classes(kind).values():
            records.append(asdict(class_info(cls)))
            modules.update(base.__module__ for base in cls.__mro__ if base.__module__.startswith("dip_lightning"))
    files = sorted(filter(None, (_relative(module) for module in modules)))
    return {"sources": {file: _digest(file) for file in files}, "classes": records}


@cache
def load() -> tuple[ClassInfo, ...] | None:
    """The stored records, or None when the index is missing or any of its source files has changed since."""
    try:
        index = json.loads(INDEX.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if any(_digest(file) != digest for file, digest in index["sources"].items()):
        return None
    return tuple(ClassInfo(**{**record, "options": tuple(Option(**option) for option in record["options"])})
                 for record in index["classes"])


def main() -> None:
    """Rewrite options_index.json from the classes."""
    INDEX.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {INDEX}")


if __name__ == "__main__":
    main()
