"""A sweep's results on disk: summary.csv and summary.md (one row per run) and heatmap.png."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .runner import Outcome

MAX_HEATMAP_SIDE = 16  # more distinct values than this on an axis (continuous random draws): no heat map


def format_value(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None empty."""
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_rows(outcomes: list[Outcome], columns: dict[str, str]) -> list[dict[str, Any]]:
    """One row per run: its parameters, then `columns` (header -> metrics.json key), seconds, status,
    error line and run directory."""
    names = list(dict.fromkeys(name for outcome in outcomes for name in outcome.run.params))
    return [{**{name: outcome.run.params.get(name) for name in names},
             **{header: outcome.metrics.get(key) for header, key in columns.items()},
             "seconds": round(outcome.seconds, 1), "status": outcome.status, "error": outcome.error,
             "run_dir": str(outcome.run_dir or "")} for outcome in outcomes]


def write_summary(out: Path, outcomes: list[Outcome], columns: dict[str, str], title: str,
                  best: tuple[str, str] | None = None) -> None:
    """Write `out`/summary.csv (every column) and `out`/summary.md (`title`, a line naming the best run
    when `best` = (header, "maximize" | "minimize") is given, and the table without run directories)."""
    rows = summary_rows(outcomes, columns)
    with (out / "summary.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    headers = [header for header in rows[0] if header != "run_dir"]
    lines = [f"# {title}: {len(rows)} runs", ""]
    if best is not None:
        lines += [_best_line(rows, *best), ""]
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_value(row[h]).replace("|", "\\|") for h in headers) + " |" for row in rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def _best_line(rows: list[dict[str, Any]], header: str, goal: str) -> str:
    scored = [row for row in rows if row["status"] == "done" and row[header] is not None]
    if not scored:
        return f"No run has {header}."
    pick = max if goal == "maximize" else min
    top = pick(scored, key=lambda row: row[header])
    params = ", ".join(f"{k}={format_value(v)}" for k, v in top.items() if k not in (header, "seconds", "status",
                                                                                      "error", "run_dir"))
    return f"Best {header} ({goal}): **{format_value(top[header])}** at {params}."


def write_heatmap(path: Path, outcomes: list[Outcome], metric: str, key: str, goal: str, title: str) -> bool:
    """When exactly two parameters take several values (each at most MAX_HEATMAP_SIDE): a PNG of the
    metric (metrics.json `key`, shown as `metric`) over them, the first on the rows, with the value
    printed in each cell (the mean when several runs share a cell; "failed" when all of them failed)
    and a colour bar. Returns whether it wrote one."""
    names = list(dict.fromkeys(name for outcome in outcomes for name in outcome.run.params))
    axes = {name: _axis([outcome.run.params.get(name) for outcome in outcomes]) for name in names}
    varying = [name for name in names if len(axes[name]) > 1]
    if len(varying) != 2 or any(len(axes[name]) > MAX_HEATMAP_SIDE for name in varying):
        return False
    row_name, col_name = varying
    rows, cols = axes[row_name], axes[col_name]
    values: dict[tuple[int, int], list[float]] = {}
    failed: set[tuple[int, int]] = set()
    for outcome in outcomes:
        cell = (rows.index(_hashable(outcome.run.params[row_name])), cols.index(_hashable(outcome.run.params[col_name])))
        value = outcome.metrics.get(key) if outcome.status == "done" else None
        if value is not None and math.isfinite(value):
            values.setdefault(cell, []).append(value)
        elif outcome.status == "failed":
            failed.add(cell)
    grid = np.full((len(rows), len(cols)), np.nan)
    for (i, j), cell_values in values.items():
        grid[i, j] = float(np.mean(cell_values))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.5, 2.2 + 0.95 * len(cols)), 1.9 + 0.55 * len(rows)), dpi=120)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")  # cells without a value
    shown = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    finite = grid[np.isfinite(grid)]
    best = (np.nanargmax if goal == "maximize" else np.nanargmin)(grid) if finite.size else None
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(grid[i, j]):
                level = shown.norm(grid[i, j])
                ax.text(j, i, format_value(float(grid[i, j])), ha="center", va="center", fontsize=9,
                        color="black" if level > 0.6 else "white",
                        fontweight="bold" if best == i * len(cols) + j else "normal")
            elif (i, j) in failed:
                ax.text(j, i, "failed", ha="center", va="center", fontsize=8, color="darkred")
    ax.set_xticks(range(len(cols)), [format_value(v) for v in cols])
    ax.set_yticks(range(len(rows)), [format_value(v) for v in rows])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    ax.set_title(f"{title}\n{metric} ({goal}; best in bold)", fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).set_label(metric, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _hashable(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else value


def _axis(values: list[Any]) -> list[Any]:
    """The distinct values of a parameter: sorted when all are numbers, else in order of appearance."""
    distinct = list(dict.fromkeys(_hashable(value) for value in values))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct)
    return sorted(distinct) if numeric else distinct
