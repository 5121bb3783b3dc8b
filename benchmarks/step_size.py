"""The step-size study of the Langevin samplers (docs/benchmarks.md, "Step sizes and the Metropolis adjustment").

    python benchmarks/step_size.py --out outputs/step_size --jobs 2            # runs what is missing, then tables
    python benchmarks/step_size.py --out outputs/step_size --dry-run           # the command lines
    python benchmarks/step_size.py --out outputs/step_size --finished-only     # tables of the runs finished so far

On 64x64 crops (colour photos denoised at sigma 25, grey photos inpainted with half the pixels missing and
noise 5/255 on the known ones), the shipped sampler (`psgld`, lr 0.01) runs unadjusted at lr and lr/2 on
every photo and Metropolis-adjusted (its step adapted during burn-in) on the first two; plain `sgld` (lr 3)
runs unadjusted and adjusted on the first two colour photos. All runs keep the shipped 3000 steps
(burn-in 1000, a sample every 10), one chain; beside them the SGD oracle peak (Adam at the same crop,
width and length) and the shipped configs as they are (`sgld_denoise.yaml`: 2 chains, `sgld_inpaint.yaml`:
4). Why no lr/4, lr/8 and fewer adjusted runs: on this 2-core
CPU a run takes about 3 minutes; halving lr moved no photo's mse_observation_ratio or mh_accept_prob by more
than 0.04 (docs/benchmarks.md), and the adjusted chain at 3000 steps is already too slow to mix (its adapted
step is 40x below lr), so the smaller steps, which need 4x and 8x the steps to cover the same lr·steps, would
only show more of the same at 4-8x the cost. Every run is a `fit` on the bench's
resumable runner: rerunning the command runs only what is missing. Then it writes, in --out,
`step_size.md` (means over the photos with min-max, and a per-photo table of the acceptance figures),
`step_size.csv` (one row per run) and `step_size.png` (posterior-mean PSNR and coverage against step size).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from dip_lightning.artifacts import save_image
from dip_lightning.bench import bench_runs
from dip_lightning.images import center_crop, load_image, resize_longer_side
from dip_lightning.runner import Outcome, exit_if_incomplete, finished_before, print_dry_run, run_all

SAMPLERS = {"psgld": 0.01, "sgld": 3.0}
DIVISORS = {"psgld": (1, 2), "sgld": (1,)}
PHOTOS = {"psgld": None, "sgld": 2}  # how many photos (from the first) a sampler's unadjusted rows run on
METROPOLIS_PHOTOS = 2
COLOUR = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "rocket", "retina@256")
GREY = ("camera", "moon", "coins")
SGD_DENOISE = ("denoise.yaml --data.size=null --data.crop=64 --model.net.width=64 --trainer.max_steps=3000 "
               "--model.strategy.stopping=oracle")
SGD_INPAINT = "inpaint.yaml --model.sigma=5 --model.strategy.stopping=oracle"
FIGURES = ("psnr_posterior_mean", "posterior_std_mean", "coverage_95", "uce", "mse_observation_ratio",
           "mh_accept_prob", "acceptance_rate", "step_size", "ess_median", "seconds")


def rows(task_config: str, chains_one: bool, samplers: tuple[str, ...]) -> dict[str, tuple[str, int | None]]:
    """Row label -> (config entry: config and its own arguments, how many photos it runs on; None: all) of the
    sampler grid for one task."""
    one = " --model.strategy.chains=1" if chains_one else ""
    grid = {}
    for sampler in samplers:
        lr = SAMPLERS[sampler]
        for divisor in DIVISORS[sampler]:
            label = f"{sampler} lr{'' if divisor == 1 else f'/{divisor}'}"
            grid[label] = (f"{task_config}{one} --model.strategy.sampler={sampler} --model.strategy.lr={lr / divisor:g}",
                           PHOTOS[sampler])
        grid[f"{sampler} Metropolis"] = (f"{task_config}{one} --model.strategy.sampler={sampler} "
                                         f"--model.strategy.lr={lr:g} --model.strategy.metropolis=true",
                                         METROPOLIS_PHOTOS)
    return grid


def write_crops(specs: tuple[str, ...], folder: Path) -> dict[str, str]:
    """64x64 centre crops (NAME@SIZE: resized first) as PNG files; label -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for spec in specs:
        name, _, size = spec.partition("@")
        label = f"{name}_{size}" if size else name
        path = folder / f"{label}.png"
        if not path.exists():
            image = load_image(name)
            save_image(path, center_crop(resize_longer_side(image, int(size)) if size else image, 64))
        images[label] = str(path)
    return images


def _value(metrics: dict, key: str) -> float:
    value = metrics.get(key, math.nan)
    if isinstance(value, list):  # per-chain figures: their mean
        value = float(np.mean([math.nan if v is None else v for v in value])) if value else math.nan
    return math.nan if value is None else float(value)


def _cell(values: list[float], digits: int) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    mean = f"{np.mean(finite):.{digits}f}"
    return mean if len(finite) == 1 else f"{mean} ({min(finite):.{digits}f}-{max(finite):.{digits}f})"


DIGITS = {"psnr_posterior_mean": 2, "posterior_std_mean": 4, "coverage_95": 3, "uce": 5, "mse_observation_ratio": 3,
          "mh_accept_prob": 3, "acceptance_rate": 3, "step_size": 5, "ess_median": 0, "seconds": 0}


def tables(results: dict[str, dict[str, dict[str, dict]]], oracle: dict[str, dict[str, float]]) -> str:
    """Markdown: per task, one row per sampler setting (mean over the photos, min-max), then the oracle."""
    lines = []
    for task, by_row in results.items():
        labels = sorted({image for row in by_row.values() for image in row})
        lines += [f"### {task}: {len(labels)} photos ({', '.join(labels)})", "",
                  "| run | " + " | ".join(FIGURES) + " | PSNR − oracle (min) |", "|---" * (len(FIGURES) + 2) + "|"]
        for label, by_image in by_row.items():
            cells = [_cell([_value(m, key) for m in by_image.values()], DIGITS[key]) for key in FIGURES]
            gains = [_value(m, "psnr_posterior_mean") - oracle[task][image] for image, m in by_image.items()
                     if image in oracle[task]]
            gain = f"{np.mean(gains):+.2f} ({min(gains):+.2f})" if gains else ""
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {gain} |")
        peaks = list(oracle[task].values())
        lines += [f"| SGD oracle peak | {_cell(peaks, 2)} |" + " |" * len(FIGURES), ""]
    return "\n".join(lines)


def per_photo(results: dict[str, dict[str, dict[str, dict]]], oracle: dict[str, dict[str, float]],
              shipped: dict[str, str]) -> str:
    """Markdown: the shipped config on every photo (the acceptance figures)."""
    lines = []
    for task, label in shipped.items():
        lines += [f"### `{label}` on every photo ({task})", "",
                  "| photo | PSNR | SGD oracle | coverage_95 | mse_observation_ratio per chain | samples |",
                  "|---|---|---|---|---|---|"]
        for image, m in sorted(results[task].get(label, {}).items()):
            ratios = ", ".join(f"{r:.3f}" for r in m.get("mse_observation_ratio_per_chain", []) if r is not None)
            lines.append(f"| {image} | {_value(m, 'psnr_posterior_mean'):.2f} | {oracle[task].get(image, math.nan):.2f}"
                         f" | {_value(m, 'coverage_95'):.3f} | {ratios} | {m.get('samples')}/{m.get('samples_planned')} |")
        lines.append("")
    return "\n".join(lines)


def figure(results: dict[str, dict[str, dict[str, dict]]], path: Path) -> None:
    """Posterior-mean PSNR and coverage_95 (means over photos) against the step size lr, per task and sampler;
    the Metropolis-adjusted chain at its adapted step size, the shipped config (pooled chains) at its lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results)
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 7), squeeze=False)
    for column, task in enumerate(tasks):
        for sampler, colour in zip(SAMPLERS, ("C0", "C1"), strict=True):
            for row, key in enumerate(("psnr_posterior_mean", "coverage_95")):
                ax = axes[row, column]
                xs, ys = [], []
                for divisor in DIVISORS[sampler]:
                    label = f"{sampler} lr{'' if divisor == 1 else f'/{divisor}'}"
                    found = results[task].get(label, {})
                    if found:
                        xs.append(SAMPLERS[sampler] / divisor)
                        ys.append(np.nanmean([_value(m, key) for m in found.values()]))
                ax.plot(xs, ys, "o-", color=colour, label=f"{sampler} unadjusted")
                mala = results[task].get(f"{sampler} Metropolis", {})
                if mala:
                    ax.plot([np.nanmean([_value(m, "step_size") for m in mala.values()])],
                            [np.nanmean([_value(m, key) for m in mala.values()])], "*", ms=14, color=colour,
                            label=f"{sampler} Metropolis (adapted step)")
                ax.set_xscale("log")
                ax.set_xlabel("step size lr")
                ax.set_ylabel("posterior-mean PSNR (dB)" if key.startswith("psnr") else "coverage_95")
                if key == "coverage_95":
                    ax.axhspan(0.90, 0.97, color="0.9")
                ax.set_title(f"{task}: {key}")
        shipped = next((label for label in results[task] if label.endswith("(shipped)")), None)
        if shipped:  # pSGLD at lr, its chains pooled
            runs = results[task][shipped].values()
            chains = int(np.nanmean([_value(m, "chains") for m in runs]))
            for row, key in enumerate(("psnr_posterior_mean", "coverage_95")):
                axes[row, column].plot([SAMPLERS["psgld"]], [np.nanmean([_value(m, key) for m in runs])], "D",
                                       ms=9, color="C2", label=f"{shipped.split()[0]}: psgld lr, {chains} chains")
        axes[0, column].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/step_size"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--colour", nargs="+", default=list(COLOUR), help="photos to denoise (NAME or NAME@SIZE)")
    parser.add_argument("--grey", nargs="+", default=list(GREY), help="photos to inpaint (NAME or NAME@SIZE)")
    parser.add_argument("--dry-run", action="store_true", help="print the command lines and stop")
    parser.add_argument("--finished-only", action="store_true",
                        help="run nothing: tables of the runs finished so far (the others count as not run)")
    args = parser.parse_args()
    problems = {
        "denoising": (write_crops(tuple(args.colour), args.out / "crops_colour"),
                      {**rows("sgld_denoise.yaml", chains_one=True, samplers=("psgld", "sgld")),
                       "sgld_denoise.yaml (shipped)": ("sgld_denoise.yaml", None), "SGD oracle": (SGD_DENOISE, None)}),
        "inpainting": (write_crops(tuple(args.grey), args.out / "crops_grey"),
                       {**rows("sgld_inpaint.yaml", chains_one=True, samplers=("psgld",)),
                        "sgld_inpaint.yaml (shipped)": ("sgld_inpaint.yaml", None), "SGD oracle": (SGD_INPAINT, None)}),
    }
    runs, where = [], []
    for task, (images, grid) in problems.items():
        for label, (entry, photos) in grid.items():
            chosen = dict(list(images.items())[:photos])
            for run in bench_runs([entry], chosen, [0], []):
                runs.append(run)
                where.append((task, label, run.params["image"]))
    # the acceptance rows first (oracles, shipped configs), then the step-size rows, so that an interrupted
    # study has what matters most
    rank = ("SGD oracle", "sgld_denoise.yaml (shipped)", "sgld_inpaint.yaml (shipped)", "psgld lr",
            "psgld Metropolis", "psgld lr/2")
    order = sorted(range(len(runs)), key=lambda i: rank.index(where[i][1]) if where[i][1] in rank else len(rank))
    runs, where = [runs[i] for i in order], [where[i] for i in order]
    if args.dry_run:
        print_dry_run(runs, args.out)
        return
    if args.finished_only:
        outcomes = [finished_before(run, run.folder(args.out)) or Outcome(run, "not run") for run in runs]
    else:
        outcomes = run_all(runs, args.out, jobs=args.jobs, label="step-size runs")
    results: dict[str, dict[str, dict[str, dict]]] = {task: {} for task in problems}
    oracle: dict[str, dict[str, float]] = {task: {} for task in problems}
    with (args.out / "step_size.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["task", "run", "photo", "status", *FIGURES, "psnr_selected", "command"])
        for (task, label, image), outcome in zip(where, outcomes, strict=True):
            metrics = outcome.metrics
            writer.writerow([task, label, image, outcome.status, *(_value(metrics, k) for k in FIGURES),
                             metrics.get("psnr_selected"), " ".join(outcome.run.command[3:])])
            if outcome.status != "done":
                continue
            if label == "SGD oracle":
                oracle[task][image] = float(metrics["psnr_selected"])
            else:
                results[task].setdefault(label, {})[image] = metrics
    shipped = {"denoising": "sgld_denoise.yaml (shipped)", "inpainting": "sgld_inpaint.yaml (shipped)"}
    text = tables(results, oracle) + "\n" + per_photo(results, oracle, shipped)
    (args.out / "step_size.md").write_text(text)
    figure(results, args.out / "step_size.png")
    print(text)
    print(f"tables: {args.out / 'step_size.md'}, figure: {args.out / 'step_size.png'}")
    exit_if_incomplete(outcomes, args.out)


if __name__ == "__main__":
    main()
