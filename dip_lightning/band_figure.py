"""The 1D result figure: estimate with a ±2 std band, the observed points and the truth (GP-DIP Fig. 3d style)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: no display needed


def save_band_figure(path: str | Path, estimate: torch.Tensor, known: torch.Tensor, observation: torch.Tensor,
                     truth: torch.Tensor | None = None, std: torch.Tensor | None = None,
                     label: str = "posterior mean") -> None:
    """PNG of one channel per panel: `estimate` (C, L), mean ± 2 `std` if given, observed points, truth.

    known: (L,) bool, the observed positions; observation (C, L); truth (C, L) or None. x is i / L.
    """
    estimate, observation, known = estimate.detach().cpu(), observation.detach().cpu(), known.detach().cpu()
    channels, length = estimate.shape
    x = torch.arange(length) / length
    fig, axes = plt.subplots(channels, 1, figsize=(7, 2.8 * channels), dpi=100, squeeze=False)
    for c, ax in enumerate(axes[:, 0]):
        if std is not None:
            band = 2 * std.detach().cpu()[c]
            ax.fill_between(x, estimate[c] - band, estimate[c] + band, color="tab:blue", alpha=0.25,
                            linewidth=0, label="± 2 std")
        if truth is not None:
            ax.plot(x, truth.detach().cpu()[c], color="black", linewidth=1, linestyle="--", label="truth")
        ax.plot(x, estimate[c], color="tab:blue", linewidth=1.5, label=label)
        ax.scatter(x[known], observation[c][known], s=12, color="tab:red", zorder=3, label="observed")
        ax.set_xlabel("x")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
