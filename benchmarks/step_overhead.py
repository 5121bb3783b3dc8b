"""Per-step cost of `fit` against a bare hand-written PyTorch loop, in one process run.

Both fit DIP's skip net (width 64, depth 5) to a noisy 64x64 crop of `astronaut` with Adam (lr 0.01)
and input jitter, for the same number of steps; only the steps after a warm-up are timed (no set-up,
no artifact writing). `fit` runs the default SGD strategy: fixed stopping, EMA, PSNR and best-output
tracking, backtracking, the non-finite guard, logging and the progress bar, with the bare loop's loss
(`likelihood="gaussian"`: the framework's overhead, not the censored likelihood's extra cost). It also times the SGLD
strategy's step (Langevin noise, divergence guard, posterior accumulation at every step: the worst case)
for each sampler against the SGD strategy's step. Repeats alternate all runs and the fastest repeat of
each counts. The last line is `ratio: X` (fit step time / bare step time).

    python benchmarks/step_overhead.py [--steps 300] [--warmup 50] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import functools
import time

import lightning as L
import torch

from dip_lightning.data import ImageData
from dip_lightning.nets import SkipNet
from dip_lightning.strategies import SGD, SGLD
from dip_lightning.tasks import Denoise

WIDTH, DEPTH, CROP, LR, JITTER = 64, 5, 64, 0.01, 1 / 30
SAMPLERS = ("psgld", "sgld", "paper")


class StepTimer(L.Callback):
    """Wall time from the start of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self.end = time.perf_counter()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fit(steps: int, warmup: int, device: str, strategy=None) -> float:
    """Seconds per step of `Trainer.fit` on the benchmark problem."""
    torch.manual_seed(0)
    task = Denoise(net=functools.partial(SkipNet, width=WIDTH, depth=DEPTH), strategy=strategy or SGD(lr=LR),
                   reg_noise_std=JITTER, likelihood="gaussian")
    timer = StepTimer(warmup)
    trainer = L.Trainer(max_steps=steps, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, callbacks=[timer, L.pytorch.callbacks.TQDMProgressBar(10)],
                        default_root_dir="/tmp/dip_lightning_benchmark", use_distributed_sampler=False)
    trainer.fit(task, datamodule=ImageData("astronaut", crop=CROP))
    return (timer.end - timer.start) / (steps - warmup)


def time_bare(steps: int, warmup: int, device: str) -> float:
    """Seconds per step of the plain DIP loop: jitter, forward, MSE, backward, Adam step."""
    torch.manual_seed(0)
    clean = ImageData("astronaut", crop=CROP).image[None].to(device)
    noisy = (clean + torch.randn_like(clean) * 25 / 255).clamp(0, 1)
    net = SkipNet(32, 3, width=WIDTH, depth=DEPTH).to(device)
    z = torch.rand(1, 32, CROP, CROP, device=device) * 0.1
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    for step in range(steps):
        if step == warmup:
            _sync(torch.device(device))
            start = time.perf_counter()
        optimizer.zero_grad()
        loss = torch.mean((net(z + JITTER * torch.randn_like(z)) - noisy) ** 2)
        loss.backward()
        optimizer.step()
    _sync(torch.device(device))
    return (time.perf_counter() - start) / (steps - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in ("bare", "sgd", *SAMPLERS)}
    for _ in range(args.repeats):
        times["bare"].append(time_bare(args.steps, args.warmup, args.device))
        times["sgd"].append(time_fit(args.steps, args.warmup, args.device))
        for sampler in SAMPLERS:  # sampling every step (burn_in 0, thin 1): the worst case; the guard never stops
            strategy = SGLD(sampler, burn_in=0, thin=1, max_mse_ratio=float("inf"))
            times[sampler].append(time_fit(args.steps, args.warmup, args.device, strategy))
    best = {name: min(values) for name, values in times.items()}
    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}, steps: {args.steps} "
          f"(timed {args.steps - args.warmup}), repeats: {args.repeats}")
    for name, values in times.items():
        label = "bare loop" if name == "bare" else f"fit {name}"
        print(f"{label:10s} {1e3 * best[name]:7.2f} ms/step  (all: {', '.join(f'{1e3 * t:.2f}' for t in values)})")
    for sampler in SAMPLERS:
        print(f"sgld step / sgd step ({sampler}): {best[sampler] / best['sgd']:.3f}")
    print(f"ratio: {best['sgd'] / best['bare']:.3f}")

if __name__ == "__main__":
    main()
