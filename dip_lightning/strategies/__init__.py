"""Optimizer strategies: how a task's network is fitted and which output is returned."""

from .base import Selection, Strategy
from .sgd import SGD

__all__ = ["SGD", "Selection", "Strategy"]
