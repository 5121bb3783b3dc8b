"""Optimizer strategies: how a task's network is fitted and which output is returned."""

from .base import Selection, Strategy
from .mcdropout import MCDropout
from .mfvi import MeanFieldVI
from .predictive import PredictiveStrategy
from .sgd import SGD
from .sgld import SGLD

__all__ = ["MCDropout", "MeanFieldVI", "PredictiveStrategy", "SGD", "SGLD", "Selection", "Strategy"]
