"""Process-wide memory settings that change how fast large jitted steps run on the CPU."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TOP_PAD_BYTES = 256 * 2**20
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest, about 2 GiB


@functools.cache
def _glibc() -> ctypes.CDLL | None:
  """The process's C library where it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
  name = ctypes.util.find_library("c")
  if name is None:
    return None
  try:
    libc = ctypes.CDLL(name)
  except OSError:
    return None
  if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
    return None
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  libc.mallopt.restype = ctypes.c_int
  return libc


def tune_malloc() -> bool:
  """Makes glibc's ``malloc`` keep freed memory for reuse, for the rest of the process. Returns whether it could.

  XLA on the CPU takes one block of temporary memory per call of a compiled
  program. glibc serves a request above its mmap threshold (at most 32 MiB)
  with fresh pages from the kernel, zeroed on first touch, and hands them back
  when the block is freed, so a program that needs a larger block pays for
  every page of it on every call. The training step of a bidirectional LSTM
  with ``lengths`` at (B, T, I, H) = (64, 100, 32, 128) needs 46.5 MiB and
  took 49.9 ms as glibc comes, 36.6 ms after this call; two stacked LSTM
  layers and bidirectional LSTMs and GRUs at that shape and at (16, 1000, 8,
  64) trained in 0.69x to 0.74x the time, one LSTM layer (25 to 30 MiB) in
  0.96x and 0.97x (``python -m benchmarks.malloc``, ``BENCHMARKS.md``).
  PyTorch's LSTM, which allocates its tensors one by one, trained 1.2x to 1.6x
  faster with freed memory kept (``python -m benchmarks.run --malloc tuned``).

  This sets, through glibc's ``mallopt``: no ``mmap`` for large blocks
  (``M_MMAP_MAX = 0``), freed memory at the top of the heap kept up to about 2
  GiB (``M_TRIM_THRESHOLD``), and the heap grown 256 MiB beyond each request
  (``M_TOP_PAD``); the same as starting Python with ``MALLOC_MMAP_MAX_=0
  MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=268435456``. The cost: the
  process's resident memory stays near its peak instead of falling back, which
  is what jemalloc or tcmalloc (PyTorch's CPU performance guide recommends
  either, through ``LD_PRELOAD``) also trade for speed. It affects every
  library in the process, PyTorch's and NumPy's allocations too, and cannot be
  undone to glibc's adaptive default. Call it once, early; later calls repeat
  the same settings.

  Returns:
    True where the C library is glibc and took every setting; False elsewhere
    (macOS, musl, Windows), where nothing is changed.
  """
  libc = _glibc()
  if libc is None:
    return False
  settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), (M_TOP_PAD, TOP_PAD_BYTES))
  return all(libc.mallopt(param, value) == 1 for param, value in settings)
