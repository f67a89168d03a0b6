"""How should an LSTM step compute its gate activations on XLA CPU? Forward passes side by side.

Usage::

  python -m benchmarks.gates [--shapes 64x100x32x128,16x1000x8x64,32x100x2x8,8x200x64x512] [--rounds 7]

jaxrnn's fast path computes the four gates of ``jaxrnn.lstm`` as one full-width sigmoid over the
``(B, 4H)`` pre-activations, the sigmoid written ``0.5 tanh(x / 2) + 0.5`` and the cell input ``g`` as
``2 sigmoid(2 z) - 1`` (so one transcendental pass covers every gate; the training step keeps that one
array for the backward pass). This benchmark times, in one process with interleaved blocks, the forward
pass (inference) of a ``lax.scan`` whose step computes the gates

* ``full``: that way (what the fast path does);
* ``split``: per gate block, three sigmoids as ``0.5 tanh(x / 2) + 0.5`` and ``tanh`` for ``g``;
* ``logistic``: per gate block, ``jax.nn.sigmoid`` and ``tanh``;

beside ``jaxrnn.unroll`` (fast path) and ``impl="reference"`` (the cell's own step), with the same weights
and inputs, after checking that all five give the same outputs. Medians in milliseconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

VARIANTS = ("full", "split", "logistic")


def _sigmoid_tanh(x: jax.Array) -> jax.Array:
  return 0.5 * jnp.tanh(0.5 * x) + 0.5


def lstm_scan(params: jaxrnn.LSTMParams, H: int, variant: str) -> Callable[[jax.Array], jax.Array]:
  """The forward pass ``xs (T, B, I) -> ys (T, B, H)`` of ``jaxrnn.lstm(H)`` with the gates computed as ``variant``."""
  w_x, w_h = params.w_x, params.w_h
  b = jnp.zeros(4 * H, w_x.dtype) if params.b is None else params.b
  scale = jnp.concatenate([jnp.ones(2 * H), jnp.full(H, 2.0), jnp.ones(H)])  # i, f, g, o

  def step(carry: tuple[jax.Array, jax.Array], x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    h, c = carry
    z = x @ w_x + h @ w_h + b
    if variant == "full":
      i, f, sg, o = jnp.split(_sigmoid_tanh(z * scale), 4, axis=-1)
      g = 2.0 * sg - 1.0
    else:
      zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
      sigmoid = _sigmoid_tanh if variant == "split" else jax.nn.sigmoid
      i, f, o, g = sigmoid(zi), sigmoid(zf), sigmoid(zo), jnp.tanh(zg)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), h

  def run(xs: jax.Array) -> jax.Array:
    zeros = jnp.zeros((xs.shape[1], H), xs.dtype)
    return jax.lax.scan(step, (zeros, zeros), xs)[1]

  return run


def time_shape(B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of each forward pass at one shape, after checking that they agree."""
  cell = jaxrnn.lstm(H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  fns: dict[str, Callable[[jax.Array], Any]] = {
    "jaxrnn": jax.jit(lambda xs: jaxrnn.unroll(cell, params, xs)[1]),
    "reference": jax.jit(lambda xs: jaxrnn.unroll(cell, params, xs, impl="reference")[1]),
  }
  for variant in VARIANTS:
    fns[variant] = jax.jit(lstm_scan(params, H, variant))
  want = np.asarray(fns["reference"](xs))
  for name, fn in fns.items():
    np.testing.assert_allclose(np.asarray(fn(xs)), want, rtol=1e-4, atol=1e-5, err_msg=name)
  calls = {name: (lambda fn=fn: fn(xs).block_until_ready()) for name, fn in fns.items()}
  return timing.measure(calls, rounds=rounds, block_s=0.25)


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m benchmarks.gates", description=__doc__.split("\n")[0])
  p.add_argument(
    "--shapes", default="64x100x32x128,16x1000x8x64,32x100x2x8,8x200x64x512", help="comma-separated BxTxIxH"
  )
  p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per measurement")
  args = p.parse_args(argv)
  names = ("jaxrnn", "reference", *VARIANTS)
  print(f"load average (1 min): {timing.load_average():.2f}")
  print("| B,T,I,H | " + " | ".join(names) + " |")
  print("|---:|" + "---:|" * len(names))
  for shape in args.shapes.split(","):
    B, T, I, H = (int(v) for v in shape.split("x"))
    t = time_shape(B, T, I, H, args.rounds)
    print(f"| {B},{T},{I},{H} | " + " | ".join(f"{t[n] * 1e3:.2f}" for n in names) + " |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
