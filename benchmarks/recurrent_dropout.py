"""What does recurrent dropout cost, on the fast path and on the plain scan?

Usage::

  python -m benchmarks.recurrent_dropout [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7]

Recurrent dropout (``jaxrnn.rnn(cell, recurrent_dropout=p)``, or ``jaxrnn.with_recurrent_mask(cell, mask)``)
multiplies ``h`` by one mask per sequence where it enters the recurrent products. The fast path's kernels do
that inside their steps; Keras, by contrast, leaves cuDNN for its generic loop when ``recurrent_dropout > 0``.
This times, in one process with :func:`benchmarks.timing.measure` (interleaved blocks), the training step
(forward and backward, loss ``mean(ys ** 2)``) and the forward pass of ``jaxrnn.unroll`` without a mask
(``none``), with a mask of rate 0.25 on the fast path (``fused``) and with the same mask on the plain
``lax.scan`` of the cell (``reference``, the form a library without such a kernel runs). It first checks that
the two masked paths agree, then prints medians in milliseconds and each masked time over the unmasked one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jaxrnn
from benchmarks import models, timing

VARIANTS = ("none", "fused", "reference")
RATE = 0.25


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking fused = reference."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  mask = jaxrnn.dropout(jax.random.key(1), jnp.ones((B, H)), RATE)
  masked = jaxrnn.with_recurrent_mask(cell, mask)
  variants = {"none": (cell, {}), "fused": (masked, {}), "reference": (masked, {"impl": "reference"})}
  return models.time_unroll_variants(variants, params, xs, agree=("fused", "reference"), rounds=rounds)


def main(argv: list[str] | None = None) -> None:
  timing.variant_table_main(
    "recurrent_dropout", __doc__, VARIANTS, time_shape, base="none", unratioed=("none",), argv=argv
  )


if __name__ == "__main__":
  main()
