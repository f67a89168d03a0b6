"""What the memory cells of a finished paper-mode run hold at the end of a sequence, before and after training.

Usage::

  python -m experiments.cell_states results/exp2c_q100_p100 [--sequences 400] [--trials 20] [--seed 1]

Loads the run's ``config.toml`` and ``checkpoint.npz`` (written by ``python -m experiments run`` with
the ``lstm1997`` cell), draws fresh sequences, and prints for each trial its last training error
and, per cell, the internal state ``s`` after the last valid step:

* ``|s| init`` and ``|s| end``: the mean absolute state with the trial's initial and its trained
  weights. ``h(s) = 2 sigmoid(s) - 1`` is flat beyond ``|s| ~ 3`` (``h'(3) = 0.09``, ``h'(0) = 0.5``),
  so a cell whose state sits far out carries almost no error back (the paper's "internal state drift",
  Sect. 4);
* for tasks scored by class (Exp 2c, 3, 6: the target at the last step, its largest entry, or
  ``> 0.5`` for one output; Exp 3c's targets carry noise, so there the class is approximate; Exp 1:
  the outer symbol, class 0 for ``T`` and 1 for ``P``),
  ``spread``: the standard deviation of the per-class mean states, and ``within``: the mean
  standard deviation inside a class. A cell with a large ``|s|``, a small ``spread`` and a small
  ``within`` is a constant: saturated at the same value for every class (the paper's "abuse
  problem", a memory cell used as a bias, Sect. 4); a cell that stores the class has ``spread``
  well above ``within``;
* for the adding and multiplication tasks (a real target), ``corr``: the correlation of the state
  with the target.

A second line per trial counts the sequences the trained net gets wrong (the task's own ``correct``,
the rule of its training streaks), split by sequence length (quartiles) and, for class tasks, by class.

For Exp 1 (``reber``, scored at every step) a third line counts the wrong steps by context: the
previous and the current symbol and the legal next ones, e.g. ``TV->PV 130`` (after ``T V`` the
legal next symbols are ``P`` and ``V``: a one-step memory) or ``SE->T 57`` (after the inner ``E``
the outer ``T`` must come: the long-lag step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from experiments import checkpoint, config, runner, train
from experiments.tasks import reber

REAL_TARGETS = ("adding", "multiplication")
CHUNK = 1000  # sequences per compiled call (20,000 sequences of 2c at q = 100 would need 1.7 GB at once)


def _classes(targets: np.ndarray) -> np.ndarray:
  """The class of each sequence from its last step's target ``(N, K)``."""
  return targets.argmax(axis=1) if targets.shape[1] > 1 else (targets[:, 0] > 0.5).astype(int)


def _fmt(v: np.ndarray) -> str:
  return "[" + ", ".join(f"{x:.2f}" for x in v) + "]"


def describe(s: np.ndarray, targets: np.ndarray, real: bool) -> str:
  """One trial's end states ``s (N, cells)`` summarised per cell (see the module docstring)."""
  parts = []
  for c in range(s.shape[1]):
    v = s[:, c]
    if real:
      corr = float(np.corrcoef(v, targets[:, 0])[0, 1]) if v.std() > 0 else 0.0
      parts.append(f"corr {corr:+.2f}")
    else:
      cls = _classes(targets)
      means = [v[cls == k].mean() for k in np.unique(cls)]
      within = np.mean([v[cls == k].std() for k in np.unique(cls)])
      parts.append(f"spread {np.std(means):.2f} within {within:.2f}")
  return "; ".join(f"cell {c}: {p}" for c, p in enumerate(parts))


def _wrong_by(wrong: np.ndarray, groups: np.ndarray, names: list[str]) -> str:
  """``name: wrong/count`` for each group ``0, 1, ...`` of ``groups``."""
  counts = [(int(wrong[groups == g].sum()), int((groups == g).sum())) for g in range(len(names))]
  return ", ".join(f"{name}: {w}/{m}" for name, (w, m) in zip(names, counts))


def wrong_contexts(wrong_step: np.ndarray, ids: np.ndarray, legal: np.ndarray, top: int = 8) -> str:
  """Exp 1's wrong steps ``(N, T)`` counted by context ``PREV CUR->LEGAL`` (``^`` before the first symbol)."""
  counts: dict[str, int] = {}
  for n, t in zip(*np.nonzero(wrong_step)):
    prev = reber.SYMBOLS[ids[n, t - 1]] if t > 0 else "^"
    nxt = "".join(reber.SYMBOLS[k] for k in np.flatnonzero(legal[n, t]))
    context = f"{prev}{reber.SYMBOLS[ids[n, t]]}->{nxt}"
    counts[context] = counts.get(context, 0) + 1
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
  return ", ".join(f"{c} {k}" for c, k in ranked) if ranked else "none"


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dir", type=Path)
  p.add_argument("--sequences", type=int, default=400)
  p.add_argument("--trials", type=int, default=None, help="the first N trials (default: all)")
  p.add_argument("--seed", type=int, default=1)
  args = p.parse_args(argv)
  if args.sequences < 1 or (args.trials is not None and args.trials < 1):
    p.error(f"--sequences and --trials must be at least 1; got {args.sequences} and {args.trials}")
  cfg = config.load(args.run_dir / "config.toml")
  with runner.precision(cfg):  # float64 runs rebuild their model under jax.enable_x64
    _main(args, cfg)


def _main(args: argparse.Namespace, cfg: config.Config) -> None:
  if cfg.model.cell != "lstm1997":
    raise SystemExit(f"{args.run_dir} ran cell {cfg.model.cell!r}; this script reads runs of the 'lstm1997' cell")
  task = runner.make_task(cfg)
  exp = train.build(cfg, task)
  task, model = exp.task, exp.model  # the task as the run saw it (float64 data in a float64 run)
  init = exp.init_state()
  state, _ = checkpoint.load(checkpoint.of_run(args.run_dir), init)
  lines = (args.run_dir / "metrics.jsonl").read_text().splitlines()
  errors = json.loads(lines[-1])["train_error"] if lines else None
  keys = jax.random.split(jax.random.key(args.seed), args.sequences)
  chunks = [keys[i : i + CHUNK] for i in range(0, args.sequences, CHUNK)]

  def run_one(params: train.ModelParams, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One pass over a sequence (``model.inputs`` of it): the outputs and the cell states of every step."""

    def body(carry: jaxrnn.LSTM1997Carry, x: jax.Array) -> tuple[jaxrnn.LSTM1997Carry, tuple[jax.Array, jax.Array]]:
      carry, (out, _) = model.step(params, carry, x)
      return carry, (out, carry.s)

    dtype = params.out.w.dtype
    _, (outputs, s) = jax.lax.scan(body, model.cell.initial_carry((), dtype), inputs)
    return outputs, s

  @jax.jit
  def measure(params: train.ModelParams, keys: jax.Array) -> tuple[jax.Array, ...]:
    """For fresh sequences: the cell states after the last valid step, correct, last targets, lengths; for
    Exp 1 also which scored steps are wrong (legal outputs not the most active), the symbols, the legal sets."""
    ex = jax.vmap(task.sample)(keys)
    outputs, s = jax.vmap(run_one, in_axes=(None, 0))(params, model.inputs(ex))
    at_end = jax.vmap(lambda a, n: a[n - 1])
    targets = at_end(ex.targets, ex.length)
    steps: tuple[jax.Array, ...] = ()
    if task.name == "reber":  # every string ends on E: the class is the outer symbol (T or P) the net must carry
      assert ex.ids is not None, "the reber task gives each step's symbol"
      targets = jax.nn.one_hot((ex.ids[:, 1] == reber.SYMBOLS.index("P")).astype(jnp.int32), 2)
      steps = (~reber.step_correct(outputs, ex), ex.ids, ex.legal)
    return (at_end(s, ex.length), jax.vmap(task.correct)(outputs, ex), targets, ex.length, *steps)

  def measure_all(params: train.ModelParams) -> list[np.ndarray]:
    parts = [jax.device_get(measure(params, k)) for k in chunks]
    return [np.concatenate([np.asarray(part[j]) for part in parts]) for j in range(len(parts[0]))]

  n = int(state.trials.lr.shape[0]) if args.trials is None else min(args.trials, int(state.trials.lr.shape[0]))
  real = task.name in REAL_TARGETS
  print(f"{args.sequences} fresh sequences; s = a cell's internal state after the last valid step")
  for i in range(n):
    s0 = measure_all(train.trial_params(init, i))[0]
    s1, correct, targets, length, *steps = measure_all(train.trial_params(state, i))
    err = "-" if errors is None or errors[i] is None else f"{errors[i]:.3g}"
    print(
      f"trial {i}: train error {err}; |s| init {_fmt(np.abs(s0).mean(0))}, end {_fmt(np.abs(s1).mean(0))}; "
      f"at the end: {describe(s1, targets, real)}"
    )
    wrong = ~correct
    edges = np.unique(np.quantile(length, [0.25, 0.5, 0.75]))
    bins = np.searchsorted(edges, length, side="left")
    lo = [int(length.min())] + [int(e) + 1 for e in edges]
    hi = [int(e) for e in edges] + [int(length.max())]
    by_length = _wrong_by(wrong, bins, [f"{a}-{b}" if a < b else f"{a}" for a, b in zip(lo, hi)])
    line = f"  wrong {int(wrong.sum())} of {len(wrong)}; by length: {by_length}"
    if not real:
      cls = _classes(targets)
      line += f"; by class: {_wrong_by(wrong, cls, [str(k) for k in range(int(cls.max()) + 1)])}"
    print(line)
    if steps:
      wrong_step, ids, legal = steps
      print(
        f"  wrong steps by context (previous, current symbol -> legal next): {wrong_contexts(wrong_step, ids, legal)}"
      )


if __name__ == "__main__":
  main()
