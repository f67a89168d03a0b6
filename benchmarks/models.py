"""The contestants: one recurrent layer in jaxrnn, PyTorch and flax, as blocking train and inference calls.

Every contestant gets the same time-major float32 input ``(T, B, I)``. A
training step is a forward and a backward pass with the loss on all outputs,
``mean(ys ** 2)``, returning the parameter gradients; inference is the forward
pass alone (``torch.no_grad`` for PyTorch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

CELLS = ("lstm", "gru", "elman")
GATES = {"lstm": 4, "gru": 3, "elman": 1}

Call = Callable[[], Any]


def forward_flops(cell: str, B: int, T: int, I: int, H: int) -> float:
  """Matrix-product FLOPs of one forward pass: ``2 T B (I + H) G H`` with ``G`` gates."""
  return 2.0 * T * B * (I + H) * GATES[cell] * H


def make_inputs(B: int, T: int, I: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal((T, B, I), dtype=np.float32)


def jaxrnn_cell(cell: str, H: int) -> jaxrnn.Cell:
  """``jaxrnn.lstm``, ``gru``, ``mgu`` or ``elman`` with ``H`` hidden units, by name (``lstm_peepholes``: the LSTM
  with peepholes)."""
  factories: dict[str, Callable[[int], jaxrnn.Cell]] = {
    "lstm": jaxrnn.lstm,
    "lstm_peepholes": lambda h: jaxrnn.lstm(h, peepholes=True),
    "gru": jaxrnn.gru,
    "mgu": jaxrnn.mgu,
    "elman": jaxrnn.elman,
  }
  return factories[cell](H)


def step_and_forward(outputs: Callable[..., jax.Array], options: dict[str, Any] | None = None) -> tuple[Any, Any]:
  """The benchmarks' two jitted functions of ``outputs(params, xs)``: the training step (the gradient of
  ``mean(outputs ** 2)`` with respect to the params) and the forward pass; ``options`` go to ``jax.jit``."""
  grad = jax.jit(jax.grad(lambda p, xs: jnp.mean(outputs(p, xs) ** 2)), compiler_options=options)
  return grad, jax.jit(outputs, compiler_options=options)


def unroll_step_and_forward(cell: jaxrnn.Cell, **unroll_kwargs: Any) -> tuple[Any, Any]:
  """:func:`step_and_forward` of the outputs of ``jaxrnn.unroll(cell, params, xs, **unroll_kwargs)``."""
  return step_and_forward(lambda p, xs: jaxrnn.unroll(cell, p, xs, **unroll_kwargs)[1])


def blocking_calls(grad: Any, fwd: Any, params: Any, x: jax.Array) -> tuple[Call, Call]:
  """``(train, infer)`` calls of :func:`step_and_forward`'s functions that wait for their results."""
  return (lambda: jax.block_until_ready(grad(params, x))), (lambda: fwd(params, x).block_until_ready())


def time_unroll_variants(
  variants: dict[str, tuple[Any, ...]],
  params: Any,
  xs: jax.Array,
  *,
  agree: tuple[str, str] | Callable[[dict[str, tuple[Any, Any]]], None],
  rounds: int,
  extra_calls: dict[str, Call] | None = None,
) -> dict[str, float]:
  """Median seconds of ``train <name>`` and ``infer <name>`` of ``jaxrnn.unroll(cell, params, xs, **kwargs)`` for
  each ``name: (cell, kwargs)`` (or ``(cell, kwargs, params)`` for params of its own) and of ``extra_calls``,
  interleaved in one process, after checking that the two variants named in ``agree`` give the same outputs and
  gradients (or after ``agree(results)``, given each variant's ``(outputs, gradients)``)."""
  from benchmarks import timing

  calls, results = dict(extra_calls or {}), {}
  for name, (cell, kwargs, *own) in variants.items():
    p = own[0] if own else params
    grad, fwd = unroll_step_and_forward(cell, **kwargs)
    results[name] = (fwd(p, xs), grad(p, xs))
    calls[f"train {name}"], calls[f"infer {name}"] = blocking_calls(grad, fwd, p, xs)
  if callable(agree):
    agree(results)
  else:
    assert_agree(results[agree[0]], results[agree[1]])
  return timing.measure(calls, rounds=rounds, block_s=0.25)


def assert_agree(got: tuple[Any, Any], want: tuple[Any, Any]) -> None:
  """``(outputs, gradients)`` of two variants agree: outputs to 1e-5 and gradients to 1e-4, relative to the largest
  entry of each array (as ``tests/test_fused.py`` checks: a cell without a forget gate sums rounding errors into
  its state, so small entries can differ by more, relative to themselves)."""
  pairs = [(got[0], want[0], 1e-5)]
  pairs += [(a, b, 1e-4) for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True)]
  for a, b, tol in pairs:
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=0.0, atol=tol * max(float(np.max(np.abs(b))), 1e-30))


def jaxrnn_calls(
  cell: str, xs: np.ndarray, H: int, *, impl: str | None = None, options: dict[str, Any] | None = None
) -> tuple[Call, Call]:
  """jaxrnn's (train, infer); ``impl`` is passed to ``jaxrnn.unroll`` when given, ``options`` to ``jax.jit``."""
  c = jaxrnn_cell(cell, H)
  params = c.init(jax.random.key(0), xs.shape[-1])
  x = jnp.asarray(xs)
  kwargs: dict[str, Any] = {} if impl is None else {"impl": impl}
  grad, fwd = step_and_forward(lambda p, xs: jaxrnn.unroll(c, p, xs, **kwargs)[1], options)
  return blocking_calls(grad, fwd, params, x)


def flax_calls(cell: str, xs: np.ndarray, H: int, *, options: dict[str, Any] | None = None) -> tuple[Call, Call]:
  """flax ``nn.RNN`` with ``SimpleCell``, ``GRUCell`` or ``OptimizedLSTMCell``; ``options`` go to ``jax.jit``."""
  import flax.linen as nn

  module = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "elman": nn.SimpleCell}[cell](features=H)
  rnn = nn.RNN(module, time_major=True)
  x = jnp.asarray(xs)
  params = rnn.init(jax.random.key(0), x)["params"]

  def outputs(p, xs):
    return rnn.apply({"params": p}, xs)

  return blocking_calls(*step_and_forward(outputs, options), params, x)


def torch_calls(cell: str, xs: np.ndarray, H: int, *, device: str = "cpu") -> tuple[Call, Call]:
  """``torch.nn.LSTM``, ``GRU`` or ``RNN`` (tanh), time-major, on ``device`` (``"cuda"``: cuDNN's kernels).

  On ``"cuda"`` each call waits for the GPU (``torch.cuda.synchronize``), as the JAX calls block on their
  results.
  """
  import torch

  module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "elman": torch.nn.RNN}[cell](xs.shape[-1], H).to(device)
  x = torch.from_numpy(xs).to(device)
  parameters = list(module.parameters())
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def train() -> None:
    for p in parameters:
      p.grad = None
    ys, _ = module(x)
    (ys**2).mean().backward()
    sync()

  def infer() -> None:
    with torch.no_grad():
      module(x)
    sync()

  return train, infer


def scan_product_call(cell: str, B: int, T: int, H: int) -> Call:
  """A ``lax.scan`` of ``T`` steps doing only the recurrent product ``h W_h`` (``W_h: (H, G H)``).

  ``h_t = tanh((h_{t-1} W_h)[:, :H])``: the sequential matrix products that any scan-based forward pass
  must run one step at a time, with the least elementwise work that keeps each step dependent on the
  last. Its time is the floor of a forward pass built from XLA's per-step products on this machine.
  """
  w = jax.random.normal(jax.random.key(0), (H, GATES[cell] * H), jnp.float32) / np.sqrt(H)
  h0 = jax.random.normal(jax.random.key(1), (B, H), jnp.float32)

  @jax.jit
  def run(w, h0):
    def step(h, _):
      return jnp.tanh((h @ w)[:, :H]), None

    return jax.lax.scan(step, h0, None, length=T)[0]

  return lambda: run(w, h0).block_until_ready()
