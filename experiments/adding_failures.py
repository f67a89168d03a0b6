"""Where the trained adding / multiplication nets of a finished run go wrong.

Usage::

  python -m experiments.adding_failures results/exp4_adding_t100 [--sequences 20000] [--trials 3]

Loads the run's ``config.toml`` and ``checkpoint.npz`` (written by ``python -m experiments run``), draws
fresh sequences, and prints for each trial how many are wrong (absolute error >= 0.04 at the last step),
split by target range and by whether a marker falls on pair 0, then per target range the mean output, the
range of the output unit's net input and the largest cell output (and, for the 1997 cell, the mean absolute
cell state at the last step), and a few of the wrong sequences.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from experiments import checkpoint, config, runner, train


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dir", type=Path)
  p.add_argument("--sequences", type=int, default=20000)
  p.add_argument("--trials", type=int, default=3)
  p.add_argument("--seed", type=int, default=123)
  args = p.parse_args(argv)
  cfg = config.load(args.run_dir / "config.toml")
  with runner.precision(cfg):  # float64 runs rebuild their model under jax.enable_x64
    _main(args, cfg)


def _main(args: argparse.Namespace, cfg: config.Config) -> None:
  task = runner.make_task(cfg)
  if task.name not in ("adding", "multiplication"):
    raise SystemExit(f"{args.run_dir} ran task {task.name!r}; this script reads 'adding' or 'multiplication' runs")
  exp = train.build(cfg, task)
  task, model = exp.task, exp.model  # the task as the run saw it (float64 data in a float64 run)
  state, _ = checkpoint.load(checkpoint.of_run(args.run_dir), exp.init_state())
  ex = jax.vmap(task.sample)(jax.random.split(jax.random.key(args.seed), args.sequences))
  rows = jnp.arange(args.sequences)
  last = ex.length - 1
  target = np.asarray(ex.targets[rows, last, 0])
  markers = np.asarray(ex.xs[..., 1])
  first_marked = markers[:, 0] == 1.0
  apply = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))

  @jax.jit
  def cells_at_end(params: train.ModelParams, xs: jax.Array, lengths: jax.Array) -> tuple[Any, jax.Array]:
    """Each sequence's cell carry after its last valid step, and the cell outputs at every step."""
    return jax.vmap(lambda x, n: jaxrnn.unroll(model.cell, params.cell, x, lengths=n))(xs, lengths)

  edges = [0.1, 0.9]
  print(f"{args.sequences} fresh sequences; wrong = absolute error >= 0.04 at the last step")
  for i in range(min(args.trials, int(state.trials.lr.shape[0]))):
    params = train.trial_params(state, i)
    out, z = apply(params, model.inputs(ex))
    y = np.asarray(out[rows, last, 0])
    net = np.asarray(z[rows, last, 0])
    carry, hs = cells_at_end(params, ex.xs, ex.length)
    cells = np.asarray(hs[rows, last])
    wrong = np.abs(y - target) >= 0.04
    bins = np.digitize(target, edges)
    by_bin = ", ".join(
      f"{name}: {int(wrong[bins == b].sum())}/{int((bins == b).sum())}"
      for b, name in enumerate([f"target < {edges[0]}", "middle", f"target > {edges[1]}"])
    )
    print(f"trial {i}: {int(wrong.sum())} wrong, MSE {np.mean((y - target) ** 2):.2e}; {by_bin}; ", end="")
    print(f"pair 0 marked: {int(wrong[first_marked].sum())}/{int(first_marked.sum())}")
    if hasattr(carry, "s"):  # the 1997 cell: do the cells hold anything at the end (0: nothing; large: drifted)?
      states = np.abs(np.asarray(carry.s))
      per_cell = ", ".join(f"{v:.3f}" for v in states.mean(axis=0))
      print(f"  mean |cell state| at the last step, per cell: {per_cell}")
    # Why the ends go wrong: how far the output unit's net input and the cells' outputs reach there.
    for b, name in enumerate([f"target < {edges[0]}", "middle", f"target > {edges[1]}"]):
      m = bins == b
      if m.any():
        print(
          f"  {name}: mean target {target[m].mean():.3f}, mean output {y[m].mean():.3f}, "
          f"output net input {net[m].min():.2f} to {net[m].max():.2f}, "
          f"largest |cell output| {np.abs(cells[m]).max():.2f}"
        )
    for k in np.flatnonzero(wrong)[:5]:
      pos = np.flatnonzero(markers[k] == 1.0)
      vals = np.asarray(ex.xs[k, pos, 0]).round(3)
      print(f"  marked pairs {pos.tolist()} values {vals.tolist()} target {target[k]:.3f} output {y[k]:.3f}")


if __name__ == "__main__":
  main()
