"""Per-step cost of the SGLD strategy (Langevin noise, divergence guard, posterior accumulation) relative to
the SGD strategy's step, on step_overhead.py's benchmark problem, in one process run.

Both fits use the same task (64x64 astronaut, width-64 skip net, input jitter); SGLD samples at every step
(`burn_in=0, thin=1`: the worst case, the default samples every 10th). Repeats alternate the strategies
and the fastest repeat of each counts. `step_overhead.py` calls `sgld_step_ratios`; alone:

    python benchmarks/sgld_overhead.py [--steps 300] [--warmup 50] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse

from step_overhead import time_fit

from dip_lightning.strategies import SGLD

SAMPLERS = ("psgld", "sgld", "paper")


def sgld_step_ratios(steps: int, warmup: int, repeats: int, device: str) -> dict[str, float]:
    """{sampler: SGLD step time / SGD step time} for each of SAMPLERS, fastest repeat of each."""
    times: dict[str, list[float]] = {name: [] for name in ("sgd", *SAMPLERS)}
    for _ in range(repeats):
        times["sgd"].append(time_fit(steps, warmup, device))  # step_overhead's SGD strategy
        for sampler in SAMPLERS:  # the guard still runs every step; an infinite band never stops the chain
            strategy = SGLD(sampler, burn_in=0, thin=1, max_mse_ratio=float("inf"))
            times[sampler].append(time_fit(steps, warmup, device, strategy))
    return {sampler: min(times[sampler]) / min(times["sgd"]) for sampler in SAMPLERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for sampler, ratio in sgld_step_ratios(args.steps, args.warmup, args.repeats, args.device).items():
        print(f"sgld step / sgd step ({sampler}): {ratio:.3f}")


if __name__ == "__main__":
    main()
