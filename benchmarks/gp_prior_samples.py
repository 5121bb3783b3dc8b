"""Prior samples of the DIP network and of the GP with its kernel, side by side (the paper's Fig. 4 idea).

Top row: outputs (pre-sigmoid) of randomly initialised 2-scale skip nets (width --width) on DIP's input
code U(0, 0.1); bottom row: GP draws (circulant embedding) with the DIP kernel estimated from 10 of those
networks (normalised, floor removed, PSD-repaired: the kernel GP inference uses). Each image is shown
standardised. The CSV compares the normalised autocorrelation of both sample sets (each sample centred: a
network's constant offset is the kernel's floor, which the centred kernel leaves out) along one axis with
the kernel itself.
Writes prior_samples.csv and prior_samples.png under --out.

    python benchmarks/gp_prior_samples.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dip_lightning.gp.empirical import build_net, estimate_kernel, inference_kernel  # noqa: E402
from dip_lightning.gp.stationary import GridCovariance  # noqa: E402


def autocorrelation_row(samples: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over samples (N, H, W) of the spatially centred autocorrelation along W, normalised, lags 0..R."""
    x = samples - samples.mean((1, 2), keepdim=True)
    w = x.shape[-1]
    corr = torch.stack([(x[..., : w - d] * x[..., d:]).mean((1, 2)) for d in range(radius + 1)], 1)
    return (corr / corr[:, :1]).mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=16, help="samples of each kind for the statistics")
    parser.add_argument("--radius", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = {"class_path": "skip", "init_args": dict(in_channels=32, out_channels=1, width=args.width, depth=2,
                                                    sigmoid=False)}
    torch.manual_seed(0)
    with torch.no_grad():
        dip = torch.cat([build_net(spec).train()(torch.rand(1, 32, args.size, args.size) * 0.1)[0]
                         for _ in range(args.samples)])
    table = inference_kernel(estimate_kernel(spec, 48, samples=10))
    gp = GridCovariance(table, (args.size, args.size)).sample(args.samples, torch.Generator().manual_seed(0))

    fig, axes = plt.subplots(2, 4, figsize=(8, 4.3), dpi=110)
    for row, (name, samples) in enumerate([("DIP net", dip), ("GP, DIP kernel", gp)]):
        for col in range(4):
            s = samples[col]
            axes[row, col].imshow(((s - s.mean()) / s.std()).numpy(), cmap="gray", vmin=-2.5, vmax=2.5)
            axes[row, col].set_axis_off()
        axes[row, 0].set_title(name, fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(args.out / "prior_samples.png")

    r = args.radius
    dip_row, gp_row = autocorrelation_row(dip, r), autocorrelation_row(gp, r)
    kernel_row = table[48, 48:48 + r + 1] / table[48, 48]
    with open(args.out / "prior_samples.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["offset", "dip_samples", "gp_samples", "kernel"])
        for d in range(r + 1):
            writer.writerow([d, float(dip_row[d]), float(gp_row[d]), float(kernel_row[d])])
    print("offset  dip_samples  gp_samples  kernel")
    for d in range(0, r + 1, 4):
        print(f"{d:6d}  {float(dip_row[d]):11.3f}  {float(gp_row[d]):10.3f}  {float(kernel_row[d]):6.3f}")
    print(f"max |dip - gp| over offsets 0..{r}: {float((dip_row - gp_row).abs().max()):.3f}")
    print(f"wrote {args.out / 'prior_samples.csv'} and {args.out / 'prior_samples.png'}")


if __name__ == "__main__":
    main()
