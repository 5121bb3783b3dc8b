"""Restoration tasks: each supplies its forward operator to the shared DIP fitting loop."""

from .base import RestorationTask
from .denoise import Denoise

__all__ = ["Denoise", "RestorationTask"]
