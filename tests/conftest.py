"""Shared helpers: run the real CLI in-process on tiny problems (small image, narrow net, few steps)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch

from dip_lightning.cli import main

TINY = [
    "--data.crop=32",
    "--model.net.width=8",
    "--model.net.depth=2",
    "--trainer.max_steps=30",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
]


def run_cli(capsys, *args: str) -> tuple[Path | None, str, str, int]:
    """Run `python -m dip_lightning ARGS` in-process; returns (run dir, stdout, stderr, exit code)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    run_dir = Path(lines[-1].split("outputs: ", 1)[1]) if lines and lines[-1].startswith("outputs: ") else None
    return run_dir, out, err, code


def tiny_args(config: str) -> list[str]:
    """TINY for `config`; a 1D-signal config (no image to crop) gets a short signal instead, and
    sgld_denoise.yaml (two chains shipped) one chain unless a test asks for more."""
    if "signal1d" in config:
        return ["--data.length=64" if arg == "--data.crop=32" else arg for arg in TINY]
    if Path(config).stem == "sgld_denoise":
        return [*TINY, "--model.strategy.chains=1"]
    return TINY


def fit_tiny(capsys, tmp_path: Path, *args: str, config: str = "denoise.yaml") -> tuple[Path, dict]:
    """A tiny fit of `config` (denoising by default) through the CLI; returns (run dir, metrics.json)."""
    run_dir, out, err, code = run_cli(capsys, "fit", "--config", config, *tiny_args(config),
                                      f"--trainer.default_root_dir={tmp_path}", *args)
    assert code == 0, err
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


class CtrlCAt(L.Callback):
    """Presses Ctrl+C (sends this process SIGINT) during step `step`, `times` times."""

    def __init__(self, step: int, times: int = 1) -> None:
        self.step = step
        self.times = times

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


class RaiseAt(L.Callback):
    """Fails (RuntimeError) at the start of step `step`: a run that breaks down part of the way through."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 == self.step:
            raise RuntimeError(f"broken at step {self.step}")


def file_hashes(folder: Path) -> dict[str, str]:
    """{relative path: SHA-256} of every file under `folder`: equal dicts mean byte-identical contents."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """Every test runs torch on one thread, and so do the processes it starts (OMP_NUM_THREADS): a fitted result
    depends on the thread count (float rounding), so pinning it makes each test repeat exactly on a machine,
    whatever its core count, its load, or the thread count an earlier test left behind."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class KickChain(L.Callback):
    """Adds N(0, 1) noise to every parameter of chain `chain` at the start of step `step`: that step's output
    leaves any band around the observation."""

    def __init__(self, step: int, chain: int = 0) -> None:
        self.step = step
        self.chain = chain

    @torch.no_grad()
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 == self.step:
            for param in pl_module.net.parameters():
                param[self.chain].add_(torch.randn_like(param[self.chain]))
