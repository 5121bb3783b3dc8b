"""The CLI keeps freed memory in the heap (allocator.py): checked with glibc's own counters, in fresh processes
(the settings last for the process, and glibc reads its variables at a process's start)."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from dip_lightning import allocator, cli

GLIBC = allocator.is_glibc() and hasattr(ctypes.CDLL(None), "mallinfo2")
glibc_only = pytest.mark.skipif(not GLIBC, reason="glibc's allocator only (mallinfo2: glibc >= 2.33)")

LIBC = """
import ctypes, json, os

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
"""

KEPT = LIBC + """
from dip_lightning.allocator import keep_freed_memory
applied = keep_freed_memory()
size = 256 << 20  # a large step's activation (never touched: no memory used)
block = libc.malloc(size)
assert block, "malloc of 256 MiB failed"
mmapped = libc.mallinfo2().hblkhd >= size
libc.free(block)
exported = {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")}
print(json.dumps([applied, mmapped, libc.mallinfo2().arena >= size, exported]))
"""
"""[applied, the block was served by mmap, the heap kept its size after the free, the MALLOC_ variables for the
process's children]"""

SELF_ADJUSTING = LIBC + """
size = 4 << 20
libc.free(libc.malloc(size))  # glibc's self-adjusting threshold rises above a freed mmapped block
block = libc.malloc(size)
print(json.dumps(libc.mallinfo2().hblkhd >= size))
"""
"""whether a 4 MiB block allocated again after its free is still mmapped"""


def probe(code: str, **environment: str):
    """`code`'s printed JSON, from a fresh process with `environment` and no allocator setting of ours."""
    ours = ("MALLOC_", "GLIBC_TUNABLES", allocator.SWITCH)
    env = {name: value for name, value in os.environ.items() if not name.startswith(ours)} | environment
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@glibc_only
def test_a_large_block_comes_from_the_heap_and_stays_there_in_the_process_and_its_children():
    applied, mmapped, kept, exported = probe(KEPT)
    assert (applied, mmapped, kept) == (True, False, True)
    assert probe(KEPT, **exported)[:3] == [True, False, True]  # a DDP rank: glibc read them at its start


@glibc_only
def test_glibc_s_defaults_or_the_user_s_tuning_are_left_as_they_are():
    assert probe(KEPT, DIP_LIGHTNING_KEEP_FREED_MEMORY="0") == [False, True, False, {}]
    assert probe(KEPT, MALLOC_MMAP_MAX_="65536") == [False, True, False, {"MALLOC_MMAP_MAX_": "65536"}]
    assert probe(KEPT, GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000") == [False, True, False, {}]
    assert probe(KEPT, MALLOC_PERTURB_="0")[:3] == [True, False, True]  # not a setting of when memory goes back


@glibc_only
@pytest.mark.parametrize("variable", [None, "MALLOC_PERTURB_", *allocator.TUNINGS])
def test_any_of_the_tunings_switches_off_glibc_s_self_adjusting_threshold(variable):
    """Why switching off is a variable of our own: a tuning set to glibc's default value is not glibc's default
    behaviour."""
    environment = {} if variable is None else {variable: "5" if variable == "MALLOC_PERTURB_" else "131072"}
    assert probe(SELF_ADJUSTING, **environment) is (variable in allocator.TUNINGS)


def test_the_cli_applies_it_to_the_commands_that_run_torch(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(cli, "apply_threads", lambda threads: 1)
    cli.main(["options", "SGLD"])
    assert calls == []
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    assert calls == [True]
