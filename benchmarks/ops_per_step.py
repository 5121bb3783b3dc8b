"""Aten operations dispatched in one training step of `fit` and of the bare loop, per strategy.

On a GPU where DIP's steps are bound by the host (docs/benchmarks.md, "On one GPU"), each dispatched
operation costs host time (12-17 µs each on the H200 machine measured there: a bare loop's time over its count), so this count, taken on
any CPU, says where a step's launches come from. Cases, networks and bare loops are `step_overhead.py`'s;
the step counted is step `--at` + 1 (after the samplers' burn-in of 10 steps; not a log step).

    python benchmarks/ops_per_step.py                      # every strategy, one chain, 64x64
    python benchmarks/ops_per_step.py --strategies psgld --chains 4
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import lightning as L
import torch
from step_overhead import (GUARD_EVERY, LOG_EVERY, STRATEGIES, THIN, Bare, bare_step, jitter_of, net_factory,
                           strategy_of)

from dip_lightning.data import ImageData
from dip_lightning.tasks import Denoise

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from host_sync import OpCounter  # noqa: E402  (the tests' dispatch counter, one for both)

BURN_IN = 10


class CountStep(L.Callback):
    """The operations of step `at` + 1 of a fit, hooks included."""

    def __init__(self, at: int) -> None:
        self.at, self.mode = at, OpCounter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            self.mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at + 1:
            self.mode.__exit__(None, None, None)


def count_fit(name: str, chains: int, size: int, at: int) -> collections.Counter[str]:
    torch.manual_seed(0)
    task = Denoise(net=net_factory(name), strategy=strategy_of(name, chains, BURN_IN), reg_noise_std=jitter_of(name),
                   likelihood="gaussian")
    counter = CountStep(at)
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(max_steps=at + 2 * THIN + 1, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                            callbacks=[counter], default_root_dir=folder)
        trainer.fit(task, datamodule=ImageData("astronaut", crop=size))
    return counter.mode.names


def count_bare(name: str, chains: int, size: int, at: int) -> collections.Counter[str]:
    bare, state = Bare(name, size, chains, torch.device("cpu")), {}
    step_fn = bare_step(name, BURN_IN)
    for step in range(at):
        step_fn(bare, name, step, state)
    with OpCounter() as mode:
        step_fn(bare, name, at, state)
    return mode.names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--at", type=int, default=25, help="count step AT + 1 (> the burn-in of 10)")
    args = parser.parse_args()
    if (args.at <= BURN_IN or any(args.at % period in (0, period - 1) for period in (THIN, LOG_EVERY))
            or args.at % GUARD_EVERY == GUARD_EVERY - 1):
        parser.error(f"--at {args.at}: give a step after the burn-in ({BURN_IN}) that is not a log, sample or guard "
                     f"check step")
    torch.set_num_threads(1)
    print(f"aten operations in step {args.at + 1}, {args.size}x{args.size}, {args.chains} chain(s)")
    print("| strategy | fit | bare | fit / bare | fit's most frequent |\n|---|---|---|---|---|")
    for name in args.strategies:
        fit, bare = count_fit(name, args.chains, args.size, args.at), count_bare(name, args.chains, args.size, args.at)
        top = ", ".join(f"{op.removeprefix('aten::')} {n}" for op, n in fit.most_common(4))
        print(f"| {name} | {fit.total()} | {bare.total()} | {fit.total() / bare.total():.2f} | {top} |", flush=True)


if __name__ == "__main__":
    main()
