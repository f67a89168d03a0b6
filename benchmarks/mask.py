"""What does ``jaxrnn.unroll``'s ``mask`` cost next to ``lengths``?

Usage::

  python -m benchmarks.mask [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7]

A mask is run by moving each sequence's kept steps to its front (a stable sort per sequence), running that as
a right-padded sequence, and moving the outputs back. This times, in one process with
:func:`benchmarks.timing.measure` (interleaved blocks), the training step (forward and backward, loss
``mean(ys ** 2)``) and the forward pass with: every step of every sequence (``full``), ``lengths`` (each
sequence's length drawn from ``[T/2, T]``), the same steps as a ``mask`` (a prefix of each sequence), and a
``mask`` that also drops a quarter of the steps inside the sequences. It first checks that ``lengths`` and the
prefix mask give the same outputs and gradients, then prints medians in milliseconds and each mask's time over
the ``lengths`` time.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import models, timing

VARIANTS = ("full", "lengths", "prefix mask", "mask with gaps")


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
  }
  calls, results = {}, {}
  for name, kwargs in options.items():
    grad, fwd = models.unroll_step_and_forward(cell, **kwargs)
    results[name] = (fwd(params, xs), grad(params, xs))
    calls[f"train {name}"], calls[f"infer {name}"] = models.blocking_calls(grad, fwd, params, xs)
  models.assert_agree(results["prefix mask"], results["lengths"])
  return timing.measure(calls, rounds=rounds, block_s=0.25)


def main(argv: list[str] | None = None) -> None:
  p = timing.shape_arguments("mask", __doc__, "64x100x32x128,16x1000x8x64")
  p.add_argument("--cells", default="lstm,gru", help="comma-separated subset of lstm,gru,elman")
  args = p.parse_args(argv)
  print(f"load average (1 min): {timing.load_average():.2f}")
  timing.print_variant_header(("cell", "B,T,I,H"), VARIANTS)
  for cell_name in args.cells.split(","):
    for shape in args.shapes.split(","):
      B, T, I, H = (int(v) for v in shape.split("x"))
      t = time_shape(cell_name, B, T, I, H, args.rounds)
      cells = []
      for m in ("train", "infer"):
        base = t[f"{m} lengths"]
        for v in VARIANTS:
          ratio = "" if v in ("full", "lengths") else f" ({t[f'{m} {v}'] / base:.2f}x)"
          cells.append(f"{t[f'{m} {v}'] * 1e3:.2f}{ratio}")
      print(f"| {cell_name} | {B},{T},{I},{H} | {' | '.join(cells)} |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
