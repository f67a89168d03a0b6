"""Does ``lax.scan``'s ``unroll`` speed up jaxrnn's fast path (on the CPU, or on a GPU)?

Usage::

  python -m benchmarks.unroll [--cells elman,lstm] [--shapes 16x1000x8x64,32x100x2x8,64x100x32x128]
                              [--unrolls 1,2,4]

Times, in one process with :func:`benchmarks.timing.measure` (interleaved blocks), the training step
(forward and backward, loss ``mean(ys ** 2)``) and the forward pass of ``jaxrnn.unroll`` with
each ``unroll`` factor (default 1, 2 and 4), for each cell and shape (the benchmark's models and inputs, see
``benchmarks.models``). It checks that the three give the same outputs and gradients, then prints
the medians in milliseconds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks import models, timing


def time_shape(
  cell_name: str, B: int, T: int, I: int, H: int, rounds: int, unrolls: tuple[int, ...]
) -> dict[str, float]:
  """Median seconds of ``train u{n}`` and ``infer u{n}`` for every unroll factor, after checking they agree."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  calls = {}
  first = None
  for n in unrolls:
    grad, fwd = models.unroll_step_and_forward(cell, unroll=n)
    with jax.default_matmul_precision("highest"):  # the check compares at full float32 (a GPU defaults to TF32)
      exact_grad, exact_fwd = models.unroll_step_and_forward(cell, unroll=n)
      got = (exact_fwd(params, xs), exact_grad(params, xs))
    if first is None:
      first = got
    else:
      models.assert_agree(got, first)
    calls[f"train u{n}"], calls[f"infer u{n}"] = models.blocking_calls(grad, fwd, params, xs)
  return timing.measure(calls, rounds=rounds, block_s=0.25)


def main(argv: list[str] | None = None) -> None:
  p = timing.shape_arguments("unroll", __doc__, "16x1000x8x64,32x100x2x8,64x100x32x128")
  p.add_argument("--cells", default="elman,lstm", help="comma-separated subset of lstm,gru,elman")
  p.add_argument("--unrolls", default="1,2,4", help="comma-separated unroll factors; the first is the baseline")
  args = p.parse_args(argv)
  unrolls = tuple(int(n) for n in args.unrolls.split(",") if n)
  if not unrolls or min(unrolls) < 1:
    p.error(f"--unrolls takes positive integers, e.g. 1,2,4; got {args.unrolls!r}")
  print(f"load average (1 min): {timing.load_average():.2f}")
  timing.print_variant_header(("cell", "B,T,I,H"), tuple(f"u{n}" for n in unrolls))
  for cell_name, B, T, I, H in timing.cell_shapes(args.cells, args.shapes):
    t = time_shape(cell_name, B, T, I, H, args.rounds, unrolls)
    row = " | ".join(f"{t[f'{m} u{n}'] * 1e3:.2f}" for m in ("train", "infer") for n in unrolls)
    print(f"| {cell_name} | {B},{T},{I},{H} | {row} |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
