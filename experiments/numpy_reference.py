"""Exp 1 outside JAX: the 1997 LSTM and its online truncated RTRL, written out in numpy from the paper.

Usage::

  python -m experiments.numpy_reference [--blocks 3] [--block-size 2] [--lr 0.5] [--trials 10]
      [--max-sequences 30000] [--input-gate-bias random|B] [--update-every step|sequence] [--workers 2]

An independent second implementation of the paper's Exp 1 set-up (Hochreiter & Schmidhuber 1997,
Sect. 5.1 and Appendix A.1), sharing nothing with :mod:`jaxrnn` or :mod:`experiments.train` but the
task's fixed string sets: the forward pass, the sensitivities ``ds/dw`` and every weight change are
spelled out per unit, one time step at a time, in float64. The tests check that the JAX engine changes
the weights of a 3x2 net exactly as this does; the command line trains nets with it, so that whether
the paper's Exp 1 rows reproduce does not rest on the engine alone (results/NOTES.md).

The net is the paper's Exp 1 net: ``C`` blocks of ``S`` cells, 7 inputs, 7 logistic output units fed by
the cells only, no biases but the gates' (264 weights for 4x1, 276 for 3x2), every weight uniform in
``[-0.2, 0.2]``, output-gate biases ``-1, -2, -3 (, -4)``. Training draws strings uniformly from the
fixed training set, the target at each step is the next symbol, and the check every ``check_every``
sequences asks that every string of the training and test sets be predicted (the legal next symbols'
outputs the most active), as :mod:`experiments.tasks.reber` does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

import numpy as np


class Net(NamedTuple):
  """The Exp 1 net's weights (changed in place by :func:`run_sequence`)."""

  W: np.ndarray  # (I + U + 1, U): rows = sources [x(t), y(t-1), 1], columns = units [cells, in gates, out gates]
  W_out: np.ndarray  # (C*S, K): cells -> output units (no output bias)
  blocks: int  # C
  block_size: int  # S


def init_net(
  rng: np.random.Generator,
  blocks: int,
  block_size: int,
  *,
  inputs: int = 7,
  outputs: int = 7,
  init_scale: float = 0.2,
  output_gate_bias: list[float] | None = None,
  input_gate_bias: list[float] | None = None,
) -> Net:
  """The paper's Exp 1 net: uniform weights, gate biases only, output-gate biases -1, -2, ... by default."""
  C, CS = blocks, blocks * block_size
  U = CS + 2 * C
  W = rng.uniform(-init_scale, init_scale, (inputs + U + 1, U))
  W[-1, :CS] = 0.0  # cells have no bias
  W[-1, CS + C :] = [-(j + 1.0) for j in range(C)] if output_gate_bias is None else output_gate_bias
  if input_gate_bias is not None:
    W[-1, CS : CS + C] = input_gate_bias
  W_out = rng.uniform(-init_scale, init_scale, (CS, outputs))
  return Net(W, W_out, blocks, block_size)


def _sigmoid(z: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-z))


def run_sequence(
  net: Net,
  xs: np.ndarray,
  targets: np.ndarray | None = None,
  lr: float = 0.0,
  update_every: str = "step",
) -> tuple[np.ndarray, np.ndarray]:
  """Runs one sequence from zero activations; with ``lr > 0`` trains on it by truncated RTRL.

  Per step ``t``, with ``src = [x(t), y(t-1), 1]`` (the truncation treats ``src`` as constant):
  ``s_v += y_in g(net_c)``, ``y_c = y_out h(s)``, ``o = sigmoid(y_c W_out)``;
  ``ds_v/dw_(c_v) += y_in g'(net_c) src`` and ``ds_v/dw_(in_j) += g(net_c) y_in (1 - y_in) src``;
  with ``delta_k = (o_k - d_k) o_k (1 - o_k)`` (``E = 1/2 sum (o - d)^2``) and ``e_v = sum_k w_kv
  delta_k``: ``dE/dw_(c_v) = e_v y_out h'(s_v) ds_v/dw_(c_v)``, ``dE/dw_(in_j) = sum_(v in j) e_v
  y_out h'(s_v) ds_v/dw_(in_j)``, ``dE/dw_(out_j) = sum_(v in j) e_v h(s_v) y_out (1 - y_out) src``,
  ``dE/dW_out = y_c delta``.

  Args:
    net: the weights, changed in place when ``lr > 0``.
    xs: ``(T, I)`` inputs.
    targets: ``(T, K)`` targets, every step scored; needed when ``lr > 0``.
    lr: learning rate of plain gradient descent.
    update_every: ``"step"`` (change the weights after every step, the sensitivities carried across the
      changes: online RTRL) or ``"sequence"`` (once, by the gradient summed over the sequence).

  Returns:
    ``(T, K)`` outputs and ``(T, C*S)`` cell states.
  """
  if lr and targets is None:
    raise ValueError("run_sequence: training (lr > 0) needs targets")
  if update_every not in ("step", "sequence"):
    raise ValueError(f"run_sequence: update_every must be 'step' or 'sequence', got {update_every!r}")
  W, W_out, C, S = net.W, net.W_out, net.blocks, net.block_size
  CS = C * S
  block = np.repeat(np.arange(C), S)  # the block of each cell
  y_prev = np.zeros(W.shape[1])
  s = np.zeros(CS)
  ds_cell = np.zeros((CS, W.shape[0]))  # ds_v / dW[:, v]
  ds_in = np.zeros((CS, W.shape[0]))  # ds_v / dW[:, CS + block(v)]
  grad_W, grad_out = np.zeros_like(W), np.zeros_like(W_out)
  outputs, states = [], []
  for t in range(xs.shape[0]):
    src = np.concatenate([xs[t], y_prev, [1.0]])
    net_in = src @ W
    sig_c = _sigmoid(net_in[:CS])
    g, g_prime = 4.0 * sig_c - 2.0, 4.0 * sig_c * (1.0 - sig_c)
    y_in, y_out = _sigmoid(net_in[CS : CS + C]), _sigmoid(net_in[CS + C :])
    s = s + y_in[block] * g
    sig_s = _sigmoid(s)
    h, h_prime = 2.0 * sig_s - 1.0, 2.0 * sig_s * (1.0 - sig_s)
    y_c = y_out[block] * h
    ds_cell += (y_in[block] * g_prime)[:, None] * src
    ds_in += (g * (y_in * (1.0 - y_in))[block])[:, None] * src
    out = _sigmoid(y_c @ W_out)
    outputs.append(out)
    states.append(s)
    if lr and targets is not None:
      delta = (out - targets[t]) * out * (1.0 - out)
      e = W_out @ delta  # dE/dy_c
      e_s = e * y_out[block] * h_prime  # dE/ds through y_c = y_out h(s)
      g_W = np.zeros_like(W)
      g_W[:, :CS] = (e_s[:, None] * ds_cell).T
      for j in range(C):
        in_j = block == j
        g_W[:, CS + j] = np.sum(e_s[in_j, None] * ds_in[in_j], axis=0)
        g_W[:, CS + C + j] = np.sum(e[in_j] * h[in_j]) * y_out[j] * (1.0 - y_out[j]) * src
      g_W[-1, :CS] = 0.0  # the cells have no bias to change
      grad_W += g_W
      grad_out += np.outer(y_c, delta)
      if update_every == "step":
        W -= lr * grad_W
        W_out -= lr * grad_out
        grad_W[:], grad_out[:] = 0.0, 0.0
    y_prev = np.concatenate([y_c, y_in, y_out])
  if lr and update_every == "sequence":
    W -= lr * grad_W
    W_out -= lr * grad_out
  return np.asarray(outputs), np.asarray(states)


def _strings(data: object) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """A task set (batched Example) as per-string ``(xs, targets, legal)`` cut to their lengths."""
  xs, targets, legal, length = (np.asarray(getattr(data, k)) for k in ("xs", "targets", "legal", "length"))
  return [(xs[i, :n].astype(np.float64), targets[i, :n].astype(np.float64), legal[i, :n]) for i, n in enumerate(length)]


def correct(outputs: np.ndarray, legal: np.ndarray) -> bool:
  """Every step's legal next symbols have the most active outputs."""
  low_legal = np.where(legal, outputs, np.inf).min(axis=-1)
  high_illegal = np.where(legal, -np.inf, outputs).max(axis=-1)
  return bool(np.all(low_legal > high_illegal))


class TrialResult(NamedTuple):
  seed: int
  solved_at: int | None  # training sequences until every training and test string was right
  wrong: int  # strings of the 512 wrong at the last check
  max_abs_state: float  # largest |s| while reading the first training string, at the last check


def train_trial(
  seed: int,
  *,
  blocks: int,
  block_size: int,
  lr: float,
  max_sequences: int,
  check_every: int = 1000,
  input_gate_bias: float | None = None,
  update_every: str = "step",
  data_seed: int = 0,
  distinct: int = 0,
) -> TrialResult:
  """One trial of Exp 1 (its own initial weights and draws from ``seed``) on the task's fixed sets."""
  from experiments.tasks import make_task  # the fixed string sets; imported here to keep workers light

  task = make_task("reber", data_seed=data_seed, distinct=distinct)
  train_set, test_set = _strings(task.train_set), _strings(task.test_set)
  rng = np.random.default_rng(seed)
  bias = None if input_gate_bias is None else [input_gate_bias] * blocks
  net = init_net(rng, blocks, block_size, input_gate_bias=bias)
  wrong, max_s = len(train_set) + len(test_set), 0.0
  for n in range(1, max_sequences + 1):
    xs, targets, _ = train_set[rng.integers(len(train_set))]
    run_sequence(net, xs, targets, lr, update_every)
    if n % check_every == 0:
      wrong = 0
      for i, (xs, _, legal) in enumerate(train_set + test_set):
        outputs, states = run_sequence(net, xs)
        wrong += not correct(outputs, legal)
        if i == 0:  # a drifting cell shows in the first training string's states
          max_s = float(np.max(np.abs(states)))
      if wrong == 0:
        return TrialResult(seed, n, 0, max_s)
  return TrialResult(seed, None, wrong, max_s)


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m experiments.numpy_reference", description=__doc__.split("\n")[0])
  p.add_argument("--blocks", type=int, default=3)
  p.add_argument("--block-size", type=int, default=2)
  p.add_argument("--lr", type=float, default=0.5)
  p.add_argument("--trials", type=int, default=10)
  p.add_argument("--seed", type=int, default=0, help="trial i uses seed + i")
  p.add_argument("--max-sequences", type=int, default=30000)
  p.add_argument("--check-every", type=int, default=1000)
  p.add_argument(
    "--input-gate-bias", default="random", help="'random' (the paper: uniform like every weight) or a number"
  )
  p.add_argument("--update-every", choices=("step", "sequence"), default="step")
  p.add_argument(
    "--distinct", type=int, choices=(0, 1), default=0, help="the task's string sets: 0 the paper's, 1 no repeats"
  )
  p.add_argument("--workers", type=int, default=2, help="processes running trials side by side")
  args = p.parse_args(argv)
  for name in ("blocks", "block_size", "trials", "max_sequences", "check_every", "workers"):
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
  try:
    bias = None if args.input_gate_bias == "random" else float(args.input_gate_bias)
  except ValueError:
    p.error(f"--input-gate-bias must be 'random' or a number, got {args.input_gate_bias!r}")
  kwargs = dict(
    blocks=args.blocks,
    block_size=args.block_size,
    lr=args.lr,
    max_sequences=args.max_sequences,
    check_every=args.check_every,
    input_gate_bias=bias,
    update_every=args.update_every,
    distinct=args.distinct,
  )
  start = time.time()
  seeds = [args.seed + i for i in range(args.trials)]
  results = []

  def report(r: TrialResult) -> None:
    results.append(r)
    at = f"solved after {r.solved_at:,} sequences" if r.solved_at else f"unsolved, {r.wrong} of 512 strings wrong"
    print(f"trial seed {r.seed}: {at}; largest |s| {r.max_abs_state:.1f}", flush=True)

  if args.workers == 1:
    for seed in seeds:
      report(train_trial(seed, **kwargs))
  else:
    # spawn, not fork: JAX (imported for the task's string sets) runs threads that a fork would copy mid-flight
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
      for future in [pool.submit(train_trial, seed, **kwargs) for seed in seeds]:
        report(future.result())
  solved = [r.solved_at for r in results if r.solved_at]
  mean = f", mean {np.mean(solved):,.0f} sequences" if solved else ""
  print(
    f"{args.blocks}x{args.block_size} lr {args.lr} input-gate bias {args.input_gate_bias} update every "
    f"{args.update_every}: {len(solved)} of {args.trials} solved within {args.max_sequences:,}{mean} "
    f"({time.time() - start:.0f} s)"
  )


if __name__ == "__main__":
  main()
