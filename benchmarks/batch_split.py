"""Does splitting the batch speed up LSTM inference on a multi-core CPU?

Usage::

  python -m benchmarks.batch_split [--shapes 64x100x32x128,16x1000x8x64]

Times, in one process with :func:`benchmarks.timing.measure`, the forward pass of ``jaxrnn.unroll`` over a
``jaxrnn.lstm`` three ways: one scan over the whole batch; the batch's two halves as two independent scans in
one jitted program; and the two halves under ``jax.pmap`` over two host devices (one thread each). The
module sets ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` before JAX starts, so run it as its own
process. It prints the medians and checks that the three agree.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()

from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxrnn  # noqa: E402
from benchmarks import timing  # noqa: E402


def time_shape(B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of the three ways at one shape, after checking that they agree."""
  cell = jaxrnn.lstm(H)
  params = cell.init(jax.random.key(0), I)
  xs = jax.random.normal(jax.random.key(1), (T, B, I))
  halves = jnp.stack([xs[:, : B // 2], xs[:, B // 2 :]])

  def forward(p: Any, x: jax.Array) -> jax.Array:
    return jaxrnn.unroll(cell, p, x)[1]

  @jax.jit
  def two(p: Any, x: jax.Array) -> jax.Array:
    return jnp.concatenate([forward(p, x[:, : B // 2]), forward(p, x[:, B // 2 :])], axis=1)

  one = jax.jit(forward)
  per_device = jax.pmap(forward, in_axes=(None, 0))
  want = np.asarray(one(params, xs))
  np.testing.assert_allclose(np.asarray(two(params, xs)), want, atol=1e-5)
  np.testing.assert_allclose(np.concatenate(list(np.asarray(per_device(params, halves))), axis=1), want, atol=1e-5)
  return timing.measure(
    {
      "one": lambda: jax.block_until_ready(one(params, xs)),
      "two": lambda: jax.block_until_ready(two(params, xs)),
      "pmap": lambda: jax.block_until_ready(per_device(params, halves)),
    },
    rounds=rounds,
  )


def main(argv: list[str] | None = None) -> None:
  args = timing.shape_arguments("batch_split", __doc__, "64x100x32x128,16x1000x8x64").parse_args(argv)
  print(f"devices: {jax.devices()}")
  print("| B,T,I,H | one scan (ms) | two scans, one program (ms) | pmap over 2 devices (ms) |")
  print("|---:|---:|---:|---:|")
  for shape in args.shapes.split(","):
    B, T, I, H = (int(v) for v in shape.split("x"))
    t = time_shape(B, T, I, H, args.rounds)
    print(f"| {B},{T},{I},{H} | {t['one'] * 1e3:.2f} | {t['two'] * 1e3:.2f} | {t['pmap'] * 1e3:.2f} |")


if __name__ == "__main__":
  main()
