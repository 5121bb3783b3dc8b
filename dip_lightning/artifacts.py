"""What a run leaves on disk: its directory, images, uncertainty heat maps and metrics."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import kornia.io
import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first: no display needed)


def new_run_dir(root: str | Path, name: str) -> Path:
    """Create and return a fresh `root/<YYYYmmdd-HHMMSS>-<name>[-k]` directory (never reused)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = Path(root) / (f"{stamp}-{name}" + (f"-{k}" if k else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {root}")


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 on the CPU (clamped, x255, rounded), same shape."""
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def save_image(path: str | Path, image: torch.Tensor) -> None:
    """Write a [0, 1] image (C, H, W), C = 1 or 3, as an 8-bit PNG (or JPEG, by suffix)."""
    kornia.io.write_image(Path(path), to_uint8(image))


def save_heat_map(path: str | Path, values: torch.Tensor, title: str, label: str, vmin: float | None = None) -> None:
    """Heat map PNG of per-pixel values (C, H, W) or (H, W), averaged over channels, with a colour bar."""
    values = values.detach().float().cpu()
    values = values.mean(0) if values.dim() == 3 else values
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=100)
    shown = ax.imshow(values.numpy(), cmap="magma", vmin=vmin)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_uncertainty(path: str | Path, std: torch.Tensor, title: str = "posterior std") -> None:
    """Heat map PNG of a per-pixel std (C, H, W) or (H, W), averaged over channels, in image intensity
    units ([0, 1] scale; the title gives the mean in 0-255 units too)."""
    mean = float(std.float().mean())
    save_heat_map(path, std, f"{title} (mean {mean:.4f} = {255 * mean:.1f}/255)", "std, intensity in [0, 1]", vmin=0)


def save_rhat(path: str | Path, rhat: torch.Tensor) -> None:
    """Heat map PNG of the per-pixel split-R̂ (C, H, W), averaged over channels (1 = converged)."""
    finite = rhat[torch.isfinite(rhat)]
    median = float(finite.median()) if finite.numel() else float("nan")
    save_heat_map(path, rhat.nan_to_num(nan=1.0), f"split-R̂ (median {median:.3f}; <= 1.01 converged)",
                  "R̂ (between/within-chain spread)", vmin=1.0)


def save_summary(path: str | Path, images: list[tuple[str, torch.Tensor]], std: torch.Tensor | None = None,
                 std_title: str = "", title: str = "") -> None:
    """One figure of a run, readable at a glance: the [0, 1] images (C, H, W), C = 1 or 3, side by side with
    their titles, then (for a sampler) the per-pixel std (C, H, W) as a heat map with a colour bar."""
    panels = len(images) + (std is not None)
    height, width = images[-1][1].shape[-2:]  # the output's aspect ratio; room above for two title lines
    fig, axes = plt.subplots(1, panels, figsize=(3.3 * panels, 3.3 * height / width + 1.0), dpi=100, squeeze=False,
                             layout="constrained")
    for ax, (label, image) in zip(axes[0], images):
        pixels = image.detach().float().clamp(0, 1).cpu()
        if pixels.shape[0] == 1:
            ax.imshow(pixels[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(pixels.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_axis_off()
    if std is not None:
        ax = axes[0, -1]
        values = std.detach().float().cpu().mean(0)
        shown = ax.imshow(values.numpy(), cmap="magma", vmin=0, interpolation="nearest")
        ax.set_title(std_title, fontsize=10)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path)
    plt.close(fig)


def _json_ready(value):
    """Tensors and numpy scalars -> plain Python; non-finite floats -> None (JSON has no NaN); lists item-wise."""
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, (torch.Tensor, np.generic)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: str | Path, metrics: dict) -> None:
    """Write `metrics` as sorted, indented JSON (tensor values become numbers)."""
    clean = {key: _json_ready(value) for key, value in metrics.items()}
    Path(path).write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
