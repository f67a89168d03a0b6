"""What does ``jaxrnn.tune_malloc()`` change for training steps whose temporary memory is above glibc's mmap threshold?

Usage::

  python -m benchmarks.malloc [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7] [--pairs 3]

For each shape, the training steps (forward and backward, loss ``mean(ys ** 2)``) of: one LSTM layer (``lstm``), two
stacked LSTM layers (``2-layer lstm``, ``jaxrnn.stacked``), a bidirectional LSTM and a bidirectional GRU with each
sequence's ``lengths`` drawn from ``[T/2, T]`` (``bi-lstm lengths``, ``bi-gru lengths``; ``jaxrnn.bidirectional``),
and PyTorch's bidirectional ``nn.LSTM`` over the same sequences packed by length (``torch bi-lstm packed``). Each
process times them with :func:`benchmarks.timing.measure` (interleaved blocks), with the minor page faults per call
(``getrusage``) and XLA's temporary memory per call, either with glibc's malloc as it comes or after
:func:`jaxrnn.tune_malloc` (which cannot be undone within a process). ``--pairs`` pairs of such processes run one
after the other, the order alternating within each pair (default then tuned, then tuned then default, ...), and the
table gives the medians over the processes of each kind, with the load average before each process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import bidirectional, models, timing
from benchmarks.page_faults import minor_faults_per_call, temp_mib

CONTESTANTS = ("lstm", "2-layer lstm", "bi-lstm lengths", "bi-gru lengths", "torch bi-lstm packed")


def jax_steps(B: int, T: int, I: int, H: int, lengths: np.ndarray) -> tuple[dict[str, models.Call], dict[str, float]]:
  """jaxrnn's training steps (blocking calls) and XLA's temporary MiB of each."""
  xs = jnp.asarray(models.make_inputs(B, T, I))
  lens = jnp.asarray(lengths)
  layers: dict[str, tuple[Any, dict[str, Any]]] = {
    "lstm": (jaxrnn.rnn(jaxrnn.lstm(H)), {}),
    "2-layer lstm": (jaxrnn.stacked(jaxrnn.rnn(jaxrnn.lstm(H)), jaxrnn.rnn(jaxrnn.lstm(H))), {}),
    "bi-lstm lengths": (jaxrnn.bidirectional(jaxrnn.lstm(H), jaxrnn.lstm(H)), {"lengths": lens}),
    "bi-gru lengths": (jaxrnn.bidirectional(jaxrnn.gru(H), jaxrnn.gru(H)), {"lengths": lens}),
  }
  calls, temps = {}, {}
  for name, (layer, kwargs) in layers.items():
    params = layer.init(jax.random.key(0), I)
    grad, fwd = models.step_and_forward(lambda p, x, layer=layer, kwargs=kwargs: layer.apply(p, x, **kwargs)[1])
    calls[name] = models.blocking_calls(grad, fwd, params, xs)[0]
    temps[name] = temp_mib(grad, params, xs)
  return calls, temps


def measure(calls: dict[str, models.Call], rounds: int) -> dict[str, tuple[float, float]]:
  faults = {name: minor_faults_per_call(fn) for name, fn in calls.items()}
  times = timing.measure(calls, rounds=rounds, block_s=0.25)
  return {name: (times[name], faults[name]) for name in calls}


def run_phase(phase: str, shapes: list[tuple[int, ...]], rounds: int) -> dict[str, Any]:
  """One process's measurements: ``{"B,T,I,H": {step: [seconds, faults, temp MiB or None]}}``, under ``phase``."""
  import torch

  torch.set_num_threads(os.cpu_count() or 1)
  if phase == "tuned" and not jaxrnn.tune_malloc():
    raise SystemExit("jaxrnn.tune_malloc() changed nothing: the C library is not glibc")
  out: dict[str, Any] = {}
  for B, T, I, H in shapes:
    lengths = np.random.default_rng(0).integers(T // 2, T + 1, B).astype(np.int32)
    calls, temps = jax_steps(B, T, I, H, lengths)
    calls["torch bi-lstm packed"] = bidirectional.torch_calls("lstm", models.make_inputs(B, T, I), H, lengths)[0]
    got = measure(calls, rounds)
    out[f"{B},{T},{I},{H}"] = {name: [*got[name], temps.get(name)] for name in CONTESTANTS}
  return out


def main(argv: list[str] | None = None) -> None:
  p = timing.shape_arguments("malloc", __doc__, "64x100x32x128,16x1000x8x64")
  p.add_argument("--pairs", type=int, default=3, help="default/tuned process pairs, alternating")
  p.add_argument("--phase", choices=("default", "tuned"), default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
  if args.phase is not None:  # a child: measure, print one JSON line
    print(json.dumps(run_phase(args.phase, shapes, args.rounds)))
    return
  print("\n".join(f"{k}: {v}" for k, v in timing.describe_machine().items()))
  runs: dict[str, list[dict[str, Any]]] = {"default": [], "tuned": []}
  for k in range(args.pairs):
    for phase in ("default", "tuned") if k % 2 == 0 else ("tuned", "default"):
      print(f"pair {k + 1}, {phase}: load average (1 min) {timing.load_average():.2f}", flush=True)
      cmd = [sys.executable, "-m", "benchmarks.malloc", "--phase", phase, "--shapes", args.shapes]
      out = subprocess.run([*cmd, "--rounds", str(args.rounds)], capture_output=True, text=True, check=True)
      runs[phase].append(json.loads(out.stdout.strip().splitlines()[-1]))
  print(f"load average (1 min) at the end: {timing.load_average():.2f}")
  print()
  print("| step | B,T,I,H | temp MiB | default ms | default faults | tuned ms | tuned faults | tuned / default |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for shape in (",".join(map(str, s)) for s in shapes):
    for name in CONTESTANTS:
      t0, f0, t1, f1 = (
        statistics.median(run[shape][name][i] for run in runs[phase])
        for phase, i in (("default", 0), ("default", 1), ("tuned", 0), ("tuned", 1))
      )
      temp = runs["default"][0][shape][name][2]
      print(
        f"| {name} | {shape} | {'-' if temp is None else f'{temp:.1f}'} | {t0 * 1e3:.2f} | "
        f"{f0:,.0f} | {t1 * 1e3:.2f} | {f1:,.0f} | {t1 / t0:.2f} |"
      )


if __name__ == "__main__":
  main()
