"""Time of one GP-DIP-scale run: a 512x512 photo, the skip net at width 128, projected to 20 000 steps.

    python benchmarks/paper_protocol.py --steps 100                   # the GP-DIP heuristic (sampler: paper)
    python benchmarks/paper_protocol.py --steps 100 --sampler psgld   # the shipped pSGLD at the paper's scale

Runs `fit` on `astronaut` at 512x512 (the papers' size) with the protocol of `configs/paper/sgld_denoise.yaml`
(width 128, depth 5; burn-in 7000 and a sample every 50 in the projection) for `--steps` steps under
Lightning's SimpleProfiler, with burn-in 0 so that the measured steps include sample steps (every 50) and
log steps (every 10). It prints the time of each part of a step (the forward and backward pass, the
optimizer step, each callback's hooks), per step, and the projection of the whole 20 000-step protocol:
every step's time times 20 000, plus what a sample step adds times the protocol's 260 samples. (The
optimizer step's row contains the training step, forward and backward, which Lightning runs in the
optimizer's closure.) `--precision bf16-mixed` and `--device cuda` run it as a GPU user would.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections import defaultdict

import lightning as L
import numpy as np
import torch
from lightning.pytorch.profilers import SimpleProfiler
from step_overhead import MAX_MSE_RATIO

from dip_lightning.data import ImageData
from dip_lightning.nets import SkipNet
from dip_lightning.strategies import SGLD
from dip_lightning.tasks import Denoise

PROTOCOL_STEPS, BURN_IN, THIN, LOG_EVERY = 20_000, 7_000, 50, 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sampler", default="paper", choices=("paper", "psgld"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args()
    if args.steps < 2 * THIN:  # burn-in 0: samples at steps THIN, 2·THIN, ...; a run must plan 2
        parser.error(f"--steps {args.steps}: give >= {2 * THIN} (two posterior samples, one every {THIN} steps)")
    torch.manual_seed(0)
    if args.sampler == "paper":  # configs/paper/sgld_denoise.yaml
        strategy = SGLD("paper", lr=0.01, weight_decay=5e-8, burn_in=0, thin=THIN, backtracking=True,
                        max_mse_ratio=float("inf"))
        task = Denoise(net=functools.partial(SkipNet, width=args.width, depth=5), strategy=strategy,
                       reg_noise_std=1 / 30, likelihood="gaussian")
    else:  # configs/sgld_denoise.yaml at the paper's scale
        strategy = SGLD("psgld", lr=0.01, eps=1e-4, burn_in=0, thin=THIN, max_mse_ratio=MAX_MSE_RATIO)
        task = Denoise(net=functools.partial(SkipNet, width=args.width, depth=5), strategy=strategy,
                       reg_noise_std=0.0)
    profiler = SimpleProfiler()
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(max_steps=args.steps, accelerator=args.device, devices=1, precision=args.precision,
                            logger=L.pytorch.loggers.CSVLogger(folder), log_every_n_steps=LOG_EVERY,
                            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                            profiler=profiler, default_root_dir=folder, use_distributed_sampler=False)
        trainer.fit(task, datamodule=ImageData("astronaut", size=args.size))
    durations = profiler.recorded_durations
    steps = durations["run_training_batch"][1:]  # the first step compiles kernels, allocates
    print(f"{args.size}x{args.size}, width {args.width}, sampler {args.sampler}, {args.device}, {args.precision}, "
          f"torch threads {torch.get_num_threads()}: {len(steps)} steps timed")
    per_step = np.mean(steps)
    print(f"| part | mean s/step | share |\n|---|---|---|\n| whole step (run_training_batch) | {per_step:.4f} | 100% |")
    parts = defaultdict(float)
    for name, values in durations.items():
        per_batch = "batch" in name or "step" in name
        if name.startswith(("[Callback]", "[LightningModule]", "[Strategy]")) and per_batch and len(values) >= len(steps):
            parts[name] = float(np.sum(values[-len(steps):])) / len(steps)
    for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        if seconds < 1e-3 * per_step:
            continue  # hooks that do nothing measurable
        print(f"| {name} | {seconds:.4f} | {100 * seconds / per_step:.1f}% |")
    callbacks = sum(s for n, s in parts.items() if n.startswith("[Callback]"))
    sample_hook = durations.get("[Callback]PosteriorAverage.on_train_batch_end", [])[1:]
    sample_steps = [t for i, t in enumerate(sample_hook, start=2) if i % THIN == 0]
    plain = [t for i, t in enumerate(sample_hook, start=2) if i % THIN]
    sample_extra = (np.mean(sample_steps) - np.mean(plain)) if sample_steps and plain else 0.0
    samples = (PROTOCOL_STEPS - BURN_IN) // THIN
    total = PROTOCOL_STEPS * per_step + samples * sample_extra
    print(f"callbacks: {callbacks:.4f} s/step ({100 * callbacks / per_step:.1f}% of a step); a posterior sample step "
          f"adds {sample_extra:.4f} s ({sample_extra / per_step:.3f} of a step, {len(sample_steps)} measured)")
    print(f"projected protocol ({PROTOCOL_STEPS} steps, {samples} samples): {total:.0f} s = {total / 3600:.1f} h")


if __name__ == "__main__":
    main()
