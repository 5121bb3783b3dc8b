"""Callbacks of dip_lightning (installed as `dip_lightning.callbacks`)."""

from .artifacts import RunArtifacts
from .backtracking import Backtracking
from .checkpoint import RunCheckpoint
from .guard import NonFiniteGuard
from .interrupt import StopOnInterrupt
from .langevin import LangevinChain
from .posterior import Moments, PosteriorAverage, merge_moments
from .progress import StepProgressBar
from .stopping import WMVStopping

__all__ = ["Backtracking", "LangevinChain", "Moments", "NonFiniteGuard", "PosteriorAverage", "RunArtifacts",
           "RunCheckpoint", "StepProgressBar", "StopOnInterrupt", "WMVStopping", "merge_moments"]
