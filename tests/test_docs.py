"""Docs that stand alone: every file that a doc, config, help text or docstring names exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from dip_lightning.cli import find_config

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("benchmarks", "callbacks", "configs", "dip_lightning", "docs", "sweeps", "tests")
EXTENSIONS = "md|ya?ml|py|png|npy|npz|csv|json|txt"
PATH = re.compile(rf"(?<![\w/.<-])((?:{'|'.join(FOLDERS)})/[\w./-]*?[\w-]\.(?:{EXTENSIONS}))\b")
MARKDOWN_FILE = re.compile(r"(?<![\w/.<-])([\w-]+\.md)\b")
LINK = re.compile(r"\]\(([^)#\s]+)")
CONFIG = re.compile(r"--config[ =]([\w./-]+\.ya?ml)")


WRITTEN = {"summary.md", "bench.md", "step_size.md", "noise_level.md"}
"""Markdown files the `sweep` and `bench` commands and benchmarks/step_size.py and noise_level.py write into their
output folders."""
MARKDOWN_NAMES = ({p.name for p in ROOT.glob("*.md")} | {p.name for f in FOLDERS for p in (ROOT / f).rglob("*.md")}
                  | WRITTEN)


def _texts() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("docs/**/*.md")]
    for folder in ("configs", "sweeps", "tests"):
        files += ROOT.glob(f"{folder}/**/*.yaml")
    for folder in ("dip_lightning", "callbacks", "benchmarks", "tests"):
        files += ROOT.glob(f"{folder}/**/*.py")
    return sorted(set(files) - {Path(__file__).resolve()})  # not this file: its examples are broken on purpose


def _broken(path: Path) -> list[str]:
    text = path.read_text()
    broken = [ref for ref in PATH.findall(text) if not (ROOT / ref).exists()]
    broken += [name for name in MARKDOWN_FILE.findall(text) if name not in MARKDOWN_NAMES]
    if path.suffix == ".md":
        broken += [link for link in LINK.findall(text)
                   if not link.startswith(("http://", "https://")) and not (path.parent / link).exists()]
    for config in CONFIG.findall(text):
        try:
            find_config(str(ROOT / config) if (ROOT / config).exists() else config)
        except Exception:  # noqa: BLE001
            broken.append(config)
    return broken


def test_every_file_reference_in_docs_configs_and_help_resolves_inside_the_repository():
    broken = {str(path.relative_to(ROOT)): refs for path in _texts() if (refs := _broken(path))}
    assert not broken, broken


def test_the_reference_check_catches_what_it_should(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See NOTES.md, configs/paper/inpaint_bernoulli50.yaml, [a](missing.md), "
                    "`--config no_such.yaml`; fine: docs/gp.md, configs/denoise.yaml, `<run dir>/config.yaml`.")
    assert sorted(_broken(page)) == sorted(["NOTES.md", "configs/paper/inpaint_bernoulli50.yaml", "missing.md",
                                            "missing.md", "no_such.yaml"])
