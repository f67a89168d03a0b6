"""Where the sweep's time goes, operation by operation: a profile of one compiled program per path.

Usage::

  python -m benchmarks.profile_ops [--trials 128] [--sequences 100] [--impls auto,reference] [--top 12]
  python -m benchmarks.profile_ops --step lstm:16x1000x8x64:train [--impls auto] [--top 25]

Builds ``benchmarks.sweep``'s program (online training of the 1997 paper's adding net, ``--trials`` trials
vmapped, ``--sequences`` sequences of 100 steps each) with ``jaxrnn.unroll(impl=...)`` for each of ``--impls``,
runs it under ``jax.profiler`` and sums, per XLA operation (a thunk of XLA CPU's executor: a fusion, a
product, a copy), the time of its events over the calls (``jax.profiler.ProfileData``). Prints per path the
total of the operations' times per call, the number of operation executions, and the ``--top`` operations by
time per call, each with its executions per sequence (about 100 for one inside the loop over steps, 1 for one
run once per sequence), microseconds per execution and its result shape from the compiled HLO.

With ``--step CELL:BxTxIxH:MODE`` it profiles ``benchmarks.run``'s training step (``MODE`` ``train``) or forward
pass (``infer``) of ``jaxrnn.unroll`` for one cell and shape instead, per call of that program; its executions
are then counted per call, not per sequence.

The profiler adds a microsecond or so to every execution, so the totals exceed the program's own time: they
rank operations and compare paths; ``python -m benchmarks.run --sections sweep`` times the program itself.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import models, sweep

T = 100


def shapes(hlo: str) -> dict[str, str]:
  """``{operation name: result shape}`` from a compiled module's HLO text."""
  return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\S+?\[[^\]]*\])", hlo, re.M)}


def step_parts(step: str, impl: str) -> tuple[Any, tuple[Any, ...]]:
  """``(jitted function, args)`` of ``CELL:BxTxIxH:MODE``: ``jaxrnn.unroll``'s training step or forward pass."""
  cell_name, shape, mode = step.split(":")
  if mode not in ("train", "infer"):
    raise SystemExit(f"--step's mode must be train or infer, got {mode!r}")
  B, T_, I, H = (int(v) for v in shape.split("x"))
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  grad, fwd = models.unroll_step_and_forward(cell, impl=impl)
  return (grad if mode == "train" else fwd), (params, jnp.asarray(models.make_inputs(B, T_, I)))


def profile(
  impl: str, trials: int, sequences: int, calls: int = 3, step: str | None = None
) -> tuple[dict[str, float], dict[str, int], str]:
  """``(ms per call by operation, executions per call by operation, compiled HLO)`` of the sweep program (or of
  ``step``'s, see :func:`step_parts`)."""
  program, args = sweep.jaxrnn_parts(trials, sequences, T, impl=impl) if step is None else step_parts(step, impl)
  compiled = program.lower(*args).compile()  # the executable profiled, and its HLO for the shapes
  jax.block_until_ready(compiled(*args))  # warm up
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    for _ in range(calls):
      jax.block_until_ready(compiled(*args))
    jax.profiler.stop_trace()
    data = jax.profiler.ProfileData.from_file(glob.glob(f"{d}/plugins/profile/*/*.xplane.pb")[0])
    ms: dict[str, float] = collections.defaultdict(float)
    count: dict[str, int] = collections.defaultdict(int)
    for plane in data.planes:
      for line in plane.lines:
        if "XLAEigen" not in line.name:  # XLA CPU's executor threads
          continue
        for ev in line.events:
          if ev.name.startswith(("while", "ThunkExecutor")):  # loops: the sum of their operations
            continue
          ms[ev.name] += ev.duration_ns / 1e6 / calls
          count[ev.name] += 1
  return dict(ms), {k: v // calls for k, v in count.items()}, compiled.as_text()


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m benchmarks.profile_ops", description=__doc__.split("\n")[0])
  p.add_argument("--trials", type=int, default=128)
  p.add_argument("--sequences", type=int, default=100, help="sequences per trial in one call")
  p.add_argument("--impls", default="auto,reference", help="jaxrnn.unroll impl= values, comma-separated")
  p.add_argument("--top", type=int, default=12, help="operations listed per path")
  p.add_argument("--step", default=None, help="CELL:BxTxIxH:train|infer, a jaxrnn.unroll step instead of the sweep")
  args = p.parse_args(argv)
  per = 1 if args.step else args.sequences  # executions are counted per call of a step, per sequence of the sweep
  unit = "call" if args.step else "sequence"
  if args.step:
    print(f"{args.step}; ms per call")
  else:
    print(f"{args.trials} trials x {args.sequences} sequences of {T} steps per call; ms per call")
  for impl in args.impls.split(","):
    ms, count, hlo = profile(impl, args.trials, args.sequences, calls=20 if args.step else 3, step=args.step)
    shape = shapes(hlo)
    total, execs = sum(ms.values()), sum(count.values())
    print(f"\n{impl}: operations {total:.1f} ms per call, {execs} executions ({execs / per:.0f} per {unit})")
    print(f"| operation | ms per call | per {unit} | us each | shape |")
    print("|---|---:|---:|---:|---|")
    for name, t in sorted(ms.items(), key=lambda kv: -kv[1])[: args.top]:
      n = max(count[name], 1)
      print(f"| {name} | {t:.2f} | {n / per:.0f} | {t / n * 1e3:.1f} | {shape.get(name, '?')} |")


if __name__ == "__main__":
  main()
