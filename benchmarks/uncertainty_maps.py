"""One figure: each method's uncertainty map beside its error map, on the same crop, from finished runs.

    python benchmarks/uncertainty_maps.py --out outputs/uncertainty_maps.png \\
        "SGD ensemble (4)=outputs/bench/runs/.../RUN_DIR" "MC dropout=RUN_DIR" "MFVI=RUN_DIR" "pSGLD=RUN_DIR"

Each entry is `LABEL=RUN_DIR` (or a bare RUN_DIR, labelled by its strategy). A row per method: the returned
image, its error |restored − truth| and its std (posterior_std.npy), both as the RMS over colour channels,
on one colour scale for every error and std map of the figure (0 to the 99th percentile of the errors), so
that a calibrated std looks like its error map. Titles carry PSNR, coverage_95 and UCE from metrics.json.
Every run must be of the same crop (the same ground_truth.png) and have an uncertainty (posterior_std.npy).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dip_lightning.images import load_image  # noqa: E402


def read_run(entry: str) -> tuple[str, dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(label, metrics, restored (C, H, W), truth (C, H, W), std (C, H, W)) of `LABEL=RUN_DIR` or `RUN_DIR`."""
    label, _, path = entry.rpartition("=")
    run_dir = Path(path)
    missing = [name for name in ("metrics.json", "restored.png", "ground_truth.png", "posterior_std.npy")
               if not (run_dir / name).is_file()]
    if missing:
        sys.exit(f"error: {run_dir} has no {', '.join(missing)}: give finished runs of an uncertainty strategy "
                 f"on an image with a ground truth")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    std = torch.from_numpy(np.load(run_dir / "posterior_std.npy"))
    return (label or run_dir.name.rsplit("-", 1)[-1], metrics, load_image(run_dir / "restored.png"),
            load_image(run_dir / "ground_truth.png"), std)


def rms_over_channels(values: torch.Tensor) -> np.ndarray:
    """(C, H, W) -> (H, W): sqrt of the mean square over the colour channels."""
    return values.square().mean(0).sqrt().numpy()


def title(label: str, metrics: dict) -> str:
    figures = [f"{metrics['psnr_selected']:.2f} dB"]
    figures += [f"{name} {metrics[key]:.3g}" for name, key in (("cov95", "coverage_95"), ("UCE", "uce"))
                if key in metrics]
    return f"{label}\n{', '.join(figures)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR or RUN_DIR, one per method")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    runs = [read_run(entry) for entry in args.runs]
    truth = runs[0][3]
    for label, _, _, other, _ in runs[1:]:
        if other.shape != truth.shape or not torch.allclose(other, truth):
            sys.exit(f"error: {label} is not of the same crop as {runs[0][0]} (another ground_truth.png)")
    errors = [rms_over_channels(restored - truth) for _, _, restored, _, _ in runs]
    stds = [rms_over_channels(std) for *_, std in runs]
    top = float(np.percentile(np.concatenate([e.ravel() for e in errors]), 99))
    fig, axes = plt.subplots(len(runs), 3, figsize=(9, 2.8 * len(runs)), squeeze=False)
    for row, ((label, metrics, restored, _, _), error, std) in enumerate(zip(runs, errors, stds, strict=True)):
        axes[row, 0].imshow(restored.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title(title(label, metrics), fontsize=8)
        axes[row, 1].imshow(error, cmap="magma", vmin=0, vmax=top)
        axes[row, 1].set_title(f"error |restored − truth|\nRMS {np.sqrt((error**2).mean()):.4f}", fontsize=8)
        shown = axes[row, 2].imshow(std, cmap="magma", vmin=0, vmax=top)
        axes[row, 2].set_title(f"std\nRMS {np.sqrt((std**2).mean()):.4f}", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.6, label="intensity in [0, 1] (RMS over channels)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(args.out)


if __name__ == "__main__":
    main()
