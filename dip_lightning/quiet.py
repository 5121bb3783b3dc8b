"""Keep the console to what concerns the user: silence known library messages that are not theirs to act on."""

from __future__ import annotations

import logging
import warnings


def _not_litlogger_tip(record: logging.LogRecord) -> bool:
    return "litlogger" not in record.getMessage()


def silence_library_noise() -> None:
    """Silence, by their exact text, two messages every run printed:

    - Lightning's tip advertising its litlogger service;
    - torch's FutureWarning that `isinstance(treespec, LeafSpec)` is deprecated, raised inside Lightning's
      own code.

    Every other warning still shows. (W&B's "anonymous setting" warning is avoided where the logger is made,
    see `dip_lightning.logging`.)
    """
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_litlogger_tip not in rank_zero.filters:
        rank_zero.addFilter(_not_litlogger_tip)


def one_line_warnings() -> None:
    """Print each Python warning as one `warning: ...` line, like the CLI's own (the default format adds the file,
    the line number and the source line that raised it); a warning other than a UserWarning keeps its category
    and origin in parentheses."""
    def formatted(message, category, filename, lineno, line=None) -> str:
        origin = "" if category is UserWarning else f" ({category.__name__}, {filename}:{lineno})"
        return f"warning: {message}{origin}\n"

    warnings.formatwarning = formatted

