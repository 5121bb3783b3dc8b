"""Optimizer strategies: how a task's network is fitted and which output is returned."""

from .base import Selection, Strategy
from .sgd import SGD
from .sgld import SGLD

__all__ = ["SGD", "SGLD", "Selection", "Strategy"]
