"""Does XLA CPU run the per-step product of a scan on more than one core?

Usage::

  python -m benchmarks.one_core [--shape 64x100x32x128] [--rounds 9]
  taskset -c 0 python -m benchmarks.one_core                                  # pinned to one core
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python -m benchmarks.one_core  # Eigen single-threaded

Times a ``lax.scan`` of an LSTM-sized recurrent step (``h W`` with ``W: (H, 4H)``, then ``tanh`` of the
first block) over ``T`` steps, with the batch in one product (``one``) or split into 2 or 4 independent
sub-batch products in the same step (``two``, ``four``), after checking that all three give the same
outputs. Equal times pinned and unpinned mean one core does the products; equal times for the splits mean
XLA does not run independent products side by side.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing


def split_scan(n: int, B: int, H: int):
  """A jitted scan whose step does ``n`` independent sub-batch products."""

  def run(w: jax.Array, xs: jax.Array) -> jax.Array:
    def body(hs, x):
      b = B // n
      outs = tuple(jnp.tanh((hs[i] @ w + x[i * b : (i + 1) * b])[:, :H]) for i in range(n))
      return outs, jnp.concatenate(outs)

    return jax.lax.scan(body, (jnp.zeros((B // n, H)),) * n, xs)[1]

  return jax.jit(run)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.one_core", description=__doc__.split("\n")[0])
  p.add_argument("--shape", default="64x100x32x128", help="BxTxIxH (I is unused: the inputs enter as 4H columns)")
  p.add_argument("--rounds", type=int, default=9)
  args = p.parse_args(argv)
  B, T, _, H = (int(v) for v in args.shape.split("x"))
  w = jax.random.normal(jax.random.key(0), (H, 4 * H)) * 0.05
  xs = jax.random.normal(jax.random.key(1), (T, B, 4 * H))
  runs = {name: split_scan(n, B, H) for name, n in (("one", 1), ("two", 2), ("four", 4))}
  want = np.asarray(runs["one"](w, xs))
  for run in runs.values():
    np.testing.assert_allclose(np.asarray(run(w, xs)), want, atol=1e-5)
  secs = timing.measure({k: (lambda r=r: r(w, xs).block_until_ready()) for k, r in runs.items()}, rounds=args.rounds)
  print(f"shape {args.shape}; load average {timing.load_average():.2f}")
  print("  ".join(f"{k}: {v * 1e3:.2f} ms" for k, v in secs.items()))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
