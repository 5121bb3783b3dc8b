"""K chains batched on one device against K one-chain runs one after another, in one process run.

Both fit DIP's skip net (width 64, depth 5) to a noisy crop of `astronaut` with the pSGLD strategy
(posterior sample every 10 steps after a burn-in of half the steps) for the same number of steps per
chain; only the steps after a warm-up are timed. Repeats alternate the two and the fastest repeat of
each counts. The last line is `ratio: X` (time of the batched run / time of the K runs in turn): below 1,
batching is faster.

    python benchmarks/chains.py [--chains 4] [--crop 64] [--steps 200] [--warmup 20] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import functools

import lightning as L
import torch
from step_overhead import StepClock

from dip_lightning.data import ImageData
from dip_lightning.nets import SkipNet
from dip_lightning.strategies import SGLD
from dip_lightning.tasks import Denoise

WIDTH, DEPTH = 64, 5


def time_chains(chains: int, crop: int, steps: int, warmup: int, device: str) -> float:
    """Seconds for `steps - warmup` steps of one run of `chains` batched pSGLD chains."""
    L.seed_everything(0, verbose=False)
    strategy = SGLD("psgld", chains=chains, burn_in=steps // 2, thin=10, max_mse_ratio=float("inf"))
    task = Denoise(net=functools.partial(SkipNet, width=WIDTH, depth=DEPTH), strategy=strategy, reg_noise_std=0.0)
    timer = StepClock(warmup, torch.device(device))
    trainer = L.Trainer(max_steps=steps, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, callbacks=[timer],
                        default_root_dir="/tmp/dip_lightning_benchmark", use_distributed_sampler=False)
    trainer.fit(task, datamodule=ImageData("astronaut", crop=crop))
    return timer.end - timer.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    batched, in_turn = [], []
    for _ in range(args.repeats):
        batched.append(time_chains(args.chains, args.crop, args.steps, args.warmup, args.device))
        in_turn.append(sum(time_chains(1, args.crop, args.steps, args.warmup, args.device) for _ in range(args.chains)))
    timed = args.steps - args.warmup
    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}, crop {args.crop}, skip {WIDTH}x{DEPTH}, "
          f"{args.chains} chains, {args.steps} steps each (timed {timed}), repeats: {args.repeats}")
    for label, values in (("batched", batched), ("in turn", in_turn)):
        print(f"{label:8s} {1e3 * min(values) / timed:8.2f} ms per step of all {args.chains} chains  "
              f"(all: {', '.join(f'{1e3 * t / timed:.2f}' for t in values)})")
    print(f"ratio: {min(batched) / min(in_turn):.3f}")


if __name__ == "__main__":
    main()
