"""Callbacks of dip_lightning (installed as `dip_lightning.callbacks`)."""

from .artifacts import RunArtifacts
from .backtracking import Backtracking
from .checkpoint import RunCheckpoint
from .guard import NonFiniteGuard
from .interrupt import StopOnInterrupt
from .langevin import LangevinChain
from .posterior import PosteriorAverage
from .predictive import PredictiveLog, SelectedParameters
from .progress import StepProgressBar
from .stopping import WMVStopping

__all__ = ["Backtracking", "LangevinChain", "NonFiniteGuard", "PosteriorAverage", "PredictiveLog", "RunArtifacts",
           "RunCheckpoint", "SelectedParameters", "StepProgressBar", "StopOnInterrupt", "WMVStopping"]
