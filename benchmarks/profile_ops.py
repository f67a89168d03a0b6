"""Where the sweep's time goes, operation by operation: a profile of one compiled program per path.

Usage::

  python -m benchmarks.profile_ops [--trials 128] [--sequences 100] [--impls auto,reference] [--top 12]

Builds ``benchmarks.sweep``'s program (online training of the 1997 paper's adding net, ``--trials`` trials
vmapped, ``--sequences`` sequences of 100 steps each) with ``jaxrnn.unroll(impl=...)`` for each of ``--impls``,
runs it under ``jax.profiler`` and sums, per XLA operation (a thunk of XLA CPU's executor: a fusion, a
product, a copy), the time of its events over the calls (``jax.profiler.ProfileData``). Prints per path the
total of the operations' times per call, the number of operation executions, and the ``--top`` operations by
time per call, each with its executions per sequence (about 100 for one inside the loop over steps, 1 for one
run once per sequence), microseconds per execution and its result shape from the compiled HLO.

The profiler adds a microsecond or so to every execution, so the totals exceed the program's own time: they
rank operations and compare paths; ``python -m benchmarks.run --sections sweep`` times the program itself.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile

import jax

from benchmarks import sweep

T = 100


def shapes(hlo: str) -> dict[str, str]:
  """``{operation name: result shape}`` from a compiled module's HLO text."""
  return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\S+?\[[^\]]*\])", hlo, re.M)}


def profile(impl: str, trials: int, sequences: int, calls: int = 3) -> tuple[dict[str, float], dict[str, int], str]:
  """``(ms per call by operation, executions per call by operation, compiled HLO)`` of the sweep program."""
  program, args = sweep.jaxrnn_parts(trials, sequences, T, impl=impl)
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
  args = p.parse_args(argv)
  print(f"{args.trials} trials x {args.sequences} sequences of {T} steps per call; ms per call")
  for impl in args.impls.split(","):
    ms, count, hlo = profile(impl, args.trials, args.sequences)
    shape = shapes(hlo)
    total, execs = sum(ms.values()), sum(count.values())
    per_seq = execs / args.sequences
    print(f"\n{impl}: operations {total:.1f} ms per call, {execs} executions ({per_seq:.0f} per sequence)")
    print("| operation | ms per call | per sequence | us each | shape |")
    print("|---|---:|---:|---:|---|")
    for name, t in sorted(ms.items(), key=lambda kv: -kv[1])[: args.top]:
      n = max(count[name], 1)
      print(f"| {name} | {t:.2f} | {n / args.sequences:.0f} | {t / n * 1e3:.1f} | {shape.get(name, '?')} |")


if __name__ == "__main__":
  main()
