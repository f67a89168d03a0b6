"""Many trials on the CPU: ``vmap`` them, or loop over them? Ways to train N nets, side by side.

Usage::

  python -m benchmarks.vmap_trials [--cells lstm,gru] [--shapes 32x100x2x32,1x100x2x8] [--trials 10,128]
                                   [--updates 10] [--rounds 5] [--malloc default|tuned]

For each cell, shape ``BxTxIxH`` and trial count ``N`` (paired in order: the first shape with the first count, ...),
``N`` independently initialised nets each take ``--updates`` plain gradient steps (lr 0.01, loss ``mean(ys **
2)`` of ``jaxrnn.unroll``, each trial on its own inputs), in three ways,

* ``vmap, per update``: ``jax.jit(jax.vmap(step))`` called once per update, the trials in one program;
* ``vmap, scan``: one ``jax.jit`` call that scans over the updates of ``jax.vmap(step)``;
* ``loop``: ``jax.jit(step)`` of one trial, called for every trial and update from Python (JAX dispatches
  asynchronously, so calls queue while earlier ones run);

and the two vmapped ways again traced under ``fused.chunks_per_example()``: the fast path's derivative then
sizes its chunks for one trial's rows, as it did before it counted the vmapped ones (``fused.mapped_size``).

It checks that all end with the same params, then prints the median time per update of all ``N``
trials (:func:`benchmarks.timing.measure`, interleaved blocks in one process), the minor page faults per update
(``getrusage``) and XLA's temporary memory for one call of each program: above glibc's 32 MiB mmap threshold a
program's temporary buffer is fresh pages on every call (``python -m benchmarks.page_faults``), which
``--malloc tuned`` avoids.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing
from jaxrnn._src import fused

LR = 0.01


def programs(
  cell_name: str, B: int, T: int, I: int, H: int, N: int, U: int
) -> dict[str, tuple[Callable[[], Any], Any]]:
  """``{way: (a blocking call that trains the N trials for U updates, (its jitted program, example args))}``."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = jax.vmap(lambda k: cell.init(k, I))(jax.random.split(jax.random.key(0), N))
  xs = jnp.asarray(np.random.default_rng(0).standard_normal((U, N, T, B, I)), jnp.float32)

  def step(p: Any, x: jax.Array) -> Any:
    g = jax.grad(lambda p: jnp.mean(jaxrnn.unroll(cell, p, x)[1] ** 2))(p)
    return jax.tree.map(lambda a, b: a - LR * b, p, g)

  def vmapped(per_example: bool) -> tuple[Any, Any]:
    def traced(f: Callable[..., Any]) -> Callable[..., Any]:
      def g(*args: Any) -> Any:
        with fused.chunks_per_example() if per_example else contextlib.nullcontext():
          return f(*args)

      return g

    vstep = jax.jit(traced(jax.vmap(step)))
    scanned = jax.jit(traced(lambda p, xs: jax.lax.scan(lambda p, x: (jax.vmap(step)(p, x), None), p, xs)[0]))
    return vstep, scanned

  one = jax.jit(step)
  singles = [jax.tree.map(lambda a: a[n], params) for n in range(N)]  # noqa: B023

  def per_update(vstep: Any) -> Callable[[], Any]:
    def call() -> Any:
      p = params
      for u in range(U):
        p = vstep(p, xs[u])
      return jax.block_until_ready(p)

    return call

  def scan(scanned: Any) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(scanned(params, xs))

  def loop() -> Any:
    out = []
    for n in range(N):
      p = singles[n]
      for u in range(U):
        p = one(p, xs[u, n])
      out.append(p)
    return jax.block_until_ready(jax.tree.map(lambda *a: jnp.stack(a), *out))

  ways = {}
  for per_example, label in ((False, ""), (True, ", chunks per example")):
    vstep, scanned = vmapped(per_example)
    ways[f"vmap, per update{label}"] = (per_update(vstep), (vstep, (params, xs[0])))
    ways[f"vmap, scan{label}"] = (scan(scanned), (scanned, (params, xs)))
  ways["loop"] = (loop, (one, (singles[0], xs[0, 0])))
  return ways


def faults_per_call(fn: Callable[[], Any], calls: int = 3) -> float:
  fn()
  start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(calls):
    fn()
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / calls


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m benchmarks.vmap_trials", description=__doc__.split("\n")[0])
  p.add_argument("--cells", default="lstm,gru", help="comma-separated subset of lstm,gru,elman")
  p.add_argument("--shapes", default="32x100x2x32,1x100x2x8", help="comma-separated BxTxIxH, one per trial count")
  p.add_argument("--trials", default="10,128", help="comma-separated trial counts, one per shape")
  p.add_argument("--updates", type=int, default=10, help="gradient steps per trial")
  p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measurement")
  p.add_argument("--malloc", default="default", choices=timing.MALLOC_CHOICES, help="glibc's malloc setting")
  args = p.parse_args(argv)
  timing.use_malloc(args.malloc)
  shapes, counts = args.shapes.split(","), [int(n) for n in args.trials.split(",")]
  if len(shapes) != len(counts):
    p.error(f"--shapes and --trials pair up: got {len(shapes)} shapes and {len(counts)} trial counts")
  print("\n".join(f"{k}: {v}" for k, v in timing.describe_machine().items()))
  print(f"malloc: {timing.malloc_setting()}; load average (1 min): {timing.load_average():.2f}\n")
  print("| cell | B,T,I,H | trials | way | ms per update | faults per update | XLA temp MiB per call |")
  print("|---|---:|---:|---|---:|---:|---:|")
  for cell_name in args.cells.split(","):
    for shape, N in zip(shapes, counts):
      B, T, I, H = (int(v) for v in shape.split("x"))
      ways = programs(cell_name, B, T, I, H, N, args.updates)
      finals = {name: call() for name, (call, _) in ways.items()}
      first = next(iter(finals.values()))
      for got in finals.values():
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(first), strict=True):
          np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
      secs = timing.measure({name: call for name, (call, _) in ways.items()}, rounds=args.rounds, block_s=0.5)
      for name, (call, (prog, example)) in ways.items():
        temp = prog.lower(*example).compile().memory_analysis().temp_size_in_bytes / 2**20
        faults = faults_per_call(call) / args.updates
        ms = secs[name] / args.updates * 1e3
        print(f"| {cell_name} | {B},{T},{I},{H} | {N} | {name} | {ms:.2f} | {faults:.0f} | {temp:.1f} |", flush=True)
  print(f"\nload average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
