"""Restore an observation with a GP: choose and fit the kernel, then run the posterior (one call)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from .empirical import default_cache_dir, estimate_kernel, inference_kernel
from .hyper import fit_amplitude, fit_rbf
from .inference import Posterior, gp_posterior
from .kernels import rbf_kernel, rbf_radius


@dataclass
class NetConfig:
    """The network whose random-initialisation output covariance is the DIP kernel.

    Args:
        kind: skip, autoencoder, conv, or a class path of a `dip_lightning.nets`-style network.
        width: channels of every scale / layer.
        depth: scales (skip, autoencoder) or conv layers (conv).
        in_channels: channels of the random code.
        args: further constructor arguments (e.g. skip_channels, activation, upsample_mode, dim).
    """

    kind: str = "skip"
    width: int = 128
    depth: int = 2
    in_channels: int = 32
    args: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """{"class_path", "init_args"} for `estimate_kernel` (one output channel, no sigmoid)."""
        init = dict(in_channels=self.in_channels, out_channels=1, width=self.width, depth=self.depth,
                    sigmoid=False, **self.args)
        return {"class_path": self.kind, "init_args": init}


@dataclass
class KernelConfig:
    """The GP's kernel.

    Args:
        type: "dip" (empirical kernel of random networks `net`) or "rbf".
        net: the network of the DIP kernel.
        samples: random networks averaged for the DIP kernel (10 give it within 1% of 400).
        radius: DIP kernel support in px (table radius and Wendland taper radius).
        centre: subtract the DIP kernel's constant floor (modelled by the prior mean anyway).
        jitter: DIP kernel noise floor, as a fraction of K(0) (keeps CG well-posed without noise).
        cache: reuse DIP kernels cached on disk ($DIP_LIGHTNING_CACHE or ~/.cache/dip_lightning).
        seed: seed of the DIP kernel's random networks.
        lengthscale: RBF lengthscale in px; null fits it by marginal likelihood.
        variance: RBF variance (intensity²); null fits it.
        noise_var: RBF noise variance for exact observations (inpainting); null fits it. With sigma > 0
            the noise variance is (sigma/255)².
        max_points: observed pixels used by the marginal likelihood (a dense O(P³) fit).
    """

    type: str = "dip"
    net: NetConfig = field(default_factory=NetConfig)
    samples: int = 10
    radius: int = 48
    centre: bool = True
    jitter: float = 1e-4
    cache: bool = True
    seed: int = 0
    lengthscale: float | None = None
    variance: float | None = None
    noise_var: float | None = None
    max_points: int = 1024


@dataclass
class Restoration:
    """A GP restoration: the image (C, *S) in [0, 1], the posterior, the kernel used and run figures."""

    restored: torch.Tensor
    posterior: Posterior
    table: torch.Tensor
    noise_var: float
    info: dict[str, Any]


def build_kernel(config: KernelConfig, observation: torch.Tensor, mask: torch.Tensor,
                 sigma: float) -> tuple[torch.Tensor, float, dict[str, Any]]:
    """Kernel table (intensity²), noise variance s² and fitted figures for an observation (C, *S)."""
    known_noise = (sigma / 255) ** 2
    dim = observation.dim() - 1
    if config.type == "dip":
        spec = config.net.spec()
        spec["init_args"].setdefault("dim", dim)
        estimate = estimate_kernel(spec, config.radius, samples=config.samples, seed=config.seed,
                                   cache_dir=default_cache_dir() if config.cache else None)
        shape = inference_kernel(estimate, config.radius, centre=config.centre)
        amplitude = fit_amplitude(shape, observation, mask, noise_var=known_noise, jitter=config.jitter,
                                  max_points=config.max_points)
        info = {"kernel_amplitude": amplitude, "phase_spread": estimate.phase_spread}
        return amplitude * shape, known_noise + amplitude * config.jitter, info
    if config.type == "rbf":
        noise = known_noise if sigma > 0 else config.noise_var
        if config.lengthscale is None or config.variance is None:
            fitted = fit_rbf(observation, mask, noise_var=noise, max_points=config.max_points)
            lengthscale = config.lengthscale or fitted.lengthscale
            variance = config.variance or fitted.variance
            noise = fitted.noise_var if noise is None else noise
        else:
            lengthscale, variance = config.lengthscale, config.variance
        if noise is None:
            raise InputError("an RBF kernel with fixed lengthscale and variance needs kernel.noise_var too "
                             "(exact observations make CG stall without a noise term)")
        table = rbf_kernel(rbf_radius(lengthscale), lengthscale, variance, dim)
        info = {"rbf_lengthscale": lengthscale, "rbf_variance": variance, "rbf_noise_var": noise}
        return table, noise, info
    raise InputError(f"unknown kernel type {config.type!r}: choose 'dip' or 'rbf'")


def restore(observation: torch.Tensor, mask: torch.Tensor, *, sigma: float = 0.0,
            kernel: KernelConfig | None = None, solver: str = "cg", variance_samples: int = 64,
            cg_tol: float = 1e-4, max_iter: int = 1000, seed: int = 0) -> Restoration:
    """GP restoration of an observation (C, *S) with mask (*S) or (C, *S), noise std `sigma` (0-255 units).

    The restored image is the posterior mean clipped to [0, 1]; with exact observations (sigma = 0) the
    observed pixels keep their values (as the GP-DIP reference does).
    """
    kernel = kernel or KernelConfig()
    start = time.perf_counter()
    table, noise_var, info = build_kernel(kernel, observation, mask, sigma)
    fitted = time.perf_counter()
    posterior = gp_posterior(table, observation, mask, noise_var, solver=solver, variance_samples=variance_samples,
                             tol=cg_tol, max_iter=max_iter, generator=torch.Generator().manual_seed(seed))
    done = time.perf_counter()
    restored = posterior.mean.clamp(0, 1)
    if sigma == 0:
        restored = torch.where(mask.bool().expand_as(restored), observation, restored)
    info.update(seconds_kernel=fitted - start, seconds_posterior=done - fitted)
    return Restoration(restored, posterior, table, noise_var, info)
