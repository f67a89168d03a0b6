"""Parity with equinox: `jaxrnn.interop.from_equinox` cells compute equinox's cells' outputs, carries and gradients.

The reference is the loop equinox's documentation gives: ``lax.scan`` over the
equinox cell's unbatched step, ``vmap``-ed over the batch, with the same
weights. Every comparison is float32 at atol = rtol = 1e-5. The gradients are
taken with ``eqx.filter_grad`` of the same module both ways: through that
scan, and through ``jaxrnn.unroll`` of ``from_equinox(module)``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity_helpers import assert_refuses_lstm_options, close, random_like, tree_close, tree_equal

import jaxrnn
from jaxrnn import interop

T, B, I, H = 5, 3, 4, 6

CELLS = {
  "gru": lambda: eqx.nn.GRUCell(I, H, key=jax.random.key(0)),
  "gru_no_bias": lambda: eqx.nn.GRUCell(I, H, use_bias=False, key=jax.random.key(0)),
  "lstm": lambda: eqx.nn.LSTMCell(I, H, key=jax.random.key(0)),
  "lstm_no_bias": lambda: eqx.nn.LSTMCell(I, H, use_bias=False, key=jax.random.key(0)),
}


def _data(name: str, seed: int = 0):
  module = CELLS[name]()
  module = eqx.combine(random_like(seed, eqx.filter(module, eqx.is_array)), module)
  h0 = jnp.zeros((B, H))
  carry0 = random_like(seed + 1, (h0, h0) if name.startswith("lstm") else h0)  # equinox's LSTM state: (h, c)
  rng = np.random.default_rng(seed + 2)
  xs, r_out, r_h, r_c = (
    jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in [(T, B, I), (T, B, H), (B, H), (B, H)]
  )
  return module, carry0, xs, (r_out, r_h, r_c)


def _loss(carry, ys, r):
  """A scalar that depends on every output and every carry leaf ((h, c) or h)."""
  r_out, r_h, r_c = r
  total = jnp.sum(ys * r_out)
  if isinstance(carry, tuple):
    return total + jnp.sum(carry[0] * r_h) + jnp.sum(carry[1] * r_c)
  return total + jnp.sum(carry * r_h)


@eqx.filter_jit
def _equinox_loss_and_grads(module, xs, carry0, r):
  def loss(module, xs, carry0):
    def step(state, x):
      state = module(x, state)
      return state, state[0] if isinstance(state, tuple) else state

    def one(xs, carry0):  # one sequence, unbatched, as equinox's cells take it
      return jax.lax.scan(step, carry0, xs)

    carry, ys = jax.vmap(one, in_axes=(1, 0), out_axes=(0, 1))(xs, carry0)
    return _loss(carry, ys, r), (carry, ys)

  return eqx.filter_value_and_grad(loss, has_aux=True)(module, xs, carry0), jax.grad(
    lambda xs, c: loss(module, xs, c)[0], argnums=(0, 1)
  )(xs, carry0)


@eqx.filter_jit
def _jaxrnn_loss_and_grads(module, xs, carry0, r):
  def loss(module, xs, carry0):
    cell, params = interop.from_equinox(module)  # inside the differentiated function: gradients reach the module
    carry0 = jaxrnn.LSTMCarry(*carry0) if isinstance(carry0, tuple) else carry0
    carry, ys = jaxrnn.unroll(cell, params, xs, carry0)
    carry = tuple(carry) if isinstance(carry, jaxrnn.LSTMCarry) else carry
    return _loss(carry, ys, r), (carry, ys)

  return eqx.filter_value_and_grad(loss, has_aux=True)(module, xs, carry0), jax.grad(
    lambda xs, c: loss(module, xs, c)[0], argnums=(0, 1)
  )(xs, carry0)


@pytest.mark.parametrize("name", CELLS)
def test_outputs_carries_and_gradients_equal_equinox(name):
  module, carry0, xs, r = _data(name)
  ((loss_e, (carry_e, ys_e)), g_mod_e), (g_xs_e, g_carry_e) = _equinox_loss_and_grads(module, xs, carry0, r)
  ((loss_j, (carry_j, ys_j)), g_mod_j), (g_xs_j, g_carry_j) = _jaxrnn_loss_and_grads(module, xs, carry0, r)
  close(ys_j, ys_e, "outputs")
  tree_close(carry_j, carry_e, "final carry")
  close(loss_j, loss_e, "loss")
  close(g_xs_j, g_xs_e, "grad wrt the input")
  tree_close(g_carry_j, g_carry_e, "grad wrt the initial carry")
  g_e, g_j = eqx.filter(g_mod_e, eqx.is_array), eqx.filter(g_mod_j, eqx.is_array)
  tree_close(g_j, g_e, "grad wrt the equinox params")
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g_e)), "every parameter must get a gradient"


@pytest.mark.parametrize("name", CELLS)
def test_equinox_round_trip(name):
  module, *_ = _data(name, seed=3)
  cell, params = interop.from_equinox(module)
  assert (params.b is None) == name.endswith("no_bias")
  module2 = interop.to_equinox(params)
  assert type(module2) is type(module)
  assert (module2.input_size, module2.hidden_size, module2.use_bias) == (I, H, module.use_bias)
  expected, actual = eqx.filter(module, eqx.is_array), eqx.filter(module2, eqx.is_array)
  tree_equal(actual, expected)
  # jaxrnn's cell takes equinox's unbatched step too.
  x, carry0 = random_like(4, jnp.zeros(I)), random_like(5, jnp.zeros(H))
  state0 = (carry0, -carry0) if name.startswith("lstm") else carry0
  carry, _ = cell.apply(params, jaxrnn.LSTMCarry(*state0) if name.startswith("lstm") else state0, x)
  tree_close(tuple(carry) if name.startswith("lstm") else carry, module(x, state0), "one unbatched step")


@pytest.mark.parametrize(
  "cell",
  [jaxrnn.gru(H), jaxrnn.gru(H, bias=False), jaxrnn.lstm(H), jaxrnn.lstm(H, bias=False)],
  ids=["gru", "gru_no_bias", "lstm", "lstm_no_bias"],
)
def test_jaxrnn_params_to_equinox_compute_the_same(cell):
  params = random_like(0, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))
  module = interop.to_equinox(params)
  x = random_like(5, jnp.zeros((B, I)))
  carry0 = random_like(6, cell.initial_carry((B,)))
  state0 = tuple(carry0) if isinstance(carry0, jaxrnn.LSTMCarry) else carry0
  state = jax.vmap(module)(x, state0)
  carry, _ = cell.apply(params, carry0, x)
  tree_close(tuple(carry) if isinstance(carry, jaxrnn.LSTMCarry) else carry, state, "carry")
  # to_equinox only transposes: it traces, and from_equinox inverts it exactly.
  _, back = interop.from_equinox(jax.jit(interop.to_equinox)(params))
  tree_close(back, params, "from_equinox(to_equinox(params))")


def test_errors_name_what_was_received():
  def params_of(cell):
    return random_like(0, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))

  with pytest.raises(TypeError, match=r"equinox\.nn\.GRUCell or equinox\.nn\.LSTMCell, got equinox\.nn.*Linear"):
    interop.from_equinox(eqx.nn.Linear(2, 3, key=jax.random.key(0)))
  module = eqx.tree_at(lambda m: m.weight_hh, CELLS["lstm"](), jnp.zeros((3 * H, H)))
  with pytest.raises(ValueError, match=r"LSTMCell\.weight_hh has shape \(18, 6\), expected \(24, 6\)"):
    interop.from_equinox(module)
  module = eqx.tree_at(lambda m: m.bias_n, CELLS["gru"](), jnp.zeros((H,), jnp.float16))
  with pytest.raises(TypeError, match=r"GRUCell\.bias_n has dtype float16, expected float32 like weight_ih"):
    interop.from_equinox(module)
  with pytest.raises(TypeError, match=r"equinox has no Elman or MGU cell\), got ElmanParams"):
    interop.to_equinox(params_of(jaxrnn.elman(H)))
  with pytest.raises(TypeError, match="got DenseParams"):
    interop.to_equinox(params_of(jaxrnn.dense(3)))
  with pytest.raises(ValueError, match=r"reset_after=False\), which equinox's GRUCell cannot express"):
    interop.to_equinox(params_of(jaxrnn.gru(H, reset_after=False)))
  gru_params = params_of(jaxrnn.gru(H))
  with pytest.raises(ValueError, match="b_hn but no b"):
    interop.to_equinox(gru_params._replace(b=None))
  assert_refuses_lstm_options(interop.to_equinox, params_of, H)
