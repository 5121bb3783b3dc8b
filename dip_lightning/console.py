"""Lines for the user on the console: warnings printed once per run, by its first process."""

from __future__ import annotations

import os
import sys

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
"""Where launchers (torchrun, SLURM, Lightning's own for the processes it starts) put a process's rank."""


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its run (or the only process), judged from the launchers' variables:
    true before any process group exists."""
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


def warn(message: str) -> None:
    """Print `message` as one `warning: ...` line on stderr, from rank 0 only (every process would say the same)."""
    if is_rank_zero():
        print(f"warning: {message}", file=sys.stderr)
