"""The spread behind the default suite's tolerances on fitted results: each case runs a test's comparison
through the real CLI (tests/conftest.py's tiny problem) over seeds and torch thread counts, and prints every
difference and their range. A test's tolerance is set above the largest difference measured here, and its
docstring names the case.

    python benchmarks/test_tolerances.py bf16 likelihood kick chains --seeds 0 1 2 3 4 5 6 7 8 9 --threads 1 2

Cases (the test each one backs):
    bf16        |psnr_selected(bf16-mixed) - psnr_selected(float32)| and the same for psnr_ema_final, 300 Adam
                steps on a 32x32 crop (tests/test_precision.py)
    likelihood  |psnr_selected(censored) - psnr_selected(gaussian)|, 30 steps (tests/test_likelihood.py)
    kick        |psnr_per_chain[1] - psnr_per_chain[0]| of a chain kicked out of the band at step 50 and
                recovered, psgld and sgld (tests/test_sgld_strategy.py)
    chains      max |chain 2 of a 3-chain run - the one-chain run of seed + 2| over the output, for each
                sampler and precision of tests/test_chains.py
    gp          the PSNR of GP inpainting of camera (64x64, half the pixels missing, mask seed = seed) with the
                DIP kernel (network seed = seed) and with a fitted RBF kernel, and the RBF's lengthscale
                (tests/test_gp_cli.py)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # conftest: the tiny problem and the test callbacks the cases use

from conftest import tiny_args  # noqa: E402

from dip_lightning.cli import main  # noqa: E402


def fit(config: str, *args: str) -> Path:
    """A tiny `fit` of `config` in this process (quietly); returns its run directory."""
    root = Path(tempfile.mkdtemp(prefix="tolerances-"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["fit", "--config", config, *tiny_args(config), f"--trainer.default_root_dir={root}", *args])
        except SystemExit as stop:
            if stop.code:
                raise RuntimeError(f"fit {config} {' '.join(args)} failed ({stop.code})") from None
    return Path(out.getvalue().strip().splitlines()[-1].split("outputs: ", 1)[1])


def metrics(config: str, *args: str) -> dict:
    return json.loads((fit(config, *args) / "metrics.json").read_text())


def output(config: str, *args: str) -> torch.Tensor:
    checkpoint = torch.load(fit(config, *args) / "checkpoints" / "last.ckpt", weights_only=False)
    return checkpoint["state_dict"]["output"]


def bf16(seed: int) -> dict[str, float]:
    args = ("--data.size=null", "--model.strategy.stopping=fixed", "--trainer.max_steps=300",
            f"--seed_everything={seed}")
    fp32 = metrics("denoise.yaml", *args)
    half = metrics("denoise.yaml", *args, "--trainer.precision=bf16-mixed")
    keys = ("psnr_selected", "psnr_ema_final")
    print(f"   float32 {[round(fp32[k], 4) for k in keys]}, bf16-mixed {[round(half[k], 4) for k in keys]}")
    return {key: abs(half[key] - fp32[key]) for key in keys}


def likelihood(seed: int) -> dict[str, float]:
    args = ("--model.strategy.stopping=fixed", f"--seed_everything={seed}")
    censored = metrics("denoise.yaml", *args)["psnr_selected"]
    gaussian = metrics("denoise.yaml", *args, "--model.likelihood=gaussian")["psnr_selected"]
    return {"": abs(censored - gaussian)}


def kick(seed: int) -> dict[str, float]:
    found = {}
    for sampler, lr in (("psgld", 0.01), ("sgld", 3.0)):
        chain = metrics("sgld_denoise.yaml", f"--model.strategy.sampler={sampler}", f"--model.strategy.lr={lr}",
                        "--model.strategy.chains=2", "--model.strategy.burn_in=30", "--model.strategy.thin=1",
                        "--trainer.max_steps=70", "--trainer.callbacks+=conftest.KickChain",
                        "--trainer.callbacks.step=50", "--trainer.callbacks.chain=1",
                        f"--seed_everything={seed}")["psnr_per_chain"]
        found[sampler] = abs(chain[1] - chain[0])
    return found


CHAIN_STEPS = ("--trainer.max_steps=10", "--model.strategy.burn_in=5", "--model.strategy.thin=1",
               "--model.strategy.max_mse_ratio=1e9", "--model.strategy.eps=1e-5")
CHAIN_CASES = {
    "adam-f64": ("denoise.yaml", ("--trainer.max_steps=10", "--model.strategy.stopping=fixed"), "64-true"),
    "psgld-f64": ("sgld_denoise.yaml", CHAIN_STEPS, "64-true"),
    "paper-f64": ("paper/sgld_denoise.yaml", CHAIN_STEPS, "64-true"),
    "sgld-f32": ("sgld_denoise.yaml", (*CHAIN_STEPS, "--model.strategy.sampler=sgld"), "32-true"),
}


def chains(seed: int) -> dict[str, float]:
    found = {}
    for name, (config, args, precision) in CHAIN_CASES.items():
        common = (*args, f"--trainer.precision={precision}")
        batched = output(config, "--model.strategy.chains=3", f"--seed_everything={seed}", *common)
        alone = output(config, f"--seed_everything={seed + 2}", *common)
        found[name] = float((batched[2] - alone[0]).abs().max())
    return found


def gp(seed: int) -> dict[str, float]:
    from dip_lightning.gp.problem import lanczos_resize, observe
    from dip_lightning.gp.restore import KernelConfig, restore
    from dip_lightning.images import load_image

    clean = lanczos_resize(load_image("camera"), 64)
    observation, mask = observe(clean, "inpaint", missing=0.5, seed=seed)
    psnr = lambda image: float(10 * torch.log10(1 / (image - clean).square().mean()))  # noqa: E731
    dip = restore(observation, mask, kernel=KernelConfig(cache=False, seed=seed), variance_samples=0)
    rbf = restore(observation, mask, kernel=KernelConfig(type="rbf"), variance_samples=0)
    return {"dip_psnr": psnr(dip.restored), "rbf_psnr": psnr(rbf.restored),
            "rbf_lengthscale": float(rbf.info["rbf_lengthscale"])}


CASES: dict[str, Callable[[int], dict[str, float]]] = {"bf16": bf16, "likelihood": likelihood, "kick": kick,
                                                       "chains": chains, "gp": gp}


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", choices=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    for case in args.cases:
        found: dict[str, list[float]] = {}
        for threads in args.threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # the CLI keeps the number the user set
            torch.set_num_threads(threads)
            for seed in args.seeds:
                for part, value in CASES[case](seed).items():
                    print(f"{case}{'/' + part if part else ''} threads={threads} seed={seed}: {value:.6g}", flush=True)
                    found.setdefault(part, []).append(value)
        for part, values in found.items():
            print(f"== {case}{'/' + part if part else ''}: {min(values):.6g} to {max(values):.6g} over seeds "
                  f"{args.seeds} and threads {args.threads}", flush=True)


if __name__ == "__main__":
    main_()
