"""`python -m dip_lightning bench --configs denoise.yaml sgld_denoise.yaml --images DIR`: the papers'
per-image tables.

Runs every config x image x seed (a sweep over `--config`, `data.image` and `seed_everything` on the
sweep's resumable runner: rerunning, or adding a config, image or seed, runs only the missing cells)
and writes bench.md and bench.csv: one row per config, one column per image and a mean column; each
cell is the figure the config returns, psnr_posterior_mean for samplers and psnr_selected otherwise
(coverage_95 in a second table for samplers), as mean ± std over the seeds.

Every cell of a column is the same problem: before running, each config's problem is built on each image
and the configs must fit the same pixels and the same observation (`check_columns`); `--size` and `--crop`
set `data.size` and `data.crop` for every config. bench.md states the problem in its header. The
observation is the same for every seed (`model.observation_seed`); a seed changes the network's
initialisation and noise.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError
from .images import resolve_image_path
from .resume import flag, flatten, shown_value
from .runner import Outcome, Run, exit_if_incomplete, print_dry_run, run_all, split_extra_args
from .summary import write_summary

if TYPE_CHECKING:
    import torch

    from .tasks import RestorationTask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
FIGURES = {
    "psnr": "PSNR (dB) of the result each config returns: psnr_posterior_mean for samplers, psnr_selected otherwise",
    "coverage_95": "coverage_95 (configs that return an uncertainty): fraction of pixels whose true value lies "
                   "within the returned mean ± 1.96 std (0.95 when calibrated)",
    "uce": "uce (the same configs): uncertainty calibration error, the bin-weighted gap between the predicted "
           "variance and the squared error, in squared [0, 1] intensity units (docs/science.md §4; 0 when "
           "calibrated)",
    "nll": "nll (the same configs): mean Gaussian negative log-likelihood of the true pixels under the returned "
           "mean and std (lower is better)",
}


def figure_key(outcomes: list[Outcome], name: str) -> str:
    """The metrics.json key of figure `name` (`psnr` or `coverage_95`) for one config's runs: for `psnr`,
    psnr_posterior_mean when any of them has it (a sampler), else psnr_selected."""
    if name != "psnr":
        return name
    return "psnr_posterior_mean" if any("psnr_posterior_mean" in o.metrics for o in outcomes) else "psnr_selected"


def bench_images(specs: list[str]) -> dict[str, str]:
    """Column label -> `data.image` value: every image file of a folder (sorted by name), a file, or a
    built-in name; the label is the file's stem (or the name)."""
    images: dict[str, str] = {}
    for spec in specs:
        folder = Path(spec)
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InputError(f"no images in {folder}: put PNG, JPEG or TIFF files there")
            found = [(file.stem, str(file)) for file in files]
        else:
            resolve_image_path(spec)  # a clear error now rather than in every run
            found = [(Path(spec).stem, spec)]
        for label, image in found:
            if images.setdefault(label, image) != image:
                raise InputError(f"two images are named {label!r} ({images[label]}, {image}): rename one")
    return images


def config_words(entry: str) -> list[str]:
    """An entry of --configs, `CONFIG [ARGS...]` (quoted as one word): the config, checked to exist, then
    arguments for that config's runs only (e.g. "denoise.yaml --model.strategy.stopping=oracle")."""
    from .cli import find_config

    words = shlex.split(entry)
    if not words:
        raise InputError("an empty --configs entry: give a config name or path, e.g. denoise.yaml")
    find_config(words[0])
    return words


def fit_args(words: list[str], image: str, extra: list[str]) -> list[str]:
    """The `fit` arguments of one config entry's `words` on `image`, EXTRA ARGS last (the seed aside)."""
    return ["--config", words[0], *words[1:], f"--data.image={image}", *extra]


def bench_runs(configs: list[str], images: dict[str, str], seeds: list[int], extra: list[str]) -> list[Run]:
    """The command line of every config x image x seed, EXTRA ARGS last."""
    words = {entry: config_words(entry) for entry in configs}
    return [Run({"config": entry, "image": label, "seed": seed},
                (sys.executable, "-m", "dip_lightning", "fit",
                 *fit_args(words[entry], image, [f"--seed_everything={seed}", *extra])))
            for entry in configs for label, image in images.items() for seed in seeds]


METHOD_OPTIONS = ("net", "strategy", "input_channels", "input_scale", "reg_noise_std", "ema_decay", "likelihood",
                  "infer_sigma", "image_every_n_steps", "channels_last", "compile")
"""Task options that say how a problem is fitted, not what it is: the configs of a bench may differ in them."""


def problem_options(config: dict) -> dict[str, Any]:
    """{flag: value} of the options that pose the problem: the task's class and its options other than
    METHOD_OPTIONS, and the datamodule's class and options (the image aside: it is the column's)."""
    method = tuple(f"model.init_args.{name}" for name in METHOD_OPTIONS)
    leaves = flatten({"model": config.get("model"), "data": config.get("data")})
    return {flag(key): value for key, value in leaves.items()
            if not any(key == m or key.startswith(m + ".") for m in method) and key != "data.init_args.image"}


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def check_columns(configs: list[str], images: dict[str, str], extra: list[str]) -> str:
    """Build each config's problem on each image (nothing runs) and refuse (InputError) a column whose configs would
    fit different pixels or observations; return the sentence that states the problem, for bench.md's header."""
    from .cli import resolve_config_args
    from .fit import build_problem

    words = {entry: config_words(entry) for entry in configs}
    fitted = {}
    for label, image in images.items():
        built = {entry: build_problem(resolve_config_args(fit_args(words[entry], image, extra))) for entry in configs}
        (first, (task, config)), *others = built.items()
        for entry, (other, other_config) in others:
            if _same_problem(task, other):
                continue
            differ = _differences(problem_options(config), problem_options(other_config))
            raise InputError(
                f"column {label} would compare different problems: {first} fits {_size(_fitted(task))} pixels, {entry} "
                f"{_size(_fitted(other))}" + (f" ({', '.join(differ)})" if differ else
                                              " (their networks crop to different multiples of 2^depth)")
                + "\ngive bench --size and --crop (they set data.size and data.crop of every config), and the same "
                  "task options to each config (quoted with it), so that every config fits the same observation")
        fitted[label] = _size(_fitted(task))
    return _problem_sentence(problem_options(config), fitted)


def _differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """`--flag=ours / theirs` for each problem option whose values differ."""
    keys = dict.fromkeys([*ours, *theirs])
    return [f"{key}={shown_value(ours.get(key))} / {shown_value(theirs.get(key))}" for key in keys
            if shown_value(ours.get(key)) != shown_value(theirs.get(key))]


def _fitted(task: RestorationTask) -> tuple[int, ...]:
    """The spatial size a task's network outputs: the pixels it fits."""
    return tuple(task.output_size(task.observation[0]))


def _same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and bool((a == b).all())


def _same_problem(task: RestorationTask, other: RestorationTask) -> bool:
    """The same observation and the same ground truth (or none), exactly."""
    return _same_tensor(task.observation, other.observation) and _same_tensor(task.ground_truth, other.ground_truth)


def _problem_sentence(options: dict[str, Any], fitted: dict[str, str]) -> str:
    """What every cell of a column fits: the task and its options, the image's size and crop, the pixels."""
    task = str(options.pop("--model", "")).rsplit(".", 1)[-1]
    options.pop("--data", None)
    shown = " ".join(f"{key}={shown_value(value)}" for key, value in options.items())
    if "--data.size" in options and "--data.crop" in options:  # an image datamodule: say it in words too
        size, crop = options["--data.size"], options["--data.crop"]
        image = "each image at its own size" if size is None else f"each image resized to {size} px on its longer side"
        image += f", then its {crop}x{crop} centre crop" if crop is not None else ""
        image += ", cropped to the network's multiple"
    else:
        image = "each image"
    pixels = ", ".join(f"{label} {shape}" for label, shape in fitted.items())
    return f"Every cell of a column is the same problem: {task} of {image} ({shown}); pixels fitted: {pixels}."


def bench_table(outcomes: list[Outcome], name: str) -> list[dict]:
    """Rows of the table of figure `name`: config, figure (its metrics.json key), seconds (the sum over
    its runs), then per image and for `mean` the (mean, std, number of seeds) over the seeds whose run
    has the figure, and `failed`: the columns where a run failed. Configs without the figure are left out.

    The mean column is, per seed, the mean over the images (seeds with every image's figure), then
    mean ± std over those seeds.
    """
    configs = list(dict.fromkeys(o.run.params["config"] for o in outcomes))
    labels = list(dict.fromkeys(o.run.params["image"] for o in outcomes))
    seeds = list(dict.fromkeys(o.run.params["seed"] for o in outcomes))
    rows = []
    for config in configs:
        mine = [o for o in outcomes if o.run.params["config"] == config]
        key = figure_key(mine, name)
        found = {(o.run.params["image"], o.run.params["seed"]): o.metrics[key]
                 for o in mine if o.status == "done" and o.metrics.get(key) is not None}
        if not found:
            continue
        row = {"config": config, "figure": key, "seconds": sum(o.seconds for o in mine),
               "failed": {o.run.params["image"] for o in mine if o.status == "failed"}}
        for label in labels:
            row[label] = _stats([found[label, s] for s in seeds if (label, s) in found])
        complete = [s for s in seeds if all((label, s) in found for label in labels)]
        row["mean"] = _stats([float(np.mean([found[label, s] for label in labels])) for s in complete])
        if row["failed"]:
            row["failed"].add("mean")
        rows.append(row)
    return rows


def _stats(values: list[float]) -> tuple[float | None, float | None, int]:
    if not values:
        return None, None, 0
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None, len(values)


def _cell(stats: tuple[float | None, float | None, int], seeds: int, failed: bool) -> str:
    """`mean ± std`, `(k/n seeds)` when some seeds lack the figure; "failed", or "—" when a run finished
    without the figure (a sampler that took no posterior sample)."""
    mean, std, count = stats
    if mean is None:
        return "failed" if failed else "—"
    form = ".2f" if abs(mean) >= 1 else ".3f" if abs(mean) >= 0.01 or mean == 0 else ".2e"  # UCE is ~1e-4
    text = f"{mean:{form}}" + (f" ± {std:{form}}" if std is not None else "")
    return text + (f" ({count}/{seeds} seeds)" if count < seeds else "")


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}" + ("s" if len(items) != 1 else "")


def write_bench(out: Path, outcomes: list[Outcome], command: str, problem: str) -> None:
    """Write `out`/bench.md (the problem of every column, the tables, the command, the run time) and
    `out`/bench.csv (the same figures, one line per config x figure x column: mean, std, seeds)."""
    labels = list(dict.fromkeys(o.run.params["image"] for o in outcomes))
    seeds = list(dict.fromkeys(o.run.params["seed"] for o in outcomes))
    configs = list(dict.fromkeys(o.run.params["config"] for o in outcomes))
    lines = [f"# bench: {_count(configs, 'config')} x {_count(labels, 'image')} x {_count(seeds, 'seed')}", "",
             "```bash", command, "```", "", problem, ""]
    records, without_figure = [], False
    for name, caption in FIGURES.items():
        rows = bench_table(outcomes, name)
        if not rows:
            continue
        main_table = name == "psnr"  # it also names each row's figure and gives its run time
        headers = ["config", *(["figure"] if main_table else []), *labels, "mean", *(["seconds"] if main_table else [])]
        lines += [f"{caption}; mean ± std over seeds {', '.join(map(str, seeds))}.", "",
                  "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in rows:
            cells = [f"`{row['config']}`", *([row["figure"]] if main_table else []),
                     *(_cell(row[column], len(seeds), column in row["failed"]) for column in [*labels, "mean"]),
                     *([f"{row['seconds']:.0f}"] if main_table else [])]
            lines.append("| " + " | ".join(cells) + " |")
            without_figure |= any(row[c][0] is None and c not in row["failed"] for c in [*labels, "mean"])
            records += [{"config": row["config"], "figure": row["figure"], "image": column,
                         "mean": row[column][0], "std": row[column][1], "seeds": row[column][2]}
                        for column in [*labels, "mean"]]
        lines.append("")
    if without_figure:
        lines += ["—: the run finished without this figure (no posterior sample was taken: see its log.txt under runs/).", ""]
    total = sum(o.seconds for o in outcomes)
    lines.append(f"{len(outcomes)} runs, {total:.0f} s of run time in all (each run's process, wall clock); "
                 f"per-run figures in summary.md.")
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    with (out / "bench.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["config", "figure", "image", "mean", "std", "seeds"])
        writer.writeheader()
        writer.writerows(records)


def main(argv: list[str]) -> Path | None:
    """`bench --configs A [B ...] --images DIR|FILE|NAME ... [--seeds 0 1 ...] [--size S] [--crop C] [--jobs N]
    [--out DIR] [--dry-run] [-- EXTRA ARGS]`."""
    own, extra = split_extra_args(argv)
    parser = argparse.ArgumentParser(prog="python -m dip_lightning bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", required=True,
                        help='configs (rows): names or paths, each optionally with its own arguments, quoted: '
                             '"denoise.yaml --model.strategy.stopping=oracle"')
    parser.add_argument("--images", nargs="+", required=True,
                        help="images (columns): folders of PNG/JPEG/TIFF files, files or built-in names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seed_everything values (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one GPU each when there are that many)")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "bench", help="bench directory")
    parser.add_argument("--dry-run", action="store_true", help="print the command lines and their count, run nothing")
    parser.add_argument("--size", type=_side, default=argparse.SUPPRESS,
                        help="data.size of every run: resize each image's longer side to this (null: its own size)")
    parser.add_argument("--crop", type=_side, default=argparse.SUPPRESS,
                        help="data.crop of every run: the centre square of this side (null: the whole image)")
    args = parser.parse_args(own)
    extra = [*(f"--data.{key}={_null(getattr(args, key))}" for key in ("size", "crop") if hasattr(args, key)), *extra]
    images = bench_images(args.images)
    runs = bench_runs(args.configs, images, args.seeds, extra)
    problem = check_columns(args.configs, images, extra)
    if args.dry_run:
        print(problem)
        print_dry_run(runs, args.out)
        return None
    outcomes = run_all(runs, args.out, jobs=args.jobs, group=args.out.name, label="bench")
    write_summary(args.out, outcomes, {"psnr_selected": "psnr_selected", "psnr_posterior_mean": "psnr_posterior_mean",
                                       **{name: name for name in FIGURES if name != "psnr"}}, "bench")
    write_bench(args.out, outcomes, shlex.join(["python", "-m", "dip_lightning", "bench", *argv]), problem)
    exit_if_incomplete(outcomes, args.out)
    return args.out


def _side(value: str) -> int | None:
    """A --size / --crop value: a side in pixels (>= 1), or null."""
    if value.lower() in ("null", "none"):
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a side in pixels (>= 1) or null")
    return int(value)


def _null(value: int | None) -> str:
    return "null" if value is None else str(value)

