"""The inference of the LSTM, the GRU and the MGU with one product per step, ``[x, h]`` with a stacked kernel, and
transposed at small widths, against two products, ``x W_x + h W_h``.

Usage::

  python -m benchmarks.joint_product [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64,32x100x2x8,8x200x64x512]
                                     [--rounds 7]

Evaluated without derivatives, the fast path's LSTM kernel stacks its input and recurrent kernels once per call
and takes one product per step (``fused._xh_joint``), for kernels up to ``fused.JOINT_MAX_BYTES``, and scans on
transposed arrays at small widths (``fused._transposed_lstm``); the GRU's (reset after the product) and the MGU's
take one product with a kernel holding a block of zeros where ``fused._joint_reset_after`` says so, transposed
where ``fused._transposed_reset_after`` does (``fused._reset_after_infer``). Their derivatives' forward passes
keep the two products. This times, in one process with :func:`benchmarks.timing.measure` (interleaved blocks), the
training step (forward and backward, loss ``mean(ys ** 2)``) and the forward pass of ``jaxrnn.unroll`` as it is
(``joint``: the rules above), traced with two products per step everywhere (``two``) and with one untransposed
product everywhere (``always``: the rules lifted, the transposed steps off), after checking that they agree, then
prints medians in milliseconds and each time over ``two``'s.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import models, timing
from jaxrnn._src import fused

VARIANTS = ("two", "joint", "always")


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking the two agree."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  calls, results = {}, {}
  never, ever = (lambda *_: False), (lambda *_: True)
  names = ("JOINT_MAX_BYTES", "_joint_reset_after", "_transposed_reset_after", "_transposed_lstm")
  limits = tuple(getattr(fused, n) for n in names)
  rules = {"two": (0, never, never, never), "joint": limits, "always": (1 << 62, ever, never, never)}
  for name, rule in rules.items():
    for n, v in zip(names, rule, strict=True):  # read when traced, by the calls below
      setattr(fused, n, v)
    try:
      grad, fwd = models.unroll_step_and_forward(cell)
      results[name] = (fwd(params, xs), grad(params, xs))
    finally:
      for n, v in zip(names, limits, strict=True):
        setattr(fused, n, v)
    calls[f"train {name}"], calls[f"infer {name}"] = models.blocking_calls(grad, fwd, params, xs)
  models.assert_agree(results["joint"], results["two"])
  models.assert_agree(results["always"], results["two"])
  out: dict[str, Any] = timing.measure(calls, rounds=rounds)
  return out


def main(argv: list[str] | None = None) -> None:
  timing.variant_table_main(
    "joint_product",
    __doc__,
    VARIANTS,
    time_shape,
    base="two",
    unratioed=("two",),
    argv=argv,
    cells="lstm,gru",
    shapes="64x100x32x128,16x1000x8x64,32x100x2x8,8x200x64x512",
  )


if __name__ == "__main__":
  main()
