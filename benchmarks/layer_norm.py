"""The layer-normalised LSTM (``jaxrnn.lstm(H, layer_norm=True)``) on the fast path and on the reference path.

Usage::

  python -m benchmarks.layer_norm [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7]

Times, in one process with :func:`benchmarks.timing.measure` (interleaved blocks), the training step (forward
and backward, loss ``mean(ys ** 2)``) and the forward pass of the layer-normalised LSTM with ``impl="fused"``
(the default) and ``impl="reference"`` (the plain ``lax.scan`` of the cell, what other libraries run), and of
the plain LSTM's fast path for scale. It first checks that the two paths give the same outputs and gradients
(in float64: see :func:`check_in_float64`), then prints medians in milliseconds and the reference's time over
the fast path's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

VARIANTS = ("ln fused", "ln reference", "plain lstm")


def check_in_float64(H: int, I: int, xs: np.ndarray) -> None:
  """Checks that the two paths agree to 1e-9 in float64 over the first 100 steps of ``xs``. In float32 they
  part by more, growing with the step count on either path alike: at its initial weights the normalised LSTM
  amplifies rounding differences (the normalisation of ``h W_h`` divides by its spread, which is small while
  ``h`` is), so that over 1000 steps even float64 runs part."""
  with jax.enable_x64(True):
    cell = jaxrnn.lstm(H, layer_norm=True, param_dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)
    x = jnp.asarray(xs[:100], jnp.float64)

    def loss(p: Any, impl: str) -> tuple[jax.Array, jax.Array]:
      ys = jaxrnn.unroll(cell, p, x, impl=impl)[1]
      return jnp.mean(ys**2), ys

    run = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (_, ys_fused), grads_fused = run(params, "fused")
    (_, ys_reference), grads_reference = run(params, "reference")
    got, want = jax.tree.leaves((ys_fused, grads_fused)), jax.tree.leaves((ys_reference, grads_reference))
    for a, b in zip(got, want, strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def float32_gap(H: int, I: int, xs: jax.Array) -> float:
  """The largest difference between the two paths' float32 outputs over the first 100 steps of ``xs``."""
  cell = jaxrnn.lstm(H, layer_norm=True)
  params = cell.init(jax.random.key(0), I)
  ys = [
    jax.jit(lambda p, x, i=impl: jaxrnn.unroll(cell, p, x, impl=i)[1])(params, xs[:100])
    for impl in ("fused", "reference")
  ]
  return float(jnp.max(jnp.abs(ys[0] - ys[1])))


def time_shape(B: int, T: int, I: int, H: int, rounds: int) -> tuple[dict[str, float], float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking fused = reference, and the
  two paths' float32 gap (:func:`float32_gap`)."""
  xs = jnp.asarray(models.make_inputs(B, T, I))
  ln_cell, plain = jaxrnn.lstm(H, layer_norm=True), jaxrnn.lstm(H)
  setups: dict[str, tuple[jaxrnn.Cell, str]] = {
    "ln fused": (ln_cell, "fused"),
    "ln reference": (ln_cell, "reference"),
    "plain lstm": (plain, "fused"),
  }
  calls = {}
  for name, (cell, impl) in setups.items():
    grad, fwd = models.unroll_step_and_forward(cell, impl=impl)
    params = cell.init(jax.random.key(0), I)
    calls[f"train {name}"], calls[f"infer {name}"] = models.blocking_calls(grad, fwd, params, xs)
  check_in_float64(H, I, np.asarray(xs))
  return timing.measure(calls, rounds=rounds, block_s=0.25), float32_gap(H, I, xs)


def main(argv: list[str] | None = None) -> None:
  args = timing.shape_arguments("layer_norm", __doc__, "64x100x32x128,16x1000x8x64").parse_args(argv)
  print(f"load average (1 min): {timing.load_average():.2f}")
  timing.print_variant_header(("B,T,I,H",), VARIANTS)
  gaps = []
  for shape in args.shapes.split(","):
    B, T, I, H = (int(v) for v in shape.split("x"))
    t, gap = time_shape(B, T, I, H, args.rounds)
    gaps.append(f"{gap:.1e} at {shape}")
    cells = []
    for m in ("train", "infer"):
      base = t[f"{m} ln fused"]
      for v in VARIANTS:
        ratio = f" ({t[f'{m} {v}'] / base:.2f}x)" if v == "ln reference" else ""
        cells.append(f"{t[f'{m} {v}'] * 1e3:.2f}{ratio}")
    print(f"| {B},{T},{I},{H} | {' | '.join(cells)} |", flush=True)
  print(f"float32 outputs of the two paths, largest difference over the first 100 steps: {', '.join(gaps)}")
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
