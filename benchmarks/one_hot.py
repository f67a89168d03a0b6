"""How much faster do the experiments train with ``model.one_hot_inputs = "gather"``?

Usage::

  python -m benchmarks.one_hot [--rows exp2c_q1000_p50,exp2c_q1000_p200,exp2c_q1000_p1000] [--trials 20]

For each config row, builds the experiment engine twice, with ``model.one_hot_inputs`` = "matmul" (a
one-hot vector times the input weights at every step) and "gather" (the row of the input weights of
each step's symbol), checks that one chunk of training gives the same weights (to float32 rounding),
then times a compiled chunk of ``--chunk`` online updates of every trial, interleaved
(:func:`benchmarks.timing.measure`), and prints trial-sequences per second and the ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from benchmarks import timing
from experiments import config, train
from experiments.tasks import make_task

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("exp2c_q1000_p50", "exp2c_q1000_p200", "exp2c_q1000_p1000")
MODES = ("matmul", "gather")


def engines(row: str, trials: int, chunk: int) -> dict[str, train.Experiment]:
  """The row's experiment with each input mode, ``trials`` trials and ``chunk`` updates per chunk."""
  out = {}
  for mode in MODES:
    overrides = [f"model.one_hot_inputs={mode}", f"train.trials={trials}", f"train.eval_every={chunk}"]
    cfg = config.load(ROOT / "configs" / f"{row}.toml", overrides)
    out[mode] = train.build(cfg, make_task(cfg.task.name, **cfg.task.params))
  return out


def time_row(row: str, trials: int, chunk: int, rounds: int) -> dict[str, float]:
  """Trial-sequences per second of each mode, after checking that both train alike."""
  exps = engines(row, trials, chunk)
  states = {mode: exp.init_state() for mode, exp in exps.items()}
  after = {mode: exps[mode].run_chunk(states[mode]) for mode in MODES}
  for a, b in zip(
    jax.tree.leaves(after["matmul"].trials.params), jax.tree.leaves(after["gather"].trials.params), strict=True
  ):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
  calls = {mode: (lambda m=mode: jax.block_until_ready(exps[m].run_chunk(states[m]))) for mode in MODES}
  secs = timing.measure(calls, rounds=rounds, block_s=1.0)
  return {mode: trials * chunk / secs[mode] for mode in MODES}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.one_hot", description=__doc__.split("\n")[0])
  parser.add_argument("--rows", default=",".join(ROWS), help="config names, comma-separated")
  parser.add_argument("--trials", type=int, default=20, help="vmapped trials (the rows' 20)")
  parser.add_argument("--chunk", type=int, default=100, help="online updates per timed chunk")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
  args = parser.parse_args(argv)
  machine = timing.describe_machine()
  print("\n".join(f"{k}: {v}" for k, v in machine.items()))
  print(f"load average at start: {timing.load_average():.2f}")
  print()
  print("| row | matmul (trial-seq/s) | gather (trial-seq/s) | gather / matmul |")
  print("|---|---:|---:|---:|")
  for row in args.rows.split(","):
    rate = time_row(row, args.trials, args.chunk, args.rounds)
    print(
      f"| {row} | {rate['matmul']:,.0f} | {rate['gather']:,.0f} | {rate['gather'] / rate['matmul']:.1f}x |", flush=True
    )
  print(f"\nload average at end: {timing.load_average():.2f}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
