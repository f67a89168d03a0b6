"""What does ``jaxrnn.time_decay`` cost, on the fast path and on the plain scan?

Usage::

  python -m benchmarks.time_decay [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7]

``jaxrnn.time_decay(cell)`` reads the time gap as the input's last feature and decays every carry leaf by
``exp(-softplus(rate) dt)`` before each step. The fast path runs the wrapped cell's kernel with that decay, and
its derivative reaches the rates and the gaps. This times, in one process with
:func:`benchmarks.timing.measure` (interleaved blocks), the training step (forward and backward, loss
``mean(ys ** 2)``) and the forward pass of the plain cell (``none``; the gap read as an ordinary feature), of
``time_decay(cell, delta_as_input=True)`` on the fast path (``fused``; the same input sizes) and of the same on
the plain ``lax.scan`` of the cell (``reference``). It first checks that the two decayed paths agree, then
prints medians in milliseconds and each decayed time over the plain cell's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

VARIANTS = ("none", "fused", "reference")


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking fused = reference."""
  plain = models.jaxrnn_cell(cell_name, H)
  decayed = jaxrnn.time_decay(plain, delta_as_input=True)
  xs_np = models.make_inputs(B, T, I)
  xs_np[..., -1] = np.random.default_rng(1).exponential(1.0, (T, B))  # the gaps
  xs = jnp.asarray(xs_np)
  variants = {
    "none": (plain, {}, plain.init(jax.random.key(0), I)),
    "fused": (decayed, {}, decayed.init(jax.random.key(0), I)),
    "reference": (decayed, {"impl": "reference"}, decayed.init(jax.random.key(0), I)),
  }
  return models.time_unroll_variants(variants, None, xs, agree=("fused", "reference"), rounds=rounds)


def main(argv: list[str] | None = None) -> None:
  timing.variant_table_main("time_decay", __doc__, VARIANTS, time_shape, base="none", unratioed=("none",), argv=argv)


if __name__ == "__main__":
  main()
