"""Parity with Keras 3 (JAX backend): `jaxrnn.interop.from_keras` cells compute Keras's layers' outputs and gradients.

The reference is the Keras layer itself (``SimpleRNN``, ``GRU`` with either
reset convention, ``LSTM``) on the same weights, batch-major as Keras takes
its input. Every comparison is float32 at atol = rtol = 1e-5. The gradients
are taken with respect to the layer's trainable variables both ways: through
``layer.stateless_call``, and through ``jaxrnn.unroll`` of
``from_keras(layer, weights=...)``. conftest.py runs these tests under JAX's
default promotion rules, which Keras's own code is written for.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from parity_helpers import assert_refuses_lstm_options, close, random_like, tree_close, tree_equal  # noqa: E402

import jaxrnn  # noqa: E402
from jaxrnn import interop  # noqa: E402

T, B, I, H = 5, 3, 4, 6

LAYERS = {
  "simple_tanh": lambda **kw: keras.layers.SimpleRNN(H, **kw),
  "simple_relu": lambda **kw: keras.layers.SimpleRNN(H, activation="relu", **kw),
  "gru": lambda **kw: keras.layers.GRU(H, **kw),
  "gru_reset_before": lambda **kw: keras.layers.GRU(H, reset_after=False, **kw),
  "lstm": lambda **kw: keras.layers.LSTM(H, **kw),
  "lstm_no_bias": lambda **kw: keras.layers.LSTM(H, use_bias=False, **kw),
}
# What to_keras needs to rebuild each layer from jaxrnn params alone.
TO_KERAS_OPTIONS = {"simple_relu": dict(nonlinearity="relu")}


def _is_lstm(name: str) -> bool:
  return name.startswith("lstm")


def _data(name: str, seed: int = 0, **layer_kwargs):
  """A built layer with random weights (random biases too), an input and an initial state, batch-major."""
  layer = LAYERS[name](return_sequences=True, return_state=True, **layer_kwargs)
  layer.build((None, None, I))
  layer.set_weights([np.asarray(a) for a in random_like(seed, [np.zeros(w.shape) for w in layer.weights])])
  xs = random_like(seed + 1, jnp.zeros((B, T, I)))
  state = random_like(seed + 2, [jnp.zeros((B, H))] * (2 if _is_lstm(name) else 1))
  r = random_like(seed + 3, (jnp.zeros((B, T, H)), jnp.zeros((B, H)), jnp.zeros((B, H))))
  return layer, xs, state, r


def _loss(ys, state, r):
  """A scalar that depends on every output and state leaf (state as Keras's list: [h] or [h, c])."""
  r_out, r_h, r_c = r
  return jnp.sum(ys * r_out) + sum(jnp.sum(s * w) for s, w in zip(state, (r_h, r_c)))


def _jaxrnn_run(name, weights, layer, xs, state, reverse=False):
  cell, params = interop.from_keras(layer, weights)
  carry0 = jaxrnn.LSTMCarry(h=state[0], c=state[1]) if _is_lstm(name) else state[0]
  final, ys = jaxrnn.unroll(cell, params, xs, carry0, time_major=False, reverse=reverse)
  return ys, (list(final) if _is_lstm(name) else [final])


@pytest.mark.parametrize("name", LAYERS)
def test_outputs_states_and_gradients_equal_keras(name):
  layer, xs, state, r = _data(name)
  trainable = [jnp.asarray(v.value) for v in layer.trainable_variables]
  frozen = [jnp.asarray(v.value) for v in layer.non_trainable_variables]  # the dropout seed

  def keras_loss(trainable, xs, state):
    (ys, *final), _ = layer.stateless_call(trainable, frozen, xs, initial_state=state)
    return _loss(ys, final, r), ys

  def jaxrnn_loss(trainable, xs, state):
    ys, final = _jaxrnn_run(name, trainable, layer, xs, state)
    return _loss(ys, final, r), ys

  grad = jax.value_and_grad
  (loss_k, ys_k), g_k = jax.jit(grad(keras_loss, argnums=(0, 1, 2), has_aux=True))(trainable, xs, state)
  (loss_j, ys_j), g_j = jax.jit(grad(jaxrnn_loss, argnums=(0, 1, 2), has_aux=True))(trainable, xs, state)
  close(ys_j, ys_k, "outputs")
  close(loss_j, loss_k, "loss")
  tree_close(g_j, g_k, "grads wrt the Keras weights, the input and the initial state")
  assert all(float(jnp.abs(g).max()) > 0 for g in g_k[0]), "every weight must get a gradient"
  # The layer's current values (no weights given) are the same params.
  tree_close(interop.from_keras(layer)[1], interop.from_keras(layer, trainable)[1], "params from the layer")


def test_go_backwards_is_reverse_with_outputs_reversed():
  layer, xs, state, _ = _data("gru", seed=5, go_backwards=True)
  ys_k, h_k = layer(np.asarray(xs), initial_state=state)
  ys_j, (h_j,) = _jaxrnn_run("gru", None, layer, xs, state, reverse=True)
  close(ys_j[:, ::-1], np.asarray(ys_k), "outputs, Keras's in reverse order")
  close(h_j, np.asarray(h_k), "final state")


@pytest.mark.parametrize("name", LAYERS)
def test_keras_round_trip(name):
  layer, xs, state, _ = _data(name, seed=4)
  _, params = interop.from_keras(layer)
  layer2 = interop.to_keras(params, return_sequences=True, return_state=True, **TO_KERAS_OPTIONS.get(name, {}))
  assert type(layer2) is type(layer) and layer2.units == H
  assert layer2.cell.activation is layer.cell.activation and layer2.use_bias == layer.use_bias
  if name == "gru":  # the r and z recurrent biases come back folded into the input side: the same sums
    assert layer2.reset_after
    close(layer2(np.asarray(xs), initial_state=state)[0], layer(np.asarray(xs), initial_state=state)[0], "outputs")
  else:
    tree_equal([np.asarray(w) for w in layer2.weights], [np.asarray(w) for w in layer.weights])
  tree_close(interop.from_keras(layer2)[1], params, "from_keras(to_keras(params))")


@pytest.mark.parametrize(
  "cell, options",
  [
    (jaxrnn.elman(H), {}),
    (jaxrnn.elman(H, nonlinearity="relu", bias=False), dict(nonlinearity="relu")),
    (jaxrnn.gru(H), {}),
    (jaxrnn.gru(H, reset_after=False), {}),
    (jaxrnn.lstm(H), {}),
  ],
  ids=["elman", "elman_relu_no_bias", "gru", "gru_reset_before", "lstm"],
)
def test_jaxrnn_params_to_keras_compute_the_same(cell, options):
  params = random_like(0, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))
  layer = interop.to_keras(params, return_sequences=True, **options)
  xs = random_like(5, jnp.zeros((B, T, I)))
  _, ys = jaxrnn.unroll(cell, params, xs, time_major=False)
  close(ys, np.asarray(layer(np.asarray(xs))), "outputs")


def test_errors_name_what_was_received():
  with pytest.raises(TypeError, match=r"keras\.layers\.SimpleRNN, GRU or LSTM.*got keras\.src\.layers.*Dense"):
    interop.from_keras(keras.layers.Dense(3))
  with pytest.raises(ValueError, match="GRUCell is not built; call the layer on an input"):
    interop.from_keras(keras.layers.GRU(H))
  layer = keras.layers.LSTM(H, recurrent_activation="hard_sigmoid")
  layer.build((None, None, I))
  with pytest.raises(ValueError, match="LSTMCell.recurrent_activation is 'hard_sigmoid'; jaxrnn's gates are sigmoid"):
    interop.from_keras(layer)
  layer = keras.layers.SimpleRNN(H, activation="sigmoid")
  layer.build((None, None, I))
  with pytest.raises(
    ValueError, match="SimpleRNNCell.activation is 'sigmoid'; jaxrnn's cell supports only tanh or relu"
  ):
    interop.from_keras(layer)
  layer, *_ = _data("gru")
  with pytest.raises(ValueError, match=r"weights holds 2 arrays; GRUCell's trainable weights are \['kernel', "):
    interop.from_keras(layer, [np.zeros((I, 3 * H)), np.zeros((H, 3 * H))])
  with pytest.raises(ValueError, match=r"GRUCell.bias has shape \(18,\), expected \(2, 18\) \(units=6\)"):
    interop.from_keras(layer, [np.zeros((I, 3 * H)), np.zeros((H, 3 * H)), np.zeros(3 * H)])

  def params_of(cell):
    return random_like(0, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))

  with pytest.raises(TypeError, match="got MGUParams"):
    interop.to_keras(params_of(jaxrnn.mgu(H)))
  with pytest.raises(ValueError, match="GRU params without biases do not say"):
    interop.to_keras(params_of(jaxrnn.gru(H, bias=False)))
  with pytest.raises(ValueError, match=r"to_keras takes \['reset_after', 'units'\] from the params"):
    interop.to_keras(params_of(jaxrnn.gru(H)), units=3, reset_after=False)
  with pytest.raises(ValueError, match="nonlinearity must be one of"):
    interop.to_keras(params_of(jaxrnn.elman(H)), nonlinearity="sigmoid")
  assert_refuses_lstm_options(interop.to_keras, params_of, H)
