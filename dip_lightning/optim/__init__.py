"""Optimizers usable outside the framework: Langevin samplers, the GP-DIP reproduction mode, priors."""

from dip_lightning.optim.prior import init_prior_stds, prior_param_groups
from dip_lightning.optim.sgld import PSGLD, SGLD, PaperSGLD, gaussian_like

__all__ = ["PSGLD", "PaperSGLD", "SGLD", "gaussian_like", "init_prior_stds", "prior_param_groups"]
