"""GPU speed in one go: ms/step of `fit` by precision, memory format and compilation, against a bare loop.

Denoising of the built-in `astronaut` (512x512; 256x256 a centre crop), sigma 25, the papers' skip net
(width 128, depth 5), Gaussian likelihood (the bare loop's loss). Measured, each for the timed steps after
a warm-up (compilation falls in the warm-up), in one process:

- ms/step for SGD (Adam, backtracking, EMA and trackers: the default strategy) and pSGLD at each size, in
  the variants float32, bf16-mixed, bf16-mixed + channels_last, bf16-mixed + channels_last + compile
  (each adds one option to the one before; compiled runs at the `--compile-sizes` only: compiling costs
  about a minute per run);
- the bare PyTorch loop (jitter, forward, MSE, backward, Adam) in float32 and bf16 autocast, and the ratio
  fit SGD / bare loop for those two;
- peak GPU memory of each run (torch.cuda.max_memory_allocated);
- the papers' SGLD protocol (configs/paper/sgld_denoise.yaml: the GP-DIP sampler with backtracking, 20 000
  steps) at the largest size, in the fastest uncompiled variant, projected to its 20 000 steps;
- K chains batched (model.strategy.chains) with pSGLD at the smallest size: ms/step and chain-steps/s.

The table goes to stdout (Markdown) and to `--csv`. On one H100/H200 the defaults are meant to finish in
under 5 minutes (not measured yet: no GPU run has been made). A CPU smoke run:

    python benchmarks/gpu.py --device cpu --sizes 32 --width 16 --depth 2 --steps 20 --warmup 5 --chains 2
    python benchmarks/gpu.py                     # on a GPU: 256 and 512, width 128, depth 5
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import time
from dataclasses import dataclass

import lightning as L
import torch
from step_overhead import StepClock, clock

from dip_lightning.data import ImageData
from dip_lightning.nets import SkipNet
from dip_lightning.strategies import SGD, SGLD
from dip_lightning.tasks import Denoise

LR, JITTER, PROTOCOL_STEPS = 0.01, 1 / 30, 20_000
VARIANTS = {  # name: (precision, channels_last, compile)
    "float32": ("32-true", False, False),
    "bf16-mixed": ("bf16-mixed", False, False),
    "bf16+channels_last": ("bf16-mixed", True, False),
    "bf16+channels_last+compile": ("bf16-mixed", True, True),
}


@dataclass
class Row:
    """One measurement: ms per step of all chains, peak memory (MiB; None on a CPU), and a note."""

    kind: str
    size: int
    strategy: str
    variant: str
    chains: int
    ms_per_step: float
    peak_mib: float | None
    note: str = ""


def strategy_for(name: str, steps: int, chains: int = 1):
    """The strategy `name` (sgd, psgld, paper) for a timing run of `steps` steps: the guards never stop it, and
    the second half of the run takes at least 2 samples (the configs' thin, or less in a short run)."""
    if name == "sgd":
        return SGD(lr=LR, chains=chains)
    if name == "paper":  # configs/paper/sgld_denoise.yaml's sampler
        return SGLD("paper", lr=LR, burn_in=steps // 2, thin=min(50, steps // 4), backtracking=True, chains=chains,
                    max_mse_ratio=float("inf"))
    return SGLD("psgld", burn_in=steps // 2, thin=min(10, steps // 4), max_mse_ratio=float("inf"), chains=chains)


def peak_mib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def time_fit(args, size: int, strategy: str, variant: str, chains: int = 1) -> tuple[float, float | None]:
    """(ms per step, peak MiB) of `Trainer.fit` on the benchmark problem."""
    precision, channels_last, compile_ = VARIANTS[variant]
    L.seed_everything(0, verbose=False)
    steps = args.warmup + args.steps
    task = Denoise(net=functools.partial(SkipNet, width=args.width, depth=args.depth),
                   strategy=strategy_for(strategy, steps, chains), likelihood="gaussian",
                   reg_noise_std=0.0 if strategy == "psgld" else JITTER, channels_last=channels_last,
                   compile=compile_)
    timer = StepClock(args.warmup, torch.device(args.device))
    trainer = L.Trainer(max_steps=steps, accelerator=args.device, devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                        callbacks=[timer], default_root_dir="/tmp/dip_lightning_benchmark",
                        use_distributed_sampler=False)
    reset_peak(args.device)
    trainer.fit(task, datamodule=ImageData("astronaut", crop=size))
    return 1e3 * (timer.end - timer.start) / args.steps, peak_mib(args.device)


def time_bare(args, size: int, bf16: bool) -> tuple[float, float | None]:
    """(ms per step, peak MiB) of the plain DIP loop: jitter, forward (bf16 autocast or float32), MSE, Adam."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    clean = ImageData("astronaut", crop=size).image[None].to(device)
    noisy = (clean + torch.randn_like(clean) * 25 / 255).clamp(0, 1)
    net = SkipNet(32, 3, width=args.width, depth=args.depth).to(device)
    z = torch.rand(1, 32, *clean.shape[2:], device=device) * 0.1
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    reset_peak(args.device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            start = clock(device)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = net(z + JITTER * torch.randn_like(z))
        loss = torch.mean((output.float() - noisy) ** 2)
        loss.backward()
        optimizer.step()
    return 1e3 * (clock(device) - start) / args.steps, peak_mib(args.device)


def measure(args) -> list[Row]:
    rows: list[Row] = []
    fastest: dict[int, tuple[float, str]] = {}  # size -> the fastest uncompiled pSGLD variant's (ms, name)
    for size in args.sizes:
        for bf16 in (False, True):
            ms, mib = time_bare(args, size, bf16)
            rows.append(Row("bare", size, "adam", "bf16-mixed" if bf16 else "float32", 1, ms, mib))
        for strategy in ("sgd", "psgld"):
            for variant in VARIANTS:
                if VARIANTS[variant][2] and size not in args.compile_sizes:
                    continue
                ms, mib = time_fit(args, size, strategy, variant)
                rows.append(Row("fit", size, strategy, variant, 1, ms, mib))
                if strategy == "psgld" and not VARIANTS[variant][2]:
                    fastest[size] = min(fastest.get(size, (ms, variant)), (ms, variant))
    largest, smallest = max(args.sizes), min(args.sizes)
    variant = fastest[largest][1]
    ms, mib = time_fit(args, largest, "paper", variant)
    rows.append(Row("protocol", largest, "paper", variant, 1, ms, mib,
                    f"{PROTOCOL_STEPS} steps: {ms * PROTOCOL_STEPS / 6e4:.1f} min projected"))
    variant = fastest[smallest][1]
    for chains in (1, args.chains):
        ms, mib = time_fit(args, smallest, "psgld", variant, chains)
        rows.append(Row("chains", smallest, "psgld", variant, chains, ms, mib,
                        f"{1e3 * chains / ms:.0f} chain-steps/s"))
    return rows


def ratios(rows: list[Row]) -> list[str]:
    """fit SGD / bare loop, for each size and the variants both have."""
    bare = {(r.size, r.variant): r.ms_per_step for r in rows if r.kind == "bare"}
    return [f"fit / bare loop, {r.size}x{r.size}, {r.variant}: {r.ms_per_step / bare[r.size, r.variant]:.3f}"
            for r in rows if r.kind == "fit" and r.strategy == "sgd" and (r.size, r.variant) in bare]


def speedups(rows: list[Row]) -> list[str]:
    """Each variant's speed against float32, per size and strategy."""
    base = {(r.size, r.strategy): r.ms_per_step for r in rows if r.kind == "fit" and r.variant == "float32"}
    return [f"{r.variant} / float32 speed, {r.size}x{r.size} {r.strategy}: {base[r.size, r.strategy] / r.ms_per_step:.2f}x"
            for r in rows if r.kind == "fit" and r.variant != "float32"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="image sides (pixels)")
    parser.add_argument("--compile-sizes", type=int, nargs="*", default=None,
                        help="sizes with a compiled run (default: the largest)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation included)")
    parser.add_argument("--chains", type=int, default=4, help="K for the batched-chains run")
    parser.add_argument("--csv", default="gpu_benchmark.csv")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: use --device cpu (with small --sizes and --width) for a smoke run")
    args.compile_sizes = [max(args.sizes)] if args.compile_sizes is None else args.compile_sizes
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run banners between the rows
    start = time.perf_counter()
    rows = measure(args)
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; skip net width {args.width} depth {args.depth}; "
          f"{args.steps} timed steps after {args.warmup}; total {time.perf_counter() - start:.0f} s\n")
    print("| kind | size | strategy | variant | chains | ms/step | peak MiB | note |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        mib = "" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        print(f"| {r.kind} | {r.size} | {r.strategy} | {r.variant} | {r.chains} | {r.ms_per_step:.2f} | {mib} | {r.note} |")
    print("\n" + "\n".join(ratios(rows) + speedups(rows)))
    with open(args.csv, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["kind", "size", "strategy", "variant", "chains", "ms_per_step", "peak_mib", "note"])
        writer.writerows([r.kind, r.size, r.strategy, r.variant, r.chains, f"{r.ms_per_step:.3f}",
                          "" if r.peak_mib is None else f"{r.peak_mib:.1f}", r.note] for r in rows)
    print(f"csv: {args.csv}")


if __name__ == "__main__":
    main()
