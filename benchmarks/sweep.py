"""Sweep throughput: online training of the 1997 paper's 93-weight adding-problem net, many trials at once.

The net is ``jaxrnn.lstm1997(2, 2, truncated_gradient=True)`` (2 memory blocks
of 2 cells, 88 weights) with a 1-unit sigmoid output on the cells (5 weights)
and 2 inputs. Training is online: one sequence of ``T`` steps, one gradient
step on the squared error at its end. jaxrnn runs ``trials`` independent
training runs in one jitted program (``vmap`` over trials of a ``scan`` over
sequences); PyTorch trains the same net one sequence at a time in a Python
loop, as one would write it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

LEARNING_RATE = 0.5


def adding_data(rng: np.random.Generator, n: int, T: int) -> tuple[np.ndarray, np.ndarray]:
  """``n`` adding-problem sequences ``(n, T, 2)`` and targets ``(n, 1)`` (Hochreiter & Schmidhuber 1997, Exp 4).

  The first component is uniform in [-1, 1]; the second marks two positions
  with 1 (one among the first 10 steps, one among the first T/2 - 1) and the
  first and last steps with -1 otherwise. The target is ``0.5 + (X1 + X2) / 4``.
  """
  values = rng.uniform(-1.0, 1.0, (n, T)).astype(np.float32)
  marks = np.zeros((n, T), np.float32)
  marks[:, 0] = -1.0
  marks[:, -1] = -1.0
  rows = np.arange(n)
  first = rng.integers(0, 10, n)
  second = rng.integers(0, T // 2 - 1, n)
  second = np.where(second == first, (second + 1) % (T // 2 - 1), second)
  marks[rows, first] = 1.0
  marks[rows, second] = 1.0
  targets = 0.5 + (values[rows, first] + values[rows, second]) / 4.0
  return np.stack([values, marks], axis=-1), targets[:, None].astype(np.float32)


def _net() -> tuple[jaxrnn.Cell, jaxrnn.Dense]:
  return jaxrnn.lstm1997(2, 2, truncated_gradient=True), jaxrnn.dense(1, activation=jax.nn.sigmoid)


def jaxrnn_program(trials: int, sequences: int, T: int, *, impl: str | None = None) -> Callable[[], Any]:
  """A blocking call that trains ``trials`` nets on ``sequences`` sequences each."""
  program, args = jaxrnn_parts(trials, sequences, T, impl=impl)
  return lambda: jax.block_until_ready(program(*args))


def jaxrnn_parts(trials: int, sequences: int, T: int, *, impl: str | None = None) -> tuple[Any, tuple[Any, ...]]:
  """The jitted training program and its arguments (initial params, sequences, targets)."""
  cell, out = _net()
  kwargs = {} if impl is None else {"impl": impl}

  def init(key):
    kc, ko = jax.random.split(key)
    return cell.init(kc, 2), out.init(ko, 4)

  def loss(params, xs, target):
    _, ys = jaxrnn.unroll(cell, params[0], xs, **kwargs)
    pred = out.apply(params[1], ys[-1])
    return 0.5 * jnp.sum((pred - target) ** 2)

  def train(params, xs, targets):
    def step(params, example):
      grads = jax.grad(loss)(params, *example)
      return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads), None

    return jax.lax.scan(step, params, (xs, targets))[0]

  params = jax.vmap(init)(jax.random.split(jax.random.key(0), trials))
  xs_np, targets_np = adding_data(np.random.default_rng(0), trials * sequences, T)
  xs = jnp.asarray(xs_np.reshape(trials, sequences, T, 2))
  targets = jnp.asarray(targets_np.reshape(trials, sequences, 1))
  return jax.jit(jax.vmap(train)), (params, xs, targets)


def torch_loop(sequences: int, T: int) -> Callable[[], None]:
  """A call that trains one PyTorch copy of the net on ``sequences`` sequences, one at a time."""
  import torch

  cell, out = _net()
  kc, ko = jax.random.split(jax.random.key(0))
  p = jax.tree.map(lambda a: torch.tensor(np.asarray(a), requires_grad=True), (cell.init(kc, 2), out.init(ko, 4)))
  (w_x, w_h, b_cell, b_in, b_out), (w_o, b_o) = p
  weights = [w_x, w_h, b_cell, b_in, b_out, w_o, b_o]
  C, S = 2, 2
  xs_np, targets_np = adding_data(np.random.default_rng(0), sequences, T)
  xs, targets = torch.from_numpy(xs_np), torch.from_numpy(targets_np)

  def run() -> None:
    for n in range(sequences):
      s = torch.zeros(C * S)
      y = torch.zeros(w_h.shape[0])
      b = torch.cat([b_cell, b_in, b_out])
      for t in range(T):
        net = xs[n, t] @ w_x + y.detach() @ w_h + b  # truncated gradient: no flow through y(t-1)
        y_in = torch.sigmoid(net[C * S : C * S + C])
        y_out = torch.sigmoid(net[C * S + C :])
        s = s + y_in.repeat_interleave(S) * (4.0 * torch.sigmoid(net[: C * S]) - 2.0)
        y_c = y_out.repeat_interleave(S) * (2.0 * torch.sigmoid(s) - 1.0)
        y = torch.cat([y_c, y_in, y_out])
      pred = torch.sigmoid(y_c @ w_o + b_o)
      loss = 0.5 * ((pred - targets[n]) ** 2).sum()
      for w in weights:
        w.grad = None
      loss.backward()
      with torch.no_grad():
        for w in weights:
          w -= LEARNING_RATE * w.grad

  return run


def rate(call: Callable[[], Any], count: int, *, repeats: int = 3) -> float:
  """Median of ``count / seconds`` over ``repeats`` calls after a warm-up call."""
  call()
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    call()
    rates.append(count / (time.perf_counter() - t0))
  return float(np.median(rates))
