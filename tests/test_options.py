"""`options` and `--help` answer without importing torch or Lightning: the shipped classes' records come from
options_index.json while it is current, and say what the classes themselves say."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dip_lightning import options, options_index


def test_the_options_index_is_current():
    assert json.loads(json.dumps(options_index.build())) == json.loads(options_index.INDEX.read_text()), (
        "options_index.json is out of date: run `python -m dip_lightning.options_index` and commit it")


@pytest.mark.parametrize("args", [["--help"], ["options"], ["options", "SGLD", "Inpaint"],
                                  ["options", "--config", "sgld_inpaint.yaml"]])
def test_help_and_options_import_neither_torch_nor_lightning(args):
    """What makes them start in a fraction of a second: importing torch alone takes seconds on a small machine."""
    code = (f"import sys\nfrom dip_lightning.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as stop:\n"
            f"    assert not stop.code, stop.code\n"
            f"print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]


def test_a_stale_index_is_not_used_and_the_classes_say_the_same(monkeypatch, tmp_path):
    stored = json.loads(options_index.INDEX.read_text())
    stored["sources"]["dip_lightning/tasks/base.py"] = "0" * 40  # as if the file had changed since
    (tmp_path / "index.json").write_text(json.dumps(stored))
    indexed = {kind.label: options.shipped(kind) for kind in options.KINDS}
    monkeypatch.setattr(options_index, "INDEX", tmp_path / "index.json")
    options_index.load.cache_clear()
    try:
        assert options_index.load() is None
        live = {kind.label: options.shipped(kind) for kind in options.KINDS}
    finally:
        options_index.load.cache_clear()
    assert live == indexed
    assert options.describe(live["strategy"]["SGLD"]) == options.describe(indexed["strategy"]["SGLD"])
