"""What do ``jaxrnn.unroll``'s ``resets`` cost, on the fast path and on the plain scan?

Usage::

  python -m benchmarks.resets [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7]

``resets`` marks the steps where a new sequence starts (episode boundaries in reinforcement learning, Haiku's
``ResetCore``): the carry entering such a step is replaced by the reset carry. The fast path's kernels do that
inside their steps and in their derivative. This times, in one process with :func:`benchmarks.timing.measure`
(interleaved blocks), the training step (forward and backward, loss ``mean(ys ** 2)``) and the forward pass of
``jaxrnn.unroll`` without resets (``none``), with a new sequence starting at each step with probability 4 / T
on the fast path (``fused``) and the same on the plain ``lax.scan`` of the cell (``reference``, what a
hand-written reset inside a scan costs). It first checks that the two paths agree, then prints medians in
milliseconds and each time with resets over the time without.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import models, timing

VARIANTS = ("none", "fused", "reference")


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking fused = reference."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  resets = jax.random.bernoulli(jax.random.key(1), min(1.0, 4 / T), (T, B))
  variants: dict[str, tuple[Any, dict[str, Any]]] = {
    "none": (cell, {}),
    "fused": (cell, {"resets": resets}),
    "reference": (cell, {"resets": resets, "impl": "reference"}),
  }
  return models.time_unroll_variants(variants, params, xs, agree=("fused", "reference"), rounds=rounds)


def main(argv: list[str] | None = None) -> None:
  timing.variant_table_main("resets", __doc__, VARIANTS, time_shape, base="none", unratioed=("none",), argv=argv)


if __name__ == "__main__":
  main()
