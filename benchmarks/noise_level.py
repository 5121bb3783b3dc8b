"""The noise inferred with the image (issue 19; docs/benchmarks.md, "Noise nobody measured").

    python benchmarks/noise_level.py --out outputs/noise_level --jobs 2          # runs what is missing, then tables
    python benchmarks/noise_level.py --out outputs/noise_level --dry-run         # the command lines
    python benchmarks/noise_level.py --out outputs/long10 --levels 10 --poisson --no-sgd \\
        --extra "--trainer.max_steps=5000 --model.strategy.burn_in=2000"         # longer chains
    python benchmarks/noise_level.py --out outputs/noise_level --poisson --estimates  # classical estimates, no run
    python benchmarks/noise_level.py --out outputs/noise_pilot --photos astronaut chelsea --levels 25 \\
        --poisson --no-sgd                                                       # the pilot in docs/benchmarks.md

On 64x64 centre crops of colour photos, observations are simulated here by the task's own noise model (seeded, the
task's `observation_seed` 0) and written as 16-bit TIFF files (quantisation 1/65535, far below any noise here), then
restored as real observations (`--data.is_observation=true`: the user's flow, so the noise is inferred unless told):

- Gaussian noise at each `--levels` sigma (0-255 units): `sgld_denoise.yaml` given the true sigma
  (`--model.infer_sigma=false --model.sigma=S`), the same config inferring it, and (unless `--no-sgd`) SGD with
  ES-WMV (`denoise.yaml` at the crop's size, width 64), which prints and records the classical estimate.
- Poisson-Gaussian noise at each `--poisson PEAK:READ` (photons per unit intensity, read-noise std in 0-255
  units): `sgld_denoise.yaml` with `--model.noise=poisson_gaussian` given (a, b), inferring them, and the
  constant-sigma Gaussian model inferring sigma.

Every run is one `fit` on the bench's resumable runner: rerunning the command runs only what is missing; an
interrupted study has whole photos (every model of a photo runs before the next photo). The samplers' posterior
mean and variance are read from each run's last checkpoint (float, not the 8-bit PNG) and scored against the clean
crop here: PSNR and coverage_95 (`calibration.Coverage`) over all pixels, dark ones (true value < 1/3) and bright
ones (> 2/3); SGD's `restored.png` gives its PSNR. The noise figures: `realised` is the issue's definition, the std
of y − x over the unclipped entries (below sigma where clipping truncates the noise), `drawn` the std of the noise
as drawn before clipping (what a censored likelihood estimates), `classical` the wavelet MAD estimate
(`sigma_initial_estimate`, the same number for every run of an observation). Writes `noise_level.md` (the
acceptance summary and the tables) and `noise_level.csv` (one row per run) in --out.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import torch
from skimage.io import imsave
from torchmetrics.functional.image import peak_signal_noise_ratio

from dip_lightning.bench import bench_runs
from dip_lightning.calibration import Coverage
from dip_lightning.data import ImageData
from dip_lightning.images import load_image
from dip_lightning.moments import pool_moments, variance
from dip_lightning.nets import SkipNet
from dip_lightning.runner import exit_if_incomplete, print_dry_run, run_all
from dip_lightning.tasks import Denoise
from dip_lightning.tasks.likelihood import clipped_entries
from dip_lightning.tasks.noise import classical_sigma
from step_size import write_crops

PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "rocket")
SAMPLER = "sgld_denoise.yaml --data.is_observation=true"
SGD = ("denoise.yaml --data.is_observation=true --data.size=null --data.crop=64 --model.net.width=64 "
       "--model.strategy.stopping=wmv")


def models(sigma: float, peak: float | None, sgd: bool) -> dict[str, str]:
    """Model label -> config entry (config and its own arguments) for one noise setting."""
    if peak is None:
        grid = {"sigma given": f"{SAMPLER} --model.infer_sigma=false --model.sigma={sigma:g}",
                "sigma inferred": SAMPLER}
        return {**grid, "SGD ES-WMV": SGD} if sgd else grid
    return {"(a, b) given": f"{SAMPLER} --model.noise=poisson_gaussian --model.infer_sigma=false "
                            f"--model.peak={peak:g} --model.sigma={sigma:g}",
            "(a, b) inferred": f"{SAMPLER} --model.noise=poisson_gaussian",
            "Gaussian, sigma inferred": SAMPLER}


def simulate(clean_path: str, sigma: float, peak: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, observation, the observation before clipping) (C, H, W), as `Denoise` simulates them (seed 0)."""
    noise = "gaussian" if peak is None else "poisson_gaussian"
    task = Denoise(net=lambda c_in, c_out: SkipNet(c_in, c_out, width=8, depth=5), sigma=sigma, noise=noise,
                   peak=peak, infer_sigma=False)
    task.build_problem(ImageData(clean_path))
    clean = task.ground_truth[0]
    task.clip_range = None  # the same draw, unclipped
    unclipped = task.observe(clean, torch.Generator().manual_seed(task.hparams.observation_seed))
    return clean, task.observation[0], unclipped


def observation_file(folder: Path, sigma: float, peak: float | None, photo: str) -> Path:
    """Where the observation of `photo` at one noise setting is written (Gaussian sigma, or PEAK:READ)."""
    name = f"sigma{sigma:g}_{photo}.tif" if peak is None else f"peak{peak:g}_read{sigma:g}_{photo}.tif"
    return folder / name


def write_observation(path: Path, observation: torch.Tensor) -> None:
    """A 16-bit TIFF (C, H, W) -> (H, W, C)."""
    array = (observation.permute(1, 2, 0).numpy() * 65535).round().astype(np.uint16)
    imsave(path, array, check_contrast=False)


def noise_stds(clean: torch.Tensor, observation: torch.Tensor, unclipped: torch.Tensor) -> dict[str, float]:
    """0-255 units: `realised` std of y − x over the unclipped entries, `drawn` std of the noise before clipping."""
    at_low, at_high = clipped_entries(observation, (0.0, 1.0))
    inside = ~(at_low | at_high)
    return {"realised": 255 * float((observation - clean)[inside].std()),
            "drawn": 255 * float((unclipped - clean).std())}


REGIONS = {"all": lambda x: torch.ones_like(x, dtype=torch.bool), "dark": lambda x: x < 1 / 3,
           "bright": lambda x: x > 2 / 3}


def sampler_scores(run_dir: Path, clean: torch.Tensor) -> dict[str, float]:
    """PSNR of the posterior mean and coverage_95 over all, dark and bright pixels, from the run's last checkpoint."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("PosteriorAverage")]
    total, mean, m2 = pool_moments(*(state[k].flatten(0, 1) for k in ("count", "mean", "m2")))
    var = variance(total, m2)
    figures = {"psnr": float(peak_signal_noise_ratio(mean, clean, data_range=1.0))}
    for name, region in REGIONS.items():
        where = region(clean)
        if bool(where.any()):
            coverage = Coverage(sync_on_compute=False)
            coverage.update(mean[where], var[where], clean[where])
            figures[f"coverage_{name}"] = float(coverage.compute())
    return figures


def sgd_scores(run_dir: Path, clean: torch.Tensor) -> dict[str, float]:
    return {"psnr": float(peak_signal_noise_ratio(load_image(run_dir / "restored.png"), clean, data_range=1.0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/noise_level"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="photos (NAME or NAME@SIZE)")
    parser.add_argument("--levels", nargs="*", type=float, default=[10, 25, 50], help="Gaussian sigmas (0-255)")
    parser.add_argument("--poisson", nargs="*", default=["30:5", "100:2"], help="PEAK:READ settings")
    parser.add_argument("--sgd", action=argparse.BooleanOptionalAction, default=True,
                        help="the SGD ES-WMV runs on the Gaussian observations")
    parser.add_argument("--extra", default="", help="arguments appended to every run, each as --option=value, "
                        "e.g. '--trainer.max_steps=6000 --model.strategy.burn_in=2000' (the SGD runs drop the "
                        "strategy options)")
    parser.add_argument("--dry-run", action="store_true", help="print the command lines and stop")
    parser.add_argument("--estimates", action="store_true",
                        help="print the classical estimate of every Gaussian observation (no run needed) and stop")
    args = parser.parse_args()
    crops = write_crops(tuple(args.photos), args.out / "crops")
    (args.out / "observations").mkdir(parents=True, exist_ok=True)
    settings = [(sigma, None) for sigma in args.levels]
    settings += [(float(read), float(peak)) for peak, read in (entry.split(":") for entry in args.poisson)]
    runs, where, truth = [], [], {}
    for sigma, peak in settings:
        setting = f"sigma {sigma:g}" if peak is None else f"peak {peak:g}, read {sigma:g}"
        for photo, path in crops.items():
            file = observation_file(args.out / "observations", sigma, peak, photo)
            clean, observation, unclipped = simulate(path, sigma, peak)
            if not file.exists():
                write_observation(file, observation)
            truth[(setting, photo)] = (clean, noise_stds(clean, load_image(file), unclipped), sigma, peak)
            for model, entry in models(sigma, peak, args.sgd).items():
                extra = [word for word in args.extra.split() if not (model.startswith("SGD") and "strategy" in word)]
                (run,) = bench_runs([entry], {photo: str(file)}, [0], extra)
                runs.append(run)
                where.append((setting, model, photo))
    if args.dry_run:
        print_dry_run(runs, args.out)
        return
    if args.estimates:
        print(estimates(truth, args.out / "observations"))
        return
    outcomes = run_all(runs, args.out, jobs=args.jobs, label="noise-level runs")
    rows = []
    for (setting, model, photo), outcome in zip(where, outcomes, strict=True):
        row = {"setting": setting, "model": model, "photo": photo, "status": outcome.status,
               "command": " ".join(outcome.run.command[3:])}
        if outcome.status == "done":
            clean, stds, sigma, peak = truth[(setting, photo)]
            metrics = outcome.metrics
            scores = sgd_scores if model.startswith("SGD") else sampler_scores
            row.update(scores(outcome.run_dir, clean), **stds, classical=metrics.get("sigma_initial_estimate"),
                       sigma_mean=metrics.get("sigma_posterior_mean"), sigma_std=metrics.get("sigma_posterior_std"),
                       a_mean=metrics.get("noise_a_posterior_mean"), b_mean=metrics.get("noise_b_posterior_mean"),
                       ratio=metrics.get("mse_observation_ratio"), seconds=metrics.get("seconds"))
            if peak is not None:
                row.update(a_true=1 / peak, b_true=(sigma / 255) ** 2)
        rows.append(row)
    columns = ["setting", "model", "photo", "status", "psnr", "coverage_all", "coverage_dark", "coverage_bright",
               "realised", "drawn", "classical", "sigma_mean", "sigma_std", "a_true", "a_mean", "b_true", "b_mean",
               "ratio", "seconds", "command"]
    with (args.out / "noise_level.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
    done = [row for row in rows if row["status"] == "done"]
    text = summary(done) + "\n" + tables(done)
    (args.out / "noise_level.md").write_text(text)
    print(text)
    print(f"tables: {args.out / 'noise_level.md'}, rows: {args.out / 'noise_level.csv'}")
    exit_if_incomplete(outcomes, args.out)


def estimates(truth: dict, folder: Path) -> str:
    """Markdown: the classical estimate (what SGD prints and records, `tasks.noise.classical_sigma` over the
    unclipped entries of the observation as loaded) of every Gaussian observation against its noise stds, and the
    issue's criterion (within 10% of the realised std)."""
    lines = ["| sigma | photo | realised | drawn | classical | vs realised | vs drawn |",
             "|---|---|---|---|---|---|---|"]
    errors = []
    for (_, photo), (_, stds, sigma, peak) in truth.items():
        if peak is not None:
            continue
        observation = load_image(observation_file(folder, sigma, peak, photo))
        classical = 255 * classical_sigma(observation[None], None, (0.0, 1.0))
        errors.append(classical / stds["realised"] - 1)
        lines.append(f"| {sigma:g} | {photo} | {stds['realised']:.2f} | {stds['drawn']:.2f} | {classical:.2f} | "
                     f"{_pct(classical, stds['realised'])} | {_pct(classical, stds['drawn'])} |")
    met = sum(abs(error) <= 0.10 for error in errors)
    worst = max(errors, key=abs) if errors else float("nan")
    return ("\n".join(lines) + f"\n\nclassical estimate within 10% of the realised std: {met} of {len(errors)} "
            f"(worst {worst:+.3f})")


def _f(value: float | None, digits: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _pct(value: float | None, reference: float | None) -> str:
    return "" if value is None or not reference else f"{value / reference - 1:+.1%}"


def _index(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(row["setting"], row["model"], row["photo"]): row for row in rows}


def summary(rows: list[dict]) -> str:
    """The issue's acceptance criteria, each as 'met on n of m' with the worst value."""
    by = _index(rows)
    checks: dict[str, list[tuple[bool, float]]] = {}

    def check(name: str, ok: bool, value: float) -> None:
        checks.setdefault(name, []).append((ok, value))

    for (setting, model, photo), row in by.items():
        if model == "sigma inferred" and row["sigma_mean"] is not None:
            error = row["sigma_mean"] / row["realised"] - 1
            check("Gaussian: posterior mean of sigma within 5% of the realised std", abs(error) <= 0.05, error)
            error = row["sigma_mean"] / row["drawn"] - 1  # what the censored likelihood estimates
            check("Gaussian: posterior mean of sigma within 5% of the drawn std", abs(error) <= 0.05, error)
            given = by.get((setting, "sigma given", photo))
            if given:
                check("Gaussian: PSNR within 0.3 dB of the run given sigma", abs(row["psnr"] - given["psnr"]) <= 0.3,
                      row["psnr"] - given["psnr"])
                delta = row["coverage_all"] - given["coverage_all"]
                check("Gaussian: coverage_95 within 0.03 of the run given sigma", abs(delta) <= 0.03, delta)
        if model == "SGD ES-WMV":
            error = row["classical"] / row["realised"] - 1
            check("SGD: classical estimate within 10% of the realised std", abs(error) <= 0.10, error)
        if model == "(a, b) inferred" and row["a_mean"] is not None:
            for name in ("a", "b"):
                error = row[f"{name}_mean"] / row[f"{name}_true"] - 1
                check(f"Poisson-Gaussian: {name} within 15%", abs(error) <= 0.15, error)
            check("Poisson-Gaussian: coverage_95 in [0.88, 0.97]", 0.88 <= row["coverage_all"] <= 0.97,
                  row["coverage_all"])
            gaussian = by.get((setting, "Gaussian, sigma inferred", photo))
            if gaussian:
                check("Poisson-Gaussian: PSNR at or above the Gaussian model's (inferred sigma)",
                      row["psnr"] >= gaussian["psnr"], row["psnr"] - gaussian["psnr"])
    lines = ["### Acceptance (issue 19)", "", "| criterion | met | worst |", "|---|---|---|"]
    for name, results in checks.items():
        worst = max((value for _, value in results), key=abs)
        lines.append(f"| {name} | {sum(ok for ok, _ in results)} of {len(results)} | {worst:+.3f} |")
    return "\n".join(lines) + "\n"


def tables(rows: list[dict]) -> str:
    """Markdown: Gaussian noise (sigma inferred against given, the classical estimate, SGD), then Poisson-Gaussian
    noise ((a, b) given and inferred, the Gaussian model; coverage on dark and bright pixels)."""
    by = _index(rows)
    lines = ["### Gaussian noise: sigma inferred against given (0-255 units)", "",
             "| sigma | photo | realised | drawn | classical (vs realised) | inferred ± std (vs realised) | "
             "PSNR given / inferred (Δ) | coverage_95 given / inferred (Δ) | dark, bright coverage given / "
             "inferred | SGD ES-WMV PSNR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (setting, model, photo), row in by.items():
        if model != "sigma inferred":
            continue
        given, sgd = by.get((setting, "sigma given", photo), {}), by.get((setting, "SGD ES-WMV", photo), {})
        real = row["realised"]
        lines.append(
            f"| {setting.split()[1]} | {photo} | {real:.2f} | {row['drawn']:.2f} | {row['classical']:.2f} "
            f"({_pct(row['classical'], real)}) | {_f(row['sigma_mean'], 2)} ± {_f(row['sigma_std'], 2)} "
            f"({_pct(row['sigma_mean'], real)}) | {_f(given.get('psnr'), 2)} / {row['psnr']:.2f} "
            f"({_f(row['psnr'] - given['psnr'] if given else None, 2, sign=True)}) | "
            f"{_f(given.get('coverage_all'), 3)} / {row['coverage_all']:.3f} "
            f"({_f(row['coverage_all'] - given['coverage_all'] if given else None, 3, sign=True)}) | "
            f"{_f(given.get('coverage_dark'), 3)}, {_f(given.get('coverage_bright'), 3)} / "
            f"{_f(row.get('coverage_dark'), 3)}, {_f(row.get('coverage_bright'), 3)} | {_f(sgd.get('psnr'), 2)} |")
    poisson = [(key, row) for key, row in by.items() if "a_true" in row]
    if poisson:
        lines += ["", "### Poisson-Gaussian noise: (a, b) given and inferred, and the constant-sigma Gaussian model",
                  "",
                  "| setting | photo | model | a (vs true) | b (vs true) | PSNR | coverage_95 | dark | bright |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for (setting, model, photo), row in poisson:
            if row["a_mean"] is not None:
                a_cell = f"{row['a_mean']:.4f} ({_pct(row['a_mean'], row['a_true'])})"
                b_cell = f"{row['b_mean']:.2e} ({_pct(row['b_mean'], row['b_true'])})"
            elif row["sigma_mean"] is not None:
                a_cell, b_cell = "", f"sigma {row['sigma_mean']:.2f}"
            else:
                a_cell, b_cell = f"{row['a_true']:.4f} (true)", f"{row['b_true']:.2e} (true)"
            lines.append(f"| {setting} | {photo} | {model} | {a_cell} | {b_cell} | {row['psnr']:.2f} | "
                         f"{row['coverage_all']:.3f} | {_f(row.get('coverage_dark'), 3)} | "
                         f"{_f(row.get('coverage_bright'), 3)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
