"""Fig. 3b of Cheng et al. 2019: normalised kernels of conv-ReLU nets, analytic vs empirical, over depth and
input smoothing.

1D ConvNet (3-tap convs, ReLU, PyTorch default init, width --width, 64 input channels) on white Gaussian
noise smoothed by a Gaussian filter of std s. Analytic: the arc-cosine recursion (`conv_net_kernel`, with
the init's weight and bias variances); empirical: `estimate_kernel` from --samples random networks. With
that init (weight gain 1/3, bias variance 1/(3 fan-in)) the signal shrinks with depth and the biases take
over, so the kernel flattens towards 1 within a few layers.
Writes fig3b_kernels.csv and fig3b_kernels.png under --out.

    python benchmarks/gp_fig3b_kernels.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dip_lightning.gp.empirical import estimate_kernel  # noqa: E402
from dip_lightning.gp.kernels import conv_net_kernel, smoothed_noise_kernel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 2.0, 4.0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--in-channels", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--radius", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    r = args.radius
    rows = []
    fig, axes = plt.subplots(1, len(args.smoothing), figsize=(4 * len(args.smoothing), 3.2), dpi=110, sharey=True)
    for ax, s in zip(axes, args.smoothing, strict=True):
        for i, depth in enumerate(args.depths):
            spec = {"class_path": "conv", "init_args": dict(in_channels=args.in_channels, out_channels=1,
                                                            width=args.width, depth=depth, dim=1)}
            estimate = estimate_kernel(spec, r, samples=args.samples, size=2048, input_noise="gaussian",
                                       input_scale=1.0, smoothing=s)
            empirical = estimate.table / estimate.table[r]
            fans = [args.in_channels * 3] + [args.width * 3] * (depth - 1) + [args.width]
            analytic = conv_net_kernel(smoothed_noise_kernel(r, s, 1), depth, weight_gain=1 / 3,
                                       bias_var=[1 / (3 * f) for f in fans])
            offsets = range(0, r + 1)
            ax.plot(offsets, analytic[r:].numpy(), "-", color=f"C{i}", label=f"depth {depth}")
            ax.plot(offsets, empirical[r:].numpy(), "o", color=f"C{i}", ms=3)
            rows += [dict(smoothing=s, depth=depth, offset=d, analytic=float(analytic[r + d]),
                          empirical=float(empirical[r + d])) for d in offsets]
            print(f"s={s} depth={depth}: max |analytic - empirical| = "
                  f"{float((analytic - empirical).abs().max()):.4f}", flush=True)
        ax.set_title(f"input smoothing s = {s:g} px", fontsize=9)
        ax.set_xlabel("offset Δ (px)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("K(Δ) / K(0)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, title="lines: analytic\ndots: empirical",
               title_fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.savefig(args.out / "fig3b_kernels.png")
    with open(args.out / "fig3b_kernels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out / 'fig3b_kernels.csv'} and {args.out / 'fig3b_kernels.png'}")


if __name__ == "__main__":
    main()
