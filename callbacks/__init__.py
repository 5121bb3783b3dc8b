"""Callbacks of dip_lightning (installed as `dip_lightning.callbacks`)."""

from .artifacts import RunArtifacts
from .backtracking import Backtracking
from .guard import NonFiniteGuard
from .langevin import LangevinChain
from .posterior import Moments, PosteriorAverage, merge_moments
from .stopping import WMVStopping

__all__ = ["Backtracking", "LangevinChain", "Moments", "NonFiniteGuard", "PosteriorAverage", "RunArtifacts",
           "WMVStopping", "merge_moments"]
