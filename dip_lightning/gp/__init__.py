"""DIP as a Gaussian process (docs/science.md §5): analytic and empirical DIP kernels and fast GP inference.

- `kernels`: analytic kernel tables (RBF, smoothed-noise inputs, the conv-ReLU / LeakyReLU recursion).
- `empirical`: the DIP kernel of random networks from a few samples, cached on disk, made PSD.
- `stationary`: a stationary kernel on a grid as a circulant (FFT matvecs, prior samples, PSD repair).
- `cg`, `inference`: posterior mean by CG, std by Matheron's rule, a dense solver for small images.
- `hyper`: hyperparameters by marginal likelihood (RBF; the DIP kernel's amplitude).
- `problem`, `restore`, `cli`: the `python -m dip_lightning gp` command.
"""

from .empirical import KernelEstimate, estimate_kernel, inference_kernel
from .hyper import RBFParams, fit_amplitude, fit_rbf
from .inference import Posterior, gp_posterior
from .kernels import conv_net_kernel, leaky_relu_step, rbf_kernel, relu_step, smoothed_noise_kernel
from .restore import KernelConfig, NetConfig, restore
from .stationary import GridCovariance, ensure_psd, repair_psd

__all__ = [
    "GridCovariance", "KernelConfig", "KernelEstimate", "NetConfig", "Posterior", "RBFParams", "conv_net_kernel",
    "ensure_psd", "estimate_kernel", "fit_amplitude", "fit_rbf", "gp_posterior", "inference_kernel",
    "leaky_relu_step", "rbf_kernel", "relu_step", "repair_psd", "restore", "smoothed_noise_kernel",
]
