"""GP inference acceptance figures: accuracy on the paper's 64x64 problem, speed at 256² and 512² (1 thread).

Problem: camera Lanczos-resized to N x N, 50% of the pixels missing (Bernoulli, seed 0). Kernels: the
2-scale skip net's DIP kernel (10 random networks, width 128; amplitude by marginal likelihood) and an RBF
fitted by marginal likelihood. Timings are medians of --repeats runs of `gp_posterior` (the kernel given),
with torch.set_num_threads(1); the process CPU time is recorded beside the wall time (on a shared machine
it is the contention-free figure). Writes gp_speed.csv under --out and prints a Markdown table.

    python benchmarks/gp_speed.py --out benchmarks/results --reference-samples 400
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from dip_lightning.gp.empirical import estimate_kernel
from dip_lightning.gp.inference import gp_posterior
from dip_lightning.gp.problem import lanczos_resize, observe
from dip_lightning.gp.restore import KernelConfig, build_kernel, restore
from dip_lightning.images import load_image


def problem(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    clean = lanczos_resize(load_image("camera"), size)
    observation, mask = observe(clean, "inpaint", missing=0.5, seed=0)
    return clean, observation, mask


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall time and median process CPU time of `repeats` calls, and the last result.

    With one thread the CPU time is what the wall time would be on an idle machine (other sessions
    share this one's two cores).
    """
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-samples", type=int, default=400,
                        help="networks of the reference kernel estimate (0 skips that check)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def add(quantity: str, value: float, unit: str, target: str, cpu: float | None = None) -> None:
        rows.append(dict(quantity=quantity, value=value, unit=unit, target=target, cpu_seconds=cpu))
        extra = f", CPU {cpu:.4g} s" if cpu is not None else ""
        print(f"{quantity}: {value:.4g} {unit}{extra} (target {target})", flush=True)

    dip, rbf = KernelConfig(cache=False), KernelConfig(type="rbf")
    clean, observation, mask = problem(64)
    for name, config, target in [("dip", dip, ">= 26.2"), ("rbf", rbf, "~ 25.8 (paper 25.78)")]:
        cg = restore(observation, mask, kernel=config, variance_samples=0)
        dense_seconds, dense_cpu, dense = timed(partial(restore, observation, mask, kernel=config, solver="dense"), 1)
        add(f"64x64 PSNR, {name} kernel", psnr(cg.restored, clean), "dB", target)
        add(f"64x64 max |CG mean - dense mean|, {name}", float((cg.posterior.mean - dense.posterior.mean).abs().max()),
            "intensity", "<= 1e-3")
        add(f"64x64 dense solve incl. kernel fit, {name}", dense_seconds, "s", "-", dense_cpu)
        sampled = gp_posterior(cg.table, observation, mask, cg.noise_var, variance_samples=64,
                               generator=torch.Generator().manual_seed(1))
        ratio = (sampled.std / dense.posterior.std).square().median()
        add(f"64x64 median var ratio Matheron(64) / dense, {name}", float(ratio), "", "0.9 - 1.1")

    for size, target in [(256, "<= 0.5"), (512, "<= 2")]:
        _, observation, mask = problem(size)
        for name, config in [("dip", dip), ("rbf", rbf)]:
            table, noise_var, _ = build_kernel(config, observation, mask, 0.0)
            seconds, cpu, post = timed(partial(gp_posterior, table, observation, mask, noise_var, variance_samples=0),
                                       args.repeats)
            add(f"{size}x{size} posterior mean, {name}", seconds, "s", target, cpu)
            add(f"{size}x{size} CG iterations, {name}", post.cg_iterations, "", "-")
            if size == 256:
                seconds, cpu, _ = timed(partial(gp_posterior, table, observation, mask, noise_var,
                                                variance_samples=64), 1)
                add(f"256x256 mean + std from 64 Matheron samples, {name}", seconds, "s", "<= 30", cpu)

    spec = KernelConfig().net.spec()
    seconds, cpu, few = timed(partial(estimate_kernel, spec, 48, samples=10), 1)
    add("DIP kernel estimate, 10 networks (2-scale skip, width 128)", seconds, "s", "-", cpu)
    if args.reference_samples:
        many = estimate_kernel(spec, 48, samples=args.reference_samples, seed=1000)
        k0 = float(many.table[48, 48])
        add(f"max |K_10 - K_{args.reference_samples}| / K(0)", float((few.table - many.table).abs().max()) / k0, "",
            "<= 0.02")
        add("per-phase spread of the kernel (400 networks)", many.phase_spread, "of K(0)", "-")

    with open(args.out / "gp_speed.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["quantity", "value", "unit", "target", "cpu_seconds"])
        writer.writeheader()
        writer.writerows(rows)
    print("\n| quantity | value | CPU time | target |\n|---|---|---|---|")
    for r in rows:
        cpu = f"{r['cpu_seconds']:.3g} s" if r["cpu_seconds"] is not None else ""
        print(f"| {r['quantity']} | {r['value']:.4g} {r['unit']} | {cpu} | {r['target']} |")


if __name__ == "__main__":
    main()
