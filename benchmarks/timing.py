"""Timing helpers: interleaved medians, the matrix-product rate, a description of the machine, the parsing of a
``KEY=VALUE`` compiler option given on a command line, and glibc's malloc setting for a run."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from experiments import runner

# glibc malloc settings that keep freed memory for reuse (no mmap for large blocks, no trimming of the heap, one
# arena: the per-thread arenas' heaps hold at most 64 MiB, and larger blocks then come fresh again), the effect of
# the jemalloc or tcmalloc that PyTorch's CPU performance guide recommends. By default glibc serves a block over its
# mmap threshold (at most 32 MiB) with fresh pages that the kernel zeroes on first touch, on every call: a training
# step whose buffers add up to more than that pays for it every time (`python -m benchmarks.page_faults`).
TUNED_MALLOC = {
  "MALLOC_MMAP_MAX_": "0",
  "MALLOC_TRIM_THRESHOLD_": "4000000000",
  "MALLOC_TOP_PAD_": "268435456",
  "MALLOC_ARENA_MAX": "1",
}
MALLOC_CHOICES = ("default", "tuned")


def malloc_setting() -> str:
  """``"tuned"`` when this process runs with :data:`TUNED_MALLOC`, ``"default"`` when with none of it, else a
  description of what is set."""
  got = {k: os.environ[k] for k in TUNED_MALLOC if k in os.environ}
  if not got:
    return "default"
  return "tuned" if got == TUNED_MALLOC else " ".join(f"{k}={v}" for k, v in got.items())


def use_malloc(mode: str) -> None:
  """For ``"tuned"``, makes this process run with :data:`TUNED_MALLOC` (which glibc reads only at start-up): it
  re-executes itself with those variables set, before anything is timed. ``"default"`` leaves the process as it
  is; :func:`describe_machine` reports what is set."""
  if mode not in MALLOC_CHOICES:
    raise SystemExit(f"--malloc takes one of {MALLOC_CHOICES}, got {mode!r}")
  if mode == "default" or malloc_setting() == "tuned":
    return
  sys.stdout.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **TUNED_MALLOC})


def measure(fns: Mapping[str, Callable[..., Any]], *, rounds: int = 5, block_s: float = 0.2) -> dict[str, float]:
  """Median seconds per call of each blocking callable, measured in interleaved blocks.

  Every callable is warmed up first (the first call compiles). Then, ``rounds``
  times, each runs a block of calls lasting about ``block_s``, the start of
  the order rotating, so that a change of machine load hits every contestant
  alike. The first call of each block is not timed: it lets thread pools of the
  previous framework go idle and this one's wake up.
  """
  estimate = {}
  for name, fn in fns.items():
    fn()
    fn()
    t0 = time.perf_counter()
    fn()
    estimate[name] = time.perf_counter() - t0
  times: dict[str, list[float]] = {name: [] for name in fns}
  names = list(fns)
  for r in range(rounds):
    k = r % len(names)
    for name in names[k:] + names[:k]:
      fn = fns[name]
      fn()
      for _ in range(max(1, math.ceil(block_s / max(estimate[name], 1e-6)))):
        t0 = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_rate(sizes: tuple[int, ...] = (1024, 2048), *, rounds: int = 5) -> tuple[float, int]:
  """The best float32 ``jnp.matmul`` rate over square ``sizes``, in FLOP/s, and the size that gave it."""
  best = (0.0, 0)
  for n in sizes:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)

    def call(a: jax.Array = a, b: jax.Array = b, mm: Callable[..., jax.Array] = mm) -> jax.Array:
      return mm(a, b).block_until_ready()

    secs = measure({"mm": call}, rounds=rounds, block_s=0.2)["mm"]
    best = max(best, (2.0 * n**3 / secs, n))
  return best


def load_average() -> float:
  """The 1-minute load average."""
  return os.getloadavg()[0]


def cpu_model() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return platform.processor() or "unknown"
  for line in out.splitlines():
    if line.startswith("Model name:"):
      return line.split(":", 1)[1].strip()
  return "unknown"


def versions() -> dict[str, str]:
  import flax
  import jaxlib
  import torch

  return {
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "torch": torch.__version__,
    "flax": flax.__version__,
    "python": platform.python_version(),
  }


def describe_machine() -> dict[str, str]:
  return {
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "cpu": cpu_model(),
    "vector extensions": runner.vector_extensions(),
    "cores": str(os.cpu_count()),
    "malloc": malloc_setting(),
    **versions(),
  }


def compiler_option(text: str) -> tuple[str, Any]:
  """``KEY=VALUE`` (a per-jit XLA compiler option) as ``(KEY, value)``: ``true``/``false`` become bools,
  digits an int, anything else stays a string. Raises ValueError without ``=`` or a key."""
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise ValueError(f"a compiler option takes KEY=VALUE, got {text!r}")
  if value in ("true", "false"):
    return key, value == "true"
  return key, int(value) if value.isdigit() else value


def shape_arguments(module: str, doc: str | None, shapes: str) -> argparse.ArgumentParser:
  """The command line of ``python -m benchmarks.<module>``: ``--shapes`` (default ``shapes``) and ``--rounds``."""
  p = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=(doc or "").split("\n")[0])
  p.add_argument("--shapes", default=shapes, help="comma-separated BxTxIxH")
  p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per measurement")
  return p


def peer_arguments(module: str, doc: str | None, shapes: str, cells: str) -> argparse.ArgumentParser:
  """:func:`shape_arguments` with ``--cells`` (default ``cells``) and ``--malloc``, for benchmarks with PyTorch."""
  p = shape_arguments(module, doc, shapes)
  p.add_argument("--cells", default=cells, help=f"comma-separated subset of {cells}")
  p.add_argument("--malloc", default="default", choices=MALLOC_CHOICES, help="glibc's malloc setting")
  return p


def start_with_peers(args: argparse.Namespace) -> None:
  """Applies ``--malloc`` (:func:`use_malloc`), gives PyTorch every core, and prints the machine and its load."""
  use_malloc(args.malloc)
  import torch

  torch.set_num_threads(os.cpu_count() or 1)
  print("\n".join(f"{k}: {v}" for k, v in describe_machine().items()))
  print(f"load average (1 min): {load_average():.2f}")


def cell_shapes(cells: str, shapes: str) -> Iterator[tuple[str, int, int, int, int]]:
  """``(cell, B, T, I, H)`` for every comma-separated cell and ``BxTxIxH`` shape of a command line, cell-major."""
  for cell_name in cells.split(","):
    for shape in shapes.split(","):
      B, T, I, H = (int(v) for v in shape.split("x"))
      yield cell_name, B, T, I, H


def print_variant_header(leading: tuple[str, ...], variants: tuple[str, ...]) -> None:
  """A Markdown table's head: the ``leading`` columns, then ``train <variant>`` and ``infer <variant>``."""
  head = " | ".join([*leading, *(f"{m} {v}" for m in ("train", "infer") for v in variants)])
  print(f"| {head} |")
  print("|" + "---:|" * (len(leading) + 2 * len(variants)))


def variant_table_main(
  module: str,
  doc: str | None,
  variants: tuple[str, ...],
  time_shape: Callable[[str, int, int, int, int, int], dict[str, float]],
  *,
  base: str,
  unratioed: tuple[str, ...],
  argv: list[str] | None,
  cells: str = "lstm,gru",
  shapes: str = "64x100x32x128,16x1000x8x64",
) -> None:
  """The command line and Markdown table of a benchmark of ``jaxrnn.unroll`` variants per (cell, shape):
  ``--cells``, ``--shapes`` and ``--rounds``; ``time_shape(cell, B, T, I, H, rounds)`` returns the medians of
  ``train <variant>`` and ``infer <variant>`` (a variant it leaves out prints as ``-``); every variant not in
  ``unratioed`` is also printed over ``base``."""
  p = shape_arguments(module, doc, shapes)
  p.add_argument("--cells", default=cells, help=f"comma-separated cells (default {cells})")
  args = p.parse_args(argv)
  print("\n".join(f"{k}: {v}" for k, v in describe_machine().items()))
  print(f"load average (1 min): {load_average():.2f}")
  print_variant_header(("cell", "B,T,I,H"), variants)
  for cell_name, B, T, I, H in cell_shapes(args.cells, args.shapes):
    t = time_shape(cell_name, B, T, I, H, args.rounds)
    row = []
    for m in ("train", "infer"):
      for v in variants:
        if f"{m} {v}" not in t:  # a variant that does not apply to this cell
          row.append("-")
          continue
        ratio = "" if v in unratioed else f" ({t[f'{m} {v}'] / t[f'{m} {base}']:.2f}x)"
        row.append(f"{t[f'{m} {v}'] * 1e3:.2f}{ratio}")
    print(f"| {cell_name} | {B},{T},{I},{H} | {' | '.join(row)} |", flush=True)
  print(f"load average (1 min): {load_average():.2f}")
