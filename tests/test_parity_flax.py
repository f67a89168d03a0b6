"""Parity with flax.linen: `jaxrnn.interop.from_flax` cells compute the flax cells' outputs, carries and gradients.

The reference is ``flax.linen.RNN(cell)`` (a ``lax.scan`` over the flax cell)
with the same weights. Every comparison is float32 at atol = rtol = 1e-5.
``from_flax`` only concatenates kernels, so applied to flax's parameter
gradients it gives the gradients in jaxrnn's layout.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity_helpers import assert_refuses_lstm_options, close, loss_from_outputs, random_like, tree_close, tree_equal

import jaxrnn
from jaxrnn import interop

T, B, I, H = 5, 3, 4, 6
LENGTHS = jnp.array([5, 2, 3])
# LLVM's optimisation level changes how fast the compiled code runs, not what it computes; level 0 halves the
# compile time of these small functions, which dominates this file's run time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

CELLS = {
  "simple_tanh": lambda: nn.SimpleCell(H),
  "simple_relu": lambda: nn.SimpleCell(H, activation_fn=nn.relu),
  "gru": lambda: nn.GRUCell(H),
  "mgu": lambda: nn.MGUCell(H),
  "mgu_no_reset_gate": lambda: nn.MGUCell(H, reset_gate=False),
  "lstm": lambda: nn.LSTMCell(H),
  "optimized_lstm": lambda: nn.OptimizedLSTMCell(H),
}
# What to_flax needs to rebuild each cell from jaxrnn params alone.
TO_FLAX_OPTIONS = {"simple_relu": dict(nonlinearity="relu"), "optimized_lstm": dict(optimized=True)}


def _params_of(cell):
  """Random params of a jaxrnn cell (or dense layer) with input size ``I``."""
  return random_like(0, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))


def _setup(name: str, seed: int = 0):
  module = CELLS[name]()
  x0 = jax.ShapeDtypeStruct((B, I), jnp.float32)
  carry_shape = jax.eval_shape(lambda: module.initialize_carry(jax.random.key(0), x0.shape))
  var_shapes = jax.eval_shape(lambda c, x: module.init(jax.random.key(0), c, x), carry_shape, x0)
  variables = random_like(seed, var_shapes)
  flax_carry0 = random_like(seed + 1, carry_shape)
  rng = np.random.default_rng(seed + 2)
  xs, r_out, r_h, r_c = (
    jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in [(T, B, I), (T, B, H), (B, H), (B, H)]
  )
  return module, variables, flax_carry0, xs, (r_out, r_h, r_c)


def _flax_fn(module, lengths):
  rnn = nn.RNN(module, time_major=True, return_carry=True)

  def loss(params, xs, carry, r):
    carry, ys = rnn.apply({"params": {"cell": params}}, xs, initial_carry=carry, seq_lengths=lengths)
    carry = interop.from_flax_carry(carry)
    if lengths is not None:  # flax leaves the outputs at padded steps as they come; jaxrnn zeroes them
      valid = jnp.arange(T)[:, None] < lengths[None, :]
      ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return loss_from_outputs(carry, ys, r), (carry, ys)

  return _jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _jaxrnn_fn(cell, lengths):
  def loss(params, xs, carry, r):
    carry, ys = jaxrnn.unroll(cell, params, xs, carry, lengths=lengths)
    return loss_from_outputs(carry, ys, r), (carry, ys)

  return _jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("name", CELLS)
def test_outputs_carries_and_gradients_equal_flax(name, with_lengths):
  module, variables, flax_carry0, xs, r = _setup(name)
  lengths = LENGTHS if with_lengths else None
  cell, params = interop.from_flax(module, variables)
  carry0 = interop.from_flax_carry(flax_carry0)

  (loss_f, (carry_f, ys_f)), (g_vars_f, g_xs_f, g_carry_f) = _flax_fn(module, lengths)(
    variables["params"], xs, flax_carry0, r
  )
  (loss_j, (carry_j, ys_j)), (g_params_j, g_xs_j, g_carry_j) = _jaxrnn_fn(cell, lengths)(params, xs, carry0, r)

  close(ys_j, ys_f, "outputs")
  tree_close(carry_j, carry_f, "final carry")
  close(loss_j, loss_f, "loss")
  close(g_xs_j, g_xs_f, "grad wrt the input")
  tree_close(g_carry_j, interop.from_flax_carry(g_carry_f), "grad wrt the initial carry")
  _, g_params_f = interop.from_flax(module, {"params": g_vars_f})
  tree_close(g_params_j, g_params_f, "grad wrt params")


def test_step_equals_flax_cell_call():
  """One step through the cell's apply against the flax module's own __call__ (no nn.RNN in between)."""
  for name in CELLS:
    module, variables, flax_carry0, xs, _ = _setup(name, seed=1)
    cell, params = interop.from_flax(module, variables)
    flax_carry, y_f = module.apply(variables, flax_carry0, xs[0])
    carry, y = cell.apply(params, interop.from_flax_carry(flax_carry0), xs[0])
    close(y, y_f, f"{name} output")
    tree_close(carry, interop.from_flax_carry(flax_carry), f"{name} carry")


def test_reverse_with_lengths_equals_flax():
  module, variables, flax_carry0, xs, _ = _setup("gru", seed=2)
  cell, params = interop.from_flax(module, variables)
  rnn = nn.RNN(module, time_major=True, return_carry=True, reverse=True, keep_order=True)

  @_jit
  def both(flax_params, params, xs, carry0):
    flax_out = rnn.apply({"params": {"cell": flax_params}}, xs, initial_carry=carry0, seq_lengths=LENGTHS)
    return flax_out, jaxrnn.unroll(cell, params, xs, carry0, lengths=LENGTHS, reverse=True)

  (carry_f, ys_f), (carry_j, ys_j) = both(variables["params"], params, xs, flax_carry0)
  valid = (jnp.arange(T)[:, None] < LENGTHS[None, :])[..., None]
  close(jnp.where(valid, ys_j, 0.0), jnp.where(valid, ys_f, 0.0), "outputs at valid steps")
  close(carry_j, carry_f, "final carry")


@pytest.mark.parametrize("name", CELLS)
def test_flax_round_trip(name):
  module, variables, *_ = _setup(name, seed=3)
  _, params = interop.from_flax(module, variables)
  module2, variables2 = interop.to_flax(params, **TO_FLAX_OPTIONS.get(name, {}))
  assert type(module2) is type(module)
  assert module2.features == H
  assert getattr(module2, "reset_gate", None) == getattr(module, "reset_gate", None)
  assert module2.activation_fn is module.activation_fn
  tree_equal(variables2, jax.tree.map(jnp.asarray, dict(variables)))
  # The params mapping alone (without the "params" collection) is accepted too.
  _, params_again = interop.from_flax(module2, variables2["params"])
  tree_close(params_again, params, "from_flax(to_flax(params))")


@pytest.mark.parametrize(
  "cell",
  [
    jaxrnn.elman(H),
    jaxrnn.gru(H),
    jaxrnn.mgu(H),
    jaxrnn.mgu(H, reset_gate=False),
    jaxrnn.lstm(H),
    jaxrnn.gru(H, bias=False),
    jaxrnn.lstm(H, bias=False),
  ],
  ids=["elman", "gru", "mgu", "mgu_no_reset_gate", "lstm", "gru_no_bias", "lstm_no_bias"],
)
def test_jaxrnn_params_to_flax_compute_the_same(cell):
  params = _params_of(cell)
  module, variables = interop.to_flax(params)
  x = random_like(5, jnp.zeros((B, I)))
  carry0 = random_like(6, cell.initial_carry((B,)))
  flax_carry, y_f = module.apply(variables, interop.to_flax_carry(carry0), x)
  carry, y = cell.apply(params, carry0, x)
  close(y, y_f, "output")
  tree_close(carry, interop.from_flax_carry(flax_carry), "carry")
  if params.b is not None:
    _, back = interop.from_flax(module, variables)
    tree_close(back, params, "from_flax(to_flax(params))")


def test_carry_helpers():
  c, h = jnp.zeros((B, H)), jnp.ones((B, H))
  carry = interop.from_flax_carry((c, h))
  assert isinstance(carry, jaxrnn.LSTMCarry) and carry.h is h and carry.c is c
  assert interop.to_flax_carry(carry) == (c, h)
  assert interop.from_flax_carry(h) is h and interop.to_flax_carry(h) is h


def test_errors_name_what_was_received():
  module, variables, *_ = _setup("lstm")
  with pytest.raises(TypeError, match=r"flax\.linen\.SimpleCell.*got flax\.linen\.linear\.Dense"):
    interop.from_flax(nn.Dense(3), variables)
  with pytest.raises(TypeError, match=r"pass module\.cell"):
    interop.from_flax(nn.RNN(nn.LSTMCell(H)), variables)
  with pytest.raises(ValueError, match="LSTMCell.gate_fn is 'relu'"):
    interop.from_flax(nn.LSTMCell(H, gate_fn=nn.relu), variables)
  with pytest.raises(ValueError, match="residual"):
    interop.from_flax(nn.SimpleCell(H, residual=True), variables)
  with pytest.raises(ValueError, match="dtype is bfloat16"):
    interop.from_flax(nn.LSTMCell(H, dtype=jnp.bfloat16), variables)
  with pytest.raises(ValueError, match=r"must hold params\['ir'\]\['kernel'\]; got params with keys \['hf'"):
    interop.from_flax(nn.GRUCell(H), variables)
  with pytest.raises(ValueError, match=r"params\['ii'\]\['kernel'\] has shape \(4, 6\), expected \(4, 5\)"):
    interop.from_flax(nn.LSTMCell(5), variables)
  with pytest.raises(TypeError, match="variables must be a mapping"):
    interop.from_flax(module, [1, 2])
  with pytest.raises(TypeError, match="got DenseParams"):
    interop.to_flax(_params_of(jaxrnn.dense(3)))
  assert_refuses_lstm_options(interop.to_flax, _params_of, H)
  with pytest.raises(ValueError, match="reset_after=False"):
    interop.to_flax(_params_of(jaxrnn.gru(H, reset_after=False)))
  with pytest.raises(ValueError, match="nonlinearity must be one of"):
    interop.to_flax(_params_of(jaxrnn.elman(H)), nonlinearity="sigmoid")
