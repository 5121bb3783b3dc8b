"""Optimizers usable outside the framework: Langevin samplers and the GP-DIP reproduction mode."""

from dip_lightning.optim.sgld import PSGLD, SGLD, PaperSGLD, gaussian_like

__all__ = ["PSGLD", "PaperSGLD", "SGLD", "gaussian_like"]
