"""The GP-DIP paper's diagnostic from two real runs: the MSE to the noisy observation falls towards 0 under
SGD (it fits the noise) but settles near sigma² under SGLD (a posterior sample fits the image, not the noise).

Reads the `mse/observation` and PSNR curves of a CSVLogger log of each run and draws one figure: left the
MSE to the observation over steps (log scale, sigma² dashed), right the PSNR against the ground truth of
the SGD output, of the SGLD sample and of the running posterior mean. Prints each curve's late level.

    python benchmarks/mse_diagnostic.py --sgd LOG_DIR --sgld LOG_DIR [--sigma 25] [--out FIGURE.png]
    python benchmarks/mse_diagnostic.py --run [--steps 3000]   # makes both runs first (about 2 x 3-10 min)

A run logs to CSV with `--trainer.logger=CSVLogger --trainer.logger.init_args.save_dir=LOG_DIR`.
`--run` fits configs/denoise.yaml (on its 64x64 crop, width 64) with `--model.strategy.stopping=fixed` and
configs/sgld_denoise.yaml.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first: no display needed)

RESULTS = Path(__file__).resolve().parent / "results" / "mse_diagnostic"
RUNS = {"sgd": ["denoise", "--data.size=null", "--data.crop=64", "--model.net.width=64",
                "--model.strategy.stopping=fixed"],
        "sgld": ["sgld_denoise"]}  # the same 64x64 crop and width-64 net


def read_curves(log_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every logged column of the CSVLogger log under `log_dir`: name -> (steps, values)."""
    (path,) = sorted(Path(log_dir).rglob("metrics.csv"))[-1:]
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for row in csv.DictReader(path.open()):
        for key, value in row.items():
            if key not in ("step", "epoch") and value:
                steps, values = curves.setdefault(key, ([], []))
                steps.append(int(row["step"]) + 1)  # the logger's step is 0-based
                values.append(float(value))
    return curves


def late_mean(curve: tuple[list[int], list[float]], fraction: float = 1 / 3) -> float:
    """Mean of the last `fraction` of a curve's points."""
    values = curve[1]
    tail = values[int(len(values) * (1 - fraction)):]
    return sum(tail) / len(tail)


def run(name: str, steps: int) -> Path:
    """Fit one of RUNS through the CLI with a CSV log; returns the log directory."""
    log_dir = RESULTS / name
    config, *overrides = RUNS[name]
    subprocess.run([sys.executable, "-m", "dip_lightning", "fit", "--config", config, *overrides,
                    f"--trainer.max_steps={steps}", "--trainer.logger=CSVLogger",
                    f"--trainer.logger.init_args.save_dir={log_dir}", f"--trainer.default_root_dir={RESULTS}",
                    "--trainer.enable_progress_bar=false"], check=True)
    return log_dir


def plot(sgd: dict, sgld: dict, sigma: float, out: Path) -> None:
    """Two panels: MSE to the observation, and PSNR to the ground truth, over steps."""
    variance = (sigma / 255) ** 2
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    left.plot(*sgd["mse/observation"], label="SGD (Adam)", color="tab:red", lw=1)
    left.plot(*sgld["mse/observation"], label="SGLD", color="tab:blue", lw=1)
    left.axhline(variance, color="k", ls="--", lw=1, label=f"σ² (σ = {sigma:g}/255)")
    left.set(yscale="log", xlabel="step", ylabel="MSE(output, observation)", title="MSE to the noisy observation")
    left.legend(fontsize=8)
    right.plot(*sgd["psnr/ground_truth"], label="SGD output", color="tab:red", lw=1)
    right.plot(*sgld["psnr/ground_truth"], label="SGLD sample", color="tab:blue", lw=0.6, alpha=0.6)
    if "psnr/posterior_mean" in sgld:
        right.plot(*sgld["psnr/posterior_mean"], label="SGLD posterior mean", color="navy", lw=1.8)
    right.set(xlabel="step", ylabel="PSNR to ground truth (dB)", title="Restoration quality")
    right.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sgd", type=Path, help="CSVLogger directory of the SGD run")
    parser.add_argument("--sgld", type=Path, help="CSVLogger directory of the SGLD run")
    parser.add_argument("--run", action="store_true", help="make both runs first (configs/denoise, sgld_denoise)")
    parser.add_argument("--steps", type=int, default=3000, help="steps of each run made by --run")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std of both runs, 0-255 units")
    parser.add_argument("--out", type=Path, default=RESULTS / "mse_diagnostic.png")
    args = parser.parse_args()
    if args.run:
        args.sgd, args.sgld = run("sgd", args.steps), run("sgld", args.steps)
    if args.sgd is None or args.sgld is None:
        parser.error("give --sgd and --sgld log directories, or --run")
    sgd, sgld = read_curves(args.sgd), read_curves(args.sgld)
    plot(sgd, sgld, args.sigma, args.out)
    variance = (args.sigma / 255) ** 2
    for name, curves in (("SGD", sgd), ("SGLD", sgld)):
        mse = curves["mse/observation"]
        print(f"{name}: MSE to the observation over the last third of the run = "
              f"{late_mean(mse) / variance:.3f} sigma² (last logged: {mse[1][-1] / variance:.3f} sigma² "
              f"at step {mse[0][-1]})")
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
