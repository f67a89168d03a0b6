"""jaxrnn.tune_malloc: freed memory kept for reuse, measured as page faults in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import jaxrnn
from jaxrnn._src import memory

# Allocates (glibc's malloc itself, not NumPy's, which may ask for huge pages), touches and frees a 64 MiB block,
# counting the minor page faults per round, before and after tune_malloc (in its own process: the setting is
# process-wide and cannot be undone).
PROBE = """
import ctypes, ctypes.util, json, resource, jaxrnn

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)

def faults(rounds=5, size=64 * 2**20):
  start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(rounds):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)  # touches every page
    libc.free(block)
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / rounds

faults()
before = faults()
applied = jaxrnn.tune_malloc()
faults(1)  # the first block after it grows the heap
print(json.dumps({"before": before, "applied": applied, "again": jaxrnn.tune_malloc(), "after": faults()}))
"""


def test_tune_malloc_keeps_freed_blocks_so_a_large_one_faults_no_pages_again():
  out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["applied"] is True and got["again"] is True  # this project's machines run glibc
  # glibc's default: a block above the mmap threshold is fresh pages every time (16,384 of 4 KiB here; about 32
  # where the kernel backs it with 2 MiB pages)
  assert got["before"] >= 16, got
  assert got["after"] <= got["before"] / 20, got


def test_tune_malloc_changes_nothing_without_glibc(monkeypatch):
  monkeypatch.setattr(memory, "_glibc", lambda: None)
  assert jaxrnn.tune_malloc() is False
