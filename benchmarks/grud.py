"""What does GRU-D (``jaxrnn.grud``) cost, on the fast path and on the plain scan?

Usage::

  python -m benchmarks.grud [--shapes 64x100x36x128,16x1000x9x64,32x48x105x64] [--rounds 7]

``I`` is the input size ``3 D`` (``[values, mask, delta]`` for ``D`` features); the last default shape is
PhysioNet-like (35 variables over 48 hourly steps). The fast path computes the imputed inputs of all steps at once
and runs the GRU kernel (reset before the product) with the hidden decay as a carry factor. This times, in one
process with :func:`benchmarks.timing.measure` (interleaved blocks), the training step (forward and backward,
loss ``mean(ys ** 2)``) and the forward pass of ``grud`` on the fast path (``fused``) and on the plain ``lax.scan``
of its step (``reference``), and of a plain ``gru(H, reset_after=False)`` on the same ``3 D`` inputs on its fast
path (``gru``: what the recurrence alone costs). It first checks that the two GRU-D paths agree, then prints
medians in milliseconds and each GRU-D time over the plain GRU's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

VARIANTS = ("gru", "fused", "reference")


def grud_inputs(B: int, T: int, D: int, seed: int = 0) -> np.ndarray:
  """``(T, B, 3 D)``: standard-normal values, about 30% observed, and each feature's time since it was last
  observed (steps of one unit of time)."""
  rng = np.random.default_rng(seed)
  values = rng.standard_normal((T, B, D)).astype(np.float32)
  observed = (rng.random((T, B, D)) < 0.3).astype(np.float32)
  delta = np.zeros((T, B, D), np.float32)
  for t in range(1, T):  # Che et al.'s delta: 1 + the previous gap where the feature was missing
    delta[t] = 1.0 + (1.0 - observed[t - 1]) * delta[t - 1]
  return np.concatenate([values * observed, observed, delta], axis=-1)


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking fused = reference."""
  if cell_name != "grud" or I % 3:
    raise SystemExit(f"benchmarks.grud times --cells grud with I = 3 D, got cell {cell_name!r} and I = {I}")
  D = I // 3
  grud = jaxrnn.grud(H, D, x_mean=np.linspace(-0.5, 0.5, D))
  gru = jaxrnn.gru(H, reset_after=False)
  xs = jnp.asarray(grud_inputs(B, T, D))
  params = grud.init(jax.random.key(0), I)
  variants = {
    "gru": (gru, {}, gru.init(jax.random.key(0), I)),
    "fused": (grud, {}, params),
    "reference": (grud, {"impl": "reference"}, params),
  }
  return models.time_unroll_variants(variants, None, xs, agree=("fused", "reference"), rounds=rounds)


def main(argv: list[str] | None = None) -> None:
  timing.variant_table_main(
    "grud",
    __doc__,
    VARIANTS,
    time_shape,
    base="gru",
    unratioed=("gru",),
    argv=argv,
    cells="grud",
    shapes="64x100x36x128,16x1000x9x64,32x48x105x64",
  )


if __name__ == "__main__":
  main()
