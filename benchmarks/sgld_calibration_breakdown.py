"""Calibration of a finished SGLD run, split by the true intensity.

Denoising observes y = clip(x + n, 0, 1). Under a Gaussian likelihood (`model.likelihood=gaussian`) the
clipped noise has a non-zero mean where the true value x is near 0 (or 1) (about sigma/sqrt(2 pi) = +0.039
at x = 0 for sigma 25), so the posterior sits confidently above the truth there; the censored likelihood
(the default) models the clipping. This script shows how calibration differs between those pixels and
the rest. It reads the run's last checkpoint (posterior moments and ground truth) and prints a markdown
table: all pixels, pixels with x < dark or x > 1 - dark, and the rest.

    python benchmarks/sgld_calibration_breakdown.py RUN_DIR [--dark 0.05]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dip_lightning.calibration import calibration_metrics
from dip_lightning.callbacks import Moments


def posterior(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(posterior mean, posterior variance, ground truth), each (1, C, *S), from RUN_DIR's last.ckpt."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("PosteriorAverage")]
    moments = Moments(tuple(state["mean"].shape))
    moments.load_state_dict(state)
    return moments.mean, moments.variance(), checkpoint["state_dict"]["ground_truth"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--dark", type=float, default=0.05, help="distance from 0 or 1 counted as clipped")
    args = parser.parse_args()
    mean, variance, truth = posterior(args.run_dir)
    clipped = (truth < args.dark) | (truth > 1 - args.dark)
    print("| pixels | share | mean error | coverage_95 | uce | nll | spearman_std_abs_err |")
    print("|---|---|---|---|---|---|---|")
    for name, where in (("all", torch.ones_like(clipped)), (f"x < {args.dark} or x > {1 - args.dark}", clipped),
                        ("the rest", ~clipped)):
        if not where.any():
            continue
        metrics = calibration_metrics()
        metrics.update(mean[where], variance[where], truth[where])
        figures = {k: float(v) for k, v in metrics.compute().items()}
        print(f"| {name} | {float(where.float().mean()):.2f} | {float((mean - truth)[where].mean()):+.4f} "
              f"| {figures['coverage_95']:.3f} | {figures['uce']:.2e} | {figures['nll']:.3f} "
              f"| {figures['spearman_std_abs_err']:.3f} |")


if __name__ == "__main__":
    main()
