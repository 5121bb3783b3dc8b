"""Fig. 6 of Cheng et al. 2019: inpainting PSNR of DIP and of the GP with the DIP kernel as the width grows.

Problem (the gp_inpaint.yaml one): camera Lanczos-resized to 64x64, 50% of the pixels missing (Bernoulli,
observation seed 0); the DIP fits see exactly the same observation (same file, mask and seed).
- GP: DIP kernel of the 2-scale skip net of that width (10 random networks), CG posterior mean.
- DIP (SGD): the same 2-scale skip net trained by the project's `fit` CLI (configs/inpaint.yaml: Adam
  lr 0.01, input jitter 1/30, backtracking) for --steps steps; the output EMA (0.99) is scored, plus the
  raw final output and the oracle peak.
- DIP (SGLD, --methods sgld): the GP-DIP paper's sampler (Adam + weight noise, a labelled heuristic), posterior mean
  after burn-in --steps/3, a sample every 10 steps.
PSNR is over the whole image with the known pixels pasted (as the GP keeps them; the paper's scoring), so
it is a function of the PSNR over the missing pixels alone. Writes fig6_width.csv and fig6_width.png
under --out; finished DIP runs are reused (their metrics are kept in --out/fig6_runs/).

    python benchmarks/gp_fig6_width.py --widths 16 32 64 128 256 --steps 3000 --methods sgd sgld \
        --sgld-widths 16 32 64 128 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dip_lightning.artifacts import save_image  # noqa: E402
from dip_lightning.gp.problem import lanczos_resize, observe  # noqa: E402
from dip_lightning.gp.restore import KernelConfig, NetConfig, restore  # noqa: E402
from dip_lightning.images import load_image  # noqa: E402


def pasted_psnr(psnr_missing: float, missing_fraction: float) -> float:
    """Whole-image PSNR when the known pixels are exact: MSE = MSE_missing · fraction missing."""
    return psnr_missing - 10 * math.log10(missing_fraction)


def dip_run(image: Path, width: int, steps: int, sgld: bool, seed: int, runs: Path, threads: int) -> dict:
    """Metrics of one DIP fit through the CLI (cached in `runs`); `seed` seeds weights and code."""
    key = runs / f"{'sgld' if sgld else 'sgd'}-w{width}-s{steps}{f'-seed{seed}' if seed else ''}.json"
    if key.is_file():
        return json.loads(key.read_text())
    args = [sys.executable, "-m", "dip_lightning", "fit", "--config", "inpaint.yaml", f"--data.image={image}",
            "--data.crop=null", "--model.net.depth=2", f"--model.net.width={width}", f"--trainer.max_steps={steps}",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
            f"--trainer.default_root_dir={runs / 'dirs'}", f"--seed_everything={seed}"]
    if sgld:
        args += ["--model.strategy=dip_lightning.strategies.SGLD", "--model.strategy.sampler=paper",
                 "--model.strategy.lr=0.01", "--model.strategy.weight_decay=5e-8",
                 f"--model.strategy.burn_in={steps // 3}", "--model.strategy.thin=10"]
    else:
        args += ["--model.strategy.use_ema=true"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), WANDB_MODE="disabled")
    start = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    run_dir = Path(out.strip().splitlines()[-1].split("outputs: ", 1)[1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - start
    key.write_text(json.dumps(metrics, indent=2))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--methods", nargs="+", choices=["sgd", "sgld"], default=["sgd"], help="DIP fits to run")
    parser.add_argument("--sgld-widths", type=int, nargs="*", default=None, help="widths for SGLD (default all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="DIP seeds (weights, code)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.out / "fig6_runs"
    runs.mkdir(exist_ok=True)

    clean = lanczos_resize(load_image("camera"), 64)
    image = args.out / "camera64_lanczos.png"
    save_image(image, clean)
    observation, mask = observe(clean, "inpaint", missing=0.5, seed=0)
    missing_fraction = float((~mask).float().mean())

    rows = []
    for width in args.widths:
        gp = restore(observation, mask, kernel=KernelConfig(net=NetConfig(width=width)), variance_samples=0)
        missing = ~mask.expand_as(clean)
        gp_missing = -10 * math.log10(float((gp.restored - clean)[missing].square().mean()))
        rows.append(dict(method="gp_dip_kernel", width=width, steps=0, seed=0,
                         psnr=pasted_psnr(gp_missing, missing_fraction), psnr_raw_final=None, psnr_raw_peak=None,
                         step_peak=None, seconds=gp.info["seconds_kernel"] + gp.info["seconds_posterior"]))
        print(f"width {width}: GP {rows[-1]['psnr']:.2f} dB", flush=True)
        sgld_here = "sgld" in args.methods and (args.sgld_widths is None or width in args.sgld_widths)
        runs_here = [(sgld, seed) for sgld in [False] * ("sgd" in args.methods) + [True] * sgld_here
                     for seed in args.seeds]
        for sgld, seed in runs_here:
            m = dip_run(image.resolve(), width, args.steps, sgld, seed, runs, args.threads)
            method = "dip_sgld_mean" if sgld else "dip_sgd_ema"
            rows.append(dict(method=method, width=width, steps=args.steps, seed=seed,
                             psnr=pasted_psnr(m["psnr_missing"], missing_fraction),
                             psnr_raw_final=m.get("psnr_final"), psnr_raw_peak=m.get("psnr_best"),
                             step_peak=m.get("step_best"), seconds=m["wall_seconds"]))
            print(f"width {width}: {method} seed {seed}: {rows[-1]['psnr']:.2f} dB "
                  f"(raw final {m.get('psnr_final', float('nan')):.2f}, peak {m.get('psnr_best', float('nan')):.2f} "
                  f"at {m.get('step_best')}; {m['wall_seconds']:.0f} s)", flush=True)

    with open(args.out / "fig6_width.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    styles = {"gp_dip_kernel": ("GP, DIP kernel of that width", "o-"),
              "dip_sgd_ema": (f"DIP, Adam {args.steps} steps (EMA)", "s-"),
              "dip_sgld_mean": (f"DIP, SGLD posterior mean ({args.steps} steps)", "^-")}
    for method, (label, style) in styles.items():
        widths = sorted({r["width"] for r in rows if r["method"] == method})
        values = [[r["psnr"] for r in rows if r["method"] == method and r["width"] == w] for w in widths]
        if widths:
            suffix = ", mean over seeds" if len(args.seeds) > 1 and method != "gp_dip_kernel" else ""
            ax.plot(widths, [sum(v) / len(v) for v in values], style, label=label + suffix)
            for w, v in zip(widths, values, strict=True):
                ax.plot([w] * len(v), v, style[0], color=ax.lines[-1].get_color(), alpha=0.4, ms=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("channels (2-scale skip net)")
    ax.set_ylabel("PSNR (dB), known pixels pasted")
    ax.set_title("camera 64x64, 50% missing", fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "fig6_width.png")
    print(f"wrote {args.out / 'fig6_width.csv'} and {args.out / 'fig6_width.png'}")


if __name__ == "__main__":
    main()
