"""Optimizers usable outside the framework: Langevin samplers, the GP-DIP reproduction mode, priors."""

from dip_lightning.optim.prior import init_prior_stds, prior_param_groups
from dip_lightning.optim.sgld import PSGLD, SGLD, PaperSGLD

__all__ = ["PSGLD", "PaperSGLD", "SGLD", "init_prior_stds", "prior_param_groups"]
