"""Parity with Haiku: `jaxrnn.interop.from_haiku` cells compute Haiku's cores' outputs, states and gradients.

The reference is ``hk.dynamic_unroll`` of the Haiku core (``VanillaRNN``,
``GRU``, ``LSTM``) with the same weights. Every comparison is float32 at
atol = rtol = 1e-5. The gradients are taken with respect to the Haiku params
both ways: through Haiku's unroll, and through ``jaxrnn.unroll`` of
``from_haiku(params, name)``.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import pytest
from parity_helpers import assert_refuses_lstm_options, close, random_like, tree_close, tree_equal

import jaxrnn
from jaxrnn import interop

T, B, I, H = 5, 3, 4, 6

# name -> (the core's constructor, its module path in the params, whether its state is an LSTMState)
CORES = {
  "vanilla_rnn": (lambda: hk.VanillaRNN(H), "vanilla_rnn"),
  "vanilla_rnn_single_bias": (lambda: hk.VanillaRNN(H, double_bias=False), "vanilla_rnn"),
  "gru": (lambda: hk.GRU(H), "gru"),
  "lstm": (lambda: hk.LSTM(H), "lstm"),
  "lstm_in_module": (lambda: hk.LSTM(H, name="encoder_lstm"), "encoder_lstm"),
}


def _is_lstm(name: str) -> bool:
  return name.startswith("lstm")


def _model(name: str):
  def forward(xs, state):
    core = CORES[name][0]()
    ys, final = hk.dynamic_unroll(core, xs, state)  # time-major
    return ys, final

  return hk.without_apply_rng(hk.transform(forward))


def _data(name: str, seed: int = 0):
  model = _model(name)
  xs = random_like(seed + 1, jnp.zeros((T, B, I)))
  h0, c0 = random_like(seed + 2, (jnp.zeros((B, H)), jnp.zeros((B, H))))
  state = hk.LSTMState(hidden=h0, cell=c0) if _is_lstm(name) else h0
  params = random_like(seed, jax.eval_shape(model.init, jax.random.key(0), xs, state))
  r = random_like(seed + 3, (jnp.zeros((T, B, H)), jnp.zeros((B, H)), jnp.zeros((B, H))))
  return model, params, xs, state, r


def _loss(ys, final, r):
  r_out, r_h, r_c = r
  if isinstance(final, (hk.LSTMState, jaxrnn.LSTMCarry)):
    h, c = final
    return jnp.sum(ys * r_out) + jnp.sum(h * r_h) + jnp.sum(c * r_c)
  return jnp.sum(ys * r_out) + jnp.sum(final * r_h)


@pytest.mark.parametrize("name", CORES)
def test_outputs_states_and_gradients_equal_haiku(name):
  model, params, xs, state, r = _data(name)
  path = CORES[name][1]

  def haiku_loss(params, xs, state):
    ys, final = model.apply(params, xs, state)
    return _loss(ys, final, r), (ys, final)

  def jaxrnn_loss(params, xs, state):
    cell, p = interop.from_haiku(params, path)  # inside the differentiated function: gradients in Haiku's layout
    carry0 = jaxrnn.LSTMCarry(h=state.hidden, c=state.cell) if _is_lstm(name) else state
    final, ys = jaxrnn.unroll(cell, p, xs, carry0)
    return _loss(ys, final, r), (ys, final)

  grad = jax.value_and_grad
  (loss_h, (ys_h, final_h)), g_h = jax.jit(grad(haiku_loss, argnums=(0, 1, 2), has_aux=True))(params, xs, state)
  (loss_j, (ys_j, final_j)), g_j = jax.jit(grad(jaxrnn_loss, argnums=(0, 1, 2), has_aux=True))(params, xs, state)
  close(ys_j, ys_h, "outputs")
  tree_close(tuple(final_j) if _is_lstm(name) else final_j, tuple(final_h) if _is_lstm(name) else final_h, "state")
  close(loss_j, loss_h, "loss")
  tree_close(g_j, g_h, "grads wrt the Haiku params, the input and the initial state")
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g_h[0])), "every parameter must get a gradient"


@pytest.mark.parametrize("name", ["vanilla_rnn_single_bias", "gru", "lstm", "lstm_in_module"])
def test_haiku_round_trip(name):
  _, params, *_ = _data(name, seed=4)
  path = CORES[name][1]
  _, p = interop.from_haiku(params, path)
  options = dict(nonlinearity="relu") if name.startswith("vanilla") else {}
  back, expected = interop.to_haiku(p, path, **options), jax.tree.map(jnp.asarray, dict(params))
  if _is_lstm(name):  # the forget-gate bias goes through + 1 - 1 (Haiku's 1 inside its step): close, not equal
    tree_close(back, expected, "round trip")
  else:
    tree_equal(back, expected)


@pytest.mark.parametrize(
  "cell, options",
  [
    (jaxrnn.elman(H, nonlinearity="relu"), dict(nonlinearity="relu")),
    (jaxrnn.elman(H, nonlinearity="relu", bias=False), dict(nonlinearity="relu")),
    (jaxrnn.gru(H, reset_after=False), {}),
    (jaxrnn.lstm(H), {}),
    (jaxrnn.lstm(H, bias=False), {}),
  ],
  ids=["elman_relu", "elman_relu_no_bias", "gru_reset_before", "lstm", "lstm_no_bias"],
)
def test_jaxrnn_params_to_haiku_compute_the_same(cell, options):
  params = random_like(0, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))
  name = {jaxrnn.ElmanParams: "vanilla_rnn_single_bias", jaxrnn.GRUParams: "gru", jaxrnn.LSTMParams: "lstm"}[
    type(params)
  ]
  model = _model(name)
  xs = random_like(5, jnp.zeros((T, B, I)))
  carry0 = random_like(6, cell.initial_carry((B,)))
  state = hk.LSTMState(hidden=carry0.h, cell=carry0.c) if _is_lstm(name) else carry0
  ys_h, final_h = model.apply(interop.to_haiku(params, **options), xs, state)
  final_j, ys_j = jaxrnn.unroll(cell, params, xs, carry0)
  close(ys_j, ys_h, "outputs")
  tree_close(tuple(final_j) if _is_lstm(name) else final_j, tuple(final_h) if _is_lstm(name) else final_h, "state")


def test_errors_name_what_was_received():
  _, params, *_ = _data("gru")
  with pytest.raises(TypeError, match="params must be Haiku's params mapping, got list"):
    interop.from_haiku([1], "gru")
  with pytest.raises(
    ValueError, match=r"no haiku\.VanillaRNN, haiku\.GRU or haiku\.LSTM under 'lstm'.*all keys: \['gru'\]"
  ):
    interop.from_haiku(params, "lstm")
  with pytest.raises(ValueError, match=r"haiku params\['gru'\] has no \['w_h'\]; it holds \['b', 'w_i'\]"):
    interop.from_haiku({"gru": {"w_i": params["gru"]["w_i"], "b": params["gru"]["b"]}}, "gru")
  _, lstm_params, *_ = _data("lstm")
  bad = {"lstm/linear": {"w": lstm_params["lstm/linear"]["w"][:, :-1], "b": lstm_params["lstm/linear"]["b"]}}
  with pytest.raises(ValueError, match=r"has w \(10, 23\) and b \(24,\); an LSTM's are \(in \+ H, 4H\)"):
    interop.from_haiku(bad, "lstm")

  def params_of(cell):
    return random_like(0, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))

  with pytest.raises(ValueError, match="haiku's VanillaRNN computes relu"):
    interop.to_haiku(params_of(jaxrnn.elman(H)))
  with pytest.raises(ValueError, match=r"b_hn: a gru\(reset_after=True\)"):
    interop.to_haiku(params_of(jaxrnn.gru(H)))
  with pytest.raises(ValueError, match="GRU params without biases do not say"):
    interop.to_haiku(params_of(jaxrnn.gru(H, reset_after=False, bias=False)))
  with pytest.raises(TypeError, match="got MGUParams"):
    interop.to_haiku(params_of(jaxrnn.mgu(H)))
  assert_refuses_lstm_options(interop.to_haiku, params_of, H)
