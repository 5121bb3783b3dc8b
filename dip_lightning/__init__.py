"""dip_lightning: Deep Image Prior restoration with Bayesian inference, on PyTorch Lightning."""

__version__ = "0.1.0"
