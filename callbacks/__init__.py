"""Callbacks of dip_lightning (installed as `dip_lightning.callbacks`)."""

from .artifacts import RunArtifacts
from .backtracking import Backtracking
from .guard import NonFiniteGuard
from .langevin import LangevinChain
from .posterior import PosteriorAverage
from .stopping import WMVStopping

__all__ = ["Backtracking", "LangevinChain", "NonFiniteGuard", "PosteriorAverage", "RunArtifacts", "WMVStopping"]
