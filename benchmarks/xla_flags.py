"""Do XLA CPU's library-fusion flags (XNNPACK, YNNPACK, oneDNN) speed up ``jaxrnn.unroll``?

Usage::

  python -m benchmarks.xla_flags [--shape 64x100x32x128] [--rounds 7]

The settings hand the dots, or (``eltwise``) also the elementwise operations, to a library. XLA reads
``XLA_FLAGS`` once, when JAX starts, so each flag setting runs in its own child process
(``python -m benchmarks.xla_flags --child``), which times the LSTM's forward pass (inference) and its
training step (forward + backward of a sum of squares) with :func:`benchmarks.timing.measure` and checks its
outputs against the parent's plain run. The parent prints one row per setting; a setting that fails to
compile or run is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SETTINGS = (
  "",
  "--xla_cpu_experimental_ynn_fusion_type=individual_dot",
  "--xla_cpu_experimental_ynn_fusion_type=individual_dot,eltwise",
  "--xla_cpu_experimental_xnn_fusion_type=individual_dot",
  "--xla_cpu_experimental_onednn_fusion_type=dot",
)


def child(shape: str, rounds: int) -> None:
  """Times inference and training at ``shape`` under this process's XLA_FLAGS; prints one JSON line.

  The line also holds the sums of the outputs and of the gradients, which the parent compares across settings.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  import jaxrnn
  from benchmarks import timing

  B, T, I, H = (int(v) for v in shape.split("x"))
  cell = jaxrnn.lstm(H)
  params = cell.init(jax.random.key(0), I)
  xs = jax.random.normal(jax.random.key(1), (T, B, I))
  infer = jax.jit(lambda p, x: jaxrnn.unroll(cell, p, x)[1])
  train = jax.jit(jax.grad(lambda p, x: jnp.sum(jaxrnn.unroll(cell, p, x)[1] ** 2)))
  out = np.asarray(infer(params, xs))
  grad_sum = float(sum(np.sum(np.asarray(g)) for g in jax.tree.leaves(train(params, xs))))
  t = timing.measure(
    {
      "infer": lambda: jax.block_until_ready(infer(params, xs)),
      "train": lambda: jax.block_until_ready(train(params, xs)),
    },
    rounds=rounds,
  )
  print(
    json.dumps(
      {"infer_ms": t["infer"] * 1e3, "train_ms": t["train"] * 1e3, "out_sum": float(out.sum()), "grad_sum": grad_sum}
    )
  )


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m benchmarks.xla_flags", description=__doc__.split("\n")[0])
  p.add_argument("--shape", default="64x100x32x128", help="BxTxIxH of the LSTM")
  p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per measurement")
  p.add_argument(
    "--setting",
    action="append",
    dest="settings",
    help="an XLA_FLAGS value to compare instead of the default list (repeat; --setting= is none)",
  )
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    child(args.shape, args.rounds)
    return
  from benchmarks import timing

  print(f"shape B,T,I,H = {args.shape}; load average {timing.load_average():.2f}")
  print("| XLA_FLAGS | inference (ms) | training step (ms) |")
  print("|---|---:|---:|")
  base = None
  for flags in SETTINGS if args.settings is None else args.settings:
    env = dict(os.environ, XLA_FLAGS=flags)
    cmd = [sys.executable, "-m", "benchmarks.xla_flags", "--child", "--shape", args.shape, "--rounds", str(args.rounds)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    name = f"`{flags}`" if flags else "(none)"
    if run.returncode != 0:
      error = run.stderr.strip().splitlines()[-1].split("Error dispatching computation: ")[-1]
      print(f"| {name} | failed: {error[:100]} | |")
      continue
    r = json.loads(run.stdout.strip().splitlines()[-1])
    if base is None:
      base = r
    for key in ("out_sum", "grad_sum"):
      if not abs(r[key] - base[key]) <= 1e-3 * max(1.0, abs(base[key])):
        raise SystemExit(f"{name}: {key} differs from the plain run ({r[key]} against {base[key]})")
    print(f"| {name} | {r['infer_ms']:.2f} | {r['train_ms']:.2f} |")
  print(f"load average {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
