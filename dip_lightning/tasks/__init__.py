"""Restoration tasks: each supplies its forward operator to the shared DIP fitting loop."""

from .base import RestorationTask
from .deblur import Deblur
from .denoise import Denoise
from .inpaint import Inpaint
from .masked import MaskedTask
from .signal1d import Signal1D
from .superres import SuperResolution

__all__ = ["Deblur", "Denoise", "Inpaint", "MaskedTask", "RestorationTask", "Signal1D", "SuperResolution"]
