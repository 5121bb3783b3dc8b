"""`python -m dip_lightning gp --config gp_inpaint.yaml`: GP restoration with the DIP (or an RBF) kernel.

Writes the same artifacts as a DIP `fit` run, so both compare side by side: restored.png,
observation.png, ground_truth.png, uncertainty.png, posterior_std.npy, metrics.json (psnr, seconds,
cg_iterations, ...) and config.yaml. The calibration figures (`uce`, `coverage_95`, `nll`,
`spearman_std_abs_err`) are those of an SGLD fit, over all pixels; inpainting adds `psnr_missing` and
`coverage_95_missing` (the missing pixels only).
"""

from __future__ import annotations

import time
from pathlib import Path

import jsonargparse
import numpy as np
from torchmetrics.functional.image import peak_signal_noise_ratio

from ..artifacts import new_run_dir, save_image, save_uncertainty, write_metrics
from ..calibration import calibration_metrics
from ..errors import InputError
from ..images import load_image
from .problem import lanczos_resize, observe
from .restore import KernelConfig, restore


def run(image: str = "camera", crop: int | None = None, size: int | None = 64, task: str = "inpaint",
        missing: float = 0.5, sigma: float = 0.0, observation_seed: int = 0,
        kernel: KernelConfig = KernelConfig(), solver: str = "cg", variance_samples: int = 64,
        cg_tol: float = 1e-4, max_iter: int = 1000, seed: int = 0, output_dir: str = "outputs") -> Path:
    """Restore a simulated observation of an image by GP inference and write the run's artifacts.

    Args:
        image: a file path or a built-in name (camera, astronaut, ...).
        crop: side of a centred square crop taken first; null keeps the whole image.
        size: resize to size x size with PIL's Lanczos filter (the GP-DIP protocol); null keeps the size.
        task: inpaint (Bernoulli missing pixels) or denoise (additive Gaussian noise, all pixels observed).
        missing: inpainting: fraction of missing pixels.
        sigma: observation noise std in 0-255 units (denoising: 25).
        observation_seed: seed of the mask and noise (the same problem for every run).
        kernel: the GP kernel (DIP kernel of random networks, or RBF fitted by marginal likelihood).
        solver: cg (FFT matvecs, any size) or dense (exact Cholesky, at most 64 x 64).
        variance_samples: Matheron samples for the posterior std (cg solver; 0 skips the std).
        cg_tol: relative residual at which CG stops.
        max_iter: CG iteration limit (an error with the residual reached beyond it).
        seed: seed of the posterior samples.
        output_dir: root under which the run directory is created.
    """
    start = time.perf_counter()
    clean = load_image(image, crop)
    if size is not None:
        clean = lanczos_resize(clean, size)
    observation, mask = observe(clean, task, missing=missing, sigma=sigma, seed=observation_seed)
    result = restore(observation, mask, sigma=sigma, kernel=kernel, solver=solver,
                     variance_samples=variance_samples, cg_tol=cg_tol,
                     max_iter=max_iter, seed=seed)
    seconds = time.perf_counter() - start
    run_dir = new_run_dir(output_dir, f"gp-{task}-{kernel.type}")
    save_image(run_dir / "restored.png", result.restored)
    save_image(run_dir / "observation.png", observation)
    save_image(run_dir / "ground_truth.png", clean)
    metrics = {
        "psnr": float(peak_signal_noise_ratio(result.restored[None], clean[None], data_range=1.0)),
        "psnr_observation_input": float(peak_signal_noise_ratio(observation[None], clean[None], data_range=1.0)),
        "seconds": seconds,
        "cg_iterations": result.posterior.cg_iterations,
        "cg_residual": result.posterior.residual,
        "noise_var": result.noise_var,
        **result.info,
    }
    if not mask.all():
        missing = ~mask.expand_as(clean)
        metrics["psnr_missing"] = float(peak_signal_noise_ratio(result.restored[missing], clean[missing],
                                                                data_range=1.0))
    std = result.posterior.std
    if std is not None:
        save_uncertainty(run_dir / "uncertainty.png", std, title="GP posterior std")
        np.save(run_dir / "posterior_std.npy", std.numpy())
        calibration = calibration_metrics()
        calibration.update(result.restored, std.square(), clean)
        metrics.update({key: float(value) for key, value in calibration.compute().items()})
        metrics["mean_std"] = float(std.mean())
        if not mask.all():
            missing = ~mask.expand_as(clean)
            covered = (result.restored - clean).abs() <= 1.96 * std
            metrics["coverage_95_missing"] = float(covered[missing].float().mean())
    write_metrics(run_dir / "metrics.json", metrics)
    print(f"gp {task} ({kernel.type} kernel, {solver}): psnr {metrics['psnr']:.2f} dB, "
          f"{result.posterior.cg_iterations} CG iterations, {seconds:.2f} s")
    return run_dir


def parser() -> jsonargparse.ArgumentParser:
    """The `gp` argument parser: --config FILE, --print_config, --key=value overrides."""
    p = jsonargparse.ArgumentParser(prog="python -m dip_lightning gp", description=run.__doc__.splitlines()[0],
                                    default_meta=False, exit_on_error=False)
    p.add_argument("--config", action=jsonargparse.ActionConfigFile, help="a YAML config (path or name in configs/)")
    p.add_function_arguments(run)
    return p


def main(argv: list[str]) -> Path:
    """Parse `argv` (after `gp`), run, save the resolved config in the run dir, return the run dir."""
    from ..cli import resolve_config_args
    from ..config_errors import explain

    p = parser()
    try:
        config = p.parse_args(resolve_config_args(argv))
    except jsonargparse.ArgumentError as err:  # one or two lines, with a near miss (--verbose: the full report)
        raise InputError(explain(str(err), [flag for action in p._actions for flag in action.option_strings])) from err
    config.pop("config", None)
    run_dir = run(**p.instantiate_classes(config).as_dict())
    p.save(config, run_dir / "config.yaml", skip_none=False)
    return run_dir
