"""Keep freed memory in the process's heap, so a large image's step does not pay its page faults again.

A step's activations are freed and allocated again every step. glibc's defaults serve every block over 32 MiB
with a fresh `mmap` and unmap it on free, so each step touches (and the kernel zeroes) new pages: about 2 GiB
of them a step at 256x256 with four chains (40.7 million page faults in 80 steps). With mmap off and no
trimming, the blocks stay in the heap and are reused: large CPU steps then took 25-41% less time
(docs/benchmarks.md, "Large images on a CPU"). The cost: the process keeps its peak memory until it ends, and
that peak was 24-34% higher (likely: a freed hole that fits no later block stays, so the heap grows). Blocks
over 64 MiB that a thread other than the main one allocates are still mmapped (a thread's heap is at most
64 MiB); torch runs a CPU step's forward and backward on the calling thread.

Applied by the CLI (`cli.main`, so also by a program that calls it) to every command that runs torch, and
exported to the processes a run starts (DDP ranks). `DIP_LIGHTNING_KEEP_FREED_MEMORY=0` keeps glibc's
defaults. A user who sets one of TUNINGS otherwise keeps that choice (any of them also turns off glibc's
self-adjusting mmap threshold, so none restores the defaults). Elsewhere than glibc, nothing happens.
"""

from __future__ import annotations

import ctypes
import os

SWITCH = "DIP_LIGHTNING_KEEP_FREED_MEMORY"
"""Set to 0 to keep glibc's defaults."""
TUNINGS = {  # environment variable: (its GLIBC_TUNABLES name, mallopt's parameter number in malloc.h, our value)
    "MALLOC_MMAP_MAX_": ("glibc.malloc.mmap_max", -4, 0),  # no block served by mmap
    "MALLOC_TRIM_THRESHOLD_": ("glibc.malloc.trim_threshold", -1, -1),  # -1: "disables trimming completely"
    "MALLOC_MMAP_THRESHOLD_": ("glibc.malloc.mmap_threshold", -3, None),  # None: left as it is
    "MALLOC_TOP_PAD_": ("glibc.malloc.top_pad", -2, None),
}
"""glibc's settings of when memory goes back to the system, and what this module sets."""
ENVIRONMENT = {name: str(ctypes.c_size_t(value).value) for name, (_, _, value) in TUNINGS.items() if value is not None}
"""Our values as glibc reads them when a process starts (size_t: -1 is the largest)."""


def is_glibc() -> bool:
    """Whether this process runs on glibc (whose `mallopt` takes TUNINGS' parameter numbers)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or not glibc (macOS, musl)
        return False


def user_tuned_allocator() -> bool:
    """Whether the environment sets one of TUNINGS to a value of its own (ENVIRONMENT's are this module's)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any((name in os.environ and os.environ[name] != ENVIRONMENT.get(name)) or tunable in tunables
               for name, (tunable, _, _) in TUNINGS.items())


def keep_freed_memory() -> bool:
    """Apply our TUNINGS through glibc's `mallopt` and export ENVIRONMENT; True when they are in effect (glibc,
    not switched off by SWITCH, not tuned by the user)."""
    if os.environ.get(SWITCH) == "0" or user_tuned_allocator() or not is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    if not all(mallopt(parameter, value) == 1 for _, parameter, value in TUNINGS.values() if value is not None):
        return False
    os.environ.update(ENVIRONMENT)
    return True
