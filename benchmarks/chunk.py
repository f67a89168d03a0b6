"""How many steps should a chunk of the fast path's derivative hold? Training steps side by side.

Usage::

  python -m benchmarks.chunk [--cells elman,gru,lstm] [--shapes 64x100x32x128,16x1000x8x64,8x200x64x512]
                             [--factors 0.25,1,4] [--rounds 7]
  python -m benchmarks.chunk --cells lstm --shapes 8x200x64x512 --steps 16,20

The derivative of ``jaxrnn.unroll``'s fast path runs the sequence in chunks of ``K`` steps
(``jaxrnn/_src/fused.py``): per chunk a forward scan that keeps the step's saved values, the chunk's
vectorised factors and weight-gradient products, and the tangent scan. ``K * B * H`` is about
``chunk_scale * CHUNK_ELEMENTS`` (``fused.chunk_length``). This benchmark times the training step (the
gradient of ``mean(outputs ** 2)``) with ``CHUNK_ELEMENTS`` multiplied by each factor, in one process with
interleaved blocks, after checking that every variant gives the reference path's outputs and gradients. Inference is one
plain scan whatever the chunk length, so it is not timed. Medians in milliseconds, each with its ``K`` and its
ratio to factor 1 (the library's setting).

With ``--steps``, each variant is a chunk length itself (the library's rule replaced by it), and the table also
gives XLA's temporary memory of the step (``memory_analysis().temp_size_in_bytes``): above glibc's mmap threshold
(at most 32 MiB) it comes as fresh pages on every call (``python -m benchmarks.page_faults``). The library's own
length for the shape is printed beside.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import models, timing
from jaxrnn._src import fused


def time_shape(
  cell_name: str, B: int, T: int, I: int, H: int, factors: list[float], rounds: int
) -> dict[float, tuple[int, float]]:
  """``{factor: (K, median seconds)}`` of the training step at one shape."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  kernel = fused._kernel(fused.fused_spec(cell))
  assert kernel is not None
  scale = kernel.chunk_scale
  ref_grad, ref_fwd = models.unroll_step_and_forward(cell, impl="reference")
  want = (ref_fwd(params, xs), ref_grad(params, xs))
  default = fused.CHUNK_ELEMENTS
  calls: dict[str, Any] = {}
  steps: dict[float, int] = {}
  try:
    for f in factors:
      fused.CHUNK_ELEMENTS = round(default * f)  # read when the step is traced, on its first call
      grad, fwd = models.unroll_step_and_forward(cell)
      models.assert_agree((fwd(params, xs), grad(params, xs)), want)
      steps[f] = fused.chunk_length(T, B, H, scale)
      calls[f"x{f:g}"] = lambda grad=grad: jax.block_until_ready(grad(params, xs))
  finally:
    fused.CHUNK_ELEMENTS = default
  medians = timing.measure(calls, rounds=rounds, block_s=0.25)
  return {f: (steps[f], medians[f"x{f:g}"]) for f in factors}


def time_steps(cell_name: str, B: int, T: int, I: int, H: int, steps: list[int], rounds: int) -> dict[int, tuple]:
  """``{K: (temp MiB, median seconds)}`` of the training step with chunks of ``K`` steps."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  ref_grad, ref_fwd = models.unroll_step_and_forward(cell, impl="reference")
  want = (ref_fwd(params, xs), ref_grad(params, xs))
  rule = fused.chunk_length
  calls: dict[str, Any] = {}
  temps: dict[int, float] = {}
  try:
    for k in steps:

      def fixed(T: int, B: int, H: int, scale: int = 1, k: int = k) -> int:
        return min(k, T)

      fused.chunk_length = fixed  # read when the step is traced
      grad, fwd = models.unroll_step_and_forward(cell)
      models.assert_agree((fwd(params, xs), grad(params, xs)), want)
      temps[k] = grad.lower(params, xs).compile().memory_analysis().temp_size_in_bytes / 2**20
      calls[f"K={k}"] = lambda grad=grad: jax.block_until_ready(grad(params, xs))
  finally:
    fused.chunk_length = rule
  medians = timing.measure(calls, rounds=rounds, block_s=0.25)
  return {k: (temps[k], medians[f"K={k}"]) for k in steps}


def main(argv: list[str] | None = None) -> None:
  p = timing.shape_arguments("chunk", __doc__, "64x100x32x128,16x1000x8x64,8x200x64x512")
  p.add_argument("--cells", default="elman,gru,lstm", help="comma-separated subset of lstm,gru,elman")
  p.add_argument("--factors", default="0.25,1,4", help="comma-separated multiples of CHUNK_ELEMENTS")
  p.add_argument("--steps", default=None, help="comma-separated chunk lengths to time instead of --factors")
  args = p.parse_args(argv)
  if args.steps:
    steps_main(args)
    return
  factors = [float(f) for f in args.factors.split(",")]
  if 1.0 not in factors:
    factors.append(1.0)
  print("\n".join(f"{k}: {v}" for k, v in timing.describe_machine().items()))
  print(f"CHUNK_ELEMENTS: {fused.CHUNK_ELEMENTS}")
  print(f"load average (1 min): {timing.load_average():.2f}")
  print("| cell | B,T,I,H | " + " | ".join(f"x{f:g}: K, train ms" for f in factors) + " |")
  print("|" + "---:|" * (2 + len(factors)))
  for cell_name, B, T, I, H in timing.cell_shapes(args.cells, args.shapes):
    t = time_shape(cell_name, B, T, I, H, factors, args.rounds)
    cells = [f"{k}, {s * 1e3:.2f} ({s / t[1.0][1]:.2f}x)" for k, s in (t[f] for f in factors)]
    print(f"| {cell_name} | {B},{T},{I},{H} | {' | '.join(cells)} |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


def steps_main(args: Any) -> None:
  steps = list(dict.fromkeys(int(k) for k in args.steps.split(",")))
  print("\n".join(f"{k}: {v}" for k, v in timing.describe_machine().items()))
  print(f"load average (1 min): {timing.load_average():.2f}")
  print("| cell | B,T,I,H | library K | " + " | ".join(f"K={k}: temp MiB, train ms" for k in steps) + " |")
  print("|" + "---:|" * (3 + len(steps)))
  for cell_name, B, T, I, H in timing.cell_shapes(args.cells, args.shapes):
    kernel = fused._kernel(fused.fused_spec(models.jaxrnn_cell(cell_name, H)))
    assert kernel is not None
    own = fused.chunk_length(T, B, H, kernel.chunk_scale)
    t = time_steps(cell_name, B, T, I, H, steps, args.rounds)
    cells = [f"{m:.1f}, {s * 1e3:.2f}" for m, s in (t[k] for k in steps)]
    print(f"| {cell_name} | {B},{T},{I},{H} | {own} | {' | '.join(cells)} |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
