"""How many CPU threads torch uses: a default the CLI applies unless the user chose a number.

torch starts one thread per core. On a machine that other jobs share, that is the slow choice for
DIP: its operations are small (one image, a few dozen channels), so every parallel region waits for a
thread that another process has descheduled. docs/benchmarks.md ("CPU threads") has the figures.
"""

from __future__ import annotations

import os
import sys

from .errors import InputError

USER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that set the thread count: when one is set, it wins over the default."""

# torch's thread count when this module was imported (a later difference means the program chose a number itself);
# None when torch was not imported yet: it is imported by `apply_threads`, with its own default then
_THREADS_AT_IMPORT = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int:
    """Half the available CPUs, at least 1: one free CPU per thread for the other jobs of a shared machine."""
    return max(1, available_cpus() // 2)


def apply_threads(requested: int | None = None) -> int:
    """Set torch's CPU threads and return the number in use.

    `requested` (the CLI's --threads) is applied as given. Without it the default applies, unless the user
    set one of USER_VARIABLES or the program called torch.set_num_threads itself: those win. The number
    is also exported as OMP_NUM_THREADS, so processes a run starts (DDP ranks) use the same.
    """
    if requested is not None and requested < 1:
        raise InputError(f"--threads {requested}: give a number of threads >= 1")
    import torch  # here, not at the top: `--help` and `options` start without torch

    at_import = torch.get_num_threads() if _THREADS_AT_IMPORT is None else _THREADS_AT_IMPORT
    user_set = any(os.environ.get(name) for name in USER_VARIABLES) or torch.get_num_threads() != at_import
    if requested is None and user_set:
        return torch.get_num_threads()
    threads = requested or default_threads()
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads
