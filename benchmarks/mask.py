"""What do ``jaxrnn.unroll``'s ``mask``, and ``reverse`` with ``lengths``, cost next to ``lengths``?

Usage::

  python -m benchmarks.mask [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7]

A mask is run by moving each sequence's kept steps to its front (a stable sort per sequence), running that as
a right-padded sequence, and moving the outputs back. This times, in one process with
:func:`benchmarks.timing.measure` (interleaved blocks), the training step (forward and backward, loss
``mean(ys ** 2)``) and the forward pass with: every step of every sequence (``full``), ``lengths`` (each
sequence's length drawn from ``[T/2, T]``), the same steps as a ``mask`` (a prefix of each sequence), and a
``mask`` that also drops a quarter of the steps inside the sequences, and ``lengths`` with ``reverse=True``
(each sequence's valid steps reversed before a forward scan and its outputs after: :func:`jaxrnn.reverse_valid`,
a permutation of the steps like the mask's). It first checks that ``lengths`` and the
prefix mask give the same outputs and gradients, then prints medians in milliseconds and each mask's time over
the ``lengths`` time, and then XLA's temporary memory of each training step (above glibc's 32 MiB mmap threshold
a step takes fresh pages on every call: ``python -m benchmarks.page_faults``).
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import models, timing

VARIANTS = ("full", "lengths", "prefix mask", "mask with gaps", "reversed lengths")


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking lengths = prefix mask."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  rng = np.random.default_rng(0)
  lengths = rng.integers(T // 2, T + 1, B).astype(np.int32)
  prefix = np.arange(T)[:, None] < lengths[None]
  gaps = prefix & (rng.random((T, B)) >= 0.25)
  options: dict[str, dict[str, Any]] = {
    "full": {},
    "lengths": {"lengths": jnp.asarray(lengths)},
    "prefix mask": {"mask": jnp.asarray(prefix)},
    "mask with gaps": {"mask": jnp.asarray(gaps)},
    "reversed lengths": {"lengths": jnp.asarray(lengths), "reverse": True},
  }
  variants = {name: (cell, kwargs) for name, kwargs in options.items()}
  for name, kwargs in options.items():  # XLA's temporary memory of each training step
    grad = models.unroll_step_and_forward(cell, **kwargs)[0]
    mem = grad.lower(params, xs).compile().memory_analysis()
    TEMP_MIB[(cell_name, B, T, I, H)][name] = mem.temp_size_in_bytes / 2**20
  return models.time_unroll_variants(variants, params, xs, agree=("prefix mask", "lengths"), rounds=rounds)


TEMP_MIB: collections.defaultdict[tuple[str, int, int, int, int], dict[str, float]] = collections.defaultdict(dict)


def main(argv: list[str] | None = None) -> None:
  timing.variant_table_main(
    "mask", __doc__, VARIANTS, time_shape, base="lengths", unratioed=("full", "lengths"), argv=argv
  )
  print()
  print("| cell | B,T,I,H | " + " | ".join(f"train temp MiB {v}" for v in VARIANTS) + " |")
  print("|" + "---:|" * (2 + len(VARIANTS)))
  for (cell_name, B, T, I, H), temps in TEMP_MIB.items():
    print(f"| {cell_name} | {B},{T},{I},{H} | " + " | ".join(f"{temps[v]:.1f}" for v in VARIANTS) + " |")


if __name__ == "__main__":
  main()
