"""The CLI keeps freed memory in the heap (allocator.py): checked with glibc's own counters, in a fresh process
(the settings last for the process)."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from dip_lightning import allocator, cli

GLIBC = allocator.is_glibc() and hasattr(ctypes.CDLL(None), "mallinfo2")

PROBE = """
import ctypes, json, os
from dip_lightning.allocator import keep_freed_memory

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
applied = keep_freed_memory()
size = 256 << 20  # a large step's activation (never touched: no memory used)
block = libc.malloc(size)
assert block, "malloc of 256 MiB failed"
mmapped = libc.mallinfo2().hblkhd >= size
libc.free(block)
exported = {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")}
print(json.dumps([applied, mmapped, libc.mallinfo2().arena >= size, exported]))
"""


def probe(**environment: str) -> list:
    """[applied, the block was served by mmap, the heap kept its size after the free, the MALLOC_ variables
    for the process's children], from a fresh process."""
    ours = ("MALLOC_", "GLIBC_TUNABLES", allocator.SWITCH)
    env = {name: value for name, value in os.environ.items() if not name.startswith(ours)} | environment
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


glibc_only = pytest.mark.skipif(not GLIBC, reason="glibc's allocator only (mallinfo2: glibc >= 2.33)")


@glibc_only
def test_a_large_block_comes_from_the_heap_and_stays_there_in_the_process_and_its_children():
    applied, mmapped, kept, exported = probe()
    assert (applied, mmapped, kept) == (True, False, True)
    assert probe(**exported)[:3] == [True, False, True]  # a DDP rank: glibc read them at its start, and they are ours


@glibc_only
def test_glibc_s_defaults_or_the_user_s_tuning_are_left_as_they_are():
    assert probe(DIP_LIGHTNING_KEEP_FREED_MEMORY="0") == [False, True, False, {}]
    assert probe(MALLOC_MMAP_MAX_="65536") == [False, True, False, {"MALLOC_MMAP_MAX_": "65536"}]
    assert probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000") == [False, True, False, {}]
    assert probe(MALLOC_PERTURB_="0")[:3] == [True, False, True]  # not a setting of when memory goes back


def test_the_cli_applies_it_to_the_commands_that_run_torch(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(cli, "apply_threads", lambda threads: 1)
    cli.main(["options", "SGLD"])
    assert calls == []
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    assert calls == [True]
