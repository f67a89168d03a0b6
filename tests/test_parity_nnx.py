"""Parity with flax.nnx: `jaxrnn.interop.from_nnx` cells compute the nnx cells' outputs, carries and gradients.

The reference is ``flax.nnx.RNN(cell)`` (a scan over the nnx cell) with the
same weights. Every comparison is float32 at atol = rtol = 1e-5. The
gradients are taken with ``nnx.grad`` of the same module both ways: through
``nnx.RNN``, and through ``jaxrnn.unroll`` of ``from_nnx(module)``, which is
how a model keeps its parameters in an nnx cell and runs them with jaxrnn.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from parity_helpers import assert_refuses_lstm_options, close, loss_from_outputs, random_like, tree_close, tree_equal

import jaxrnn
from jaxrnn import interop

T, B, I, H = 5, 3, 4, 6
LENGTHS = jnp.array([5, 2, 3])

CELLS = {
  "simple_tanh": lambda: nnx.SimpleCell(I, H, rngs=nnx.Rngs(0)),
  "simple_relu": lambda: nnx.SimpleCell(I, H, activation_fn=nnx.relu, rngs=nnx.Rngs(0)),
  "gru": lambda: nnx.GRUCell(I, H, rngs=nnx.Rngs(0)),
  "lstm": lambda: nnx.LSTMCell(I, H, rngs=nnx.Rngs(0)),
  "optimized_lstm": lambda: nnx.OptimizedLSTMCell(I, H, rngs=nnx.Rngs(0)),
}
# What to_nnx needs to rebuild each cell from jaxrnn params alone.
TO_NNX_OPTIONS = {"simple_relu": dict(nonlinearity="relu"), "optimized_lstm": dict(optimized=True)}


def _module(name: str, seed: int = 0):
  """The nnx cell ``name`` with random values in every parameter."""
  module = CELLS[name]()
  nnx.update(module, random_like(seed, nnx.state(module, nnx.Param)))
  return module


def _data(name: str, seed: int = 0):
  module = _module(name, seed)
  carry0 = random_like(seed + 1, module.initialize_carry((B, I), rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(seed + 2)
  xs, r_out, r_h, r_c = (
    jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in [(T, B, I), (T, B, H), (B, H), (B, H)]
  )
  return module, carry0, xs, (r_out, r_h, r_c)


@nnx.jit(static_argnames="with_lengths")
def _nnx_loss_and_grads(module, xs, carry0, r, with_lengths):
  lengths = LENGTHS if with_lengths else None

  def loss(module, xs, carry0):
    rnn = nnx.RNN(module, time_major=True, return_carry=True)
    carry, ys = rnn(xs, initial_carry=carry0, seq_lengths=lengths)
    carry = interop.from_flax_carry(carry)
    if lengths is not None:  # nnx leaves the outputs at padded steps as they come; jaxrnn zeroes them
      valid = jnp.arange(T)[:, None] < lengths[None, :]
      ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return loss_from_outputs(carry, ys, r), (carry, ys)

  return nnx.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(module, xs, carry0)


@nnx.jit(static_argnames="with_lengths")
def _jaxrnn_loss_and_grads(module, xs, carry0, r, with_lengths):
  lengths = LENGTHS if with_lengths else None

  def loss(module, xs, carry0):
    cell, params = interop.from_nnx(module)  # inside the differentiated function: gradients reach the nnx params
    carry, ys = jaxrnn.unroll(cell, params, xs, interop.from_flax_carry(carry0), lengths=lengths)
    return loss_from_outputs(carry, ys, r), (carry, ys)

  return nnx.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(module, xs, carry0)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("name", CELLS)
def test_outputs_carries_and_gradients_equal_nnx(name, with_lengths):
  module, carry0, xs, r = _data(name)
  (loss_n, (carry_n, ys_n)), (g_mod_n, g_xs_n, g_carry_n) = _nnx_loss_and_grads(module, xs, carry0, r, with_lengths)
  (loss_j, (carry_j, ys_j)), (g_mod_j, g_xs_j, g_carry_j) = _jaxrnn_loss_and_grads(module, xs, carry0, r, with_lengths)

  close(ys_j, ys_n, "outputs")
  tree_close(carry_j, carry_n, "final carry")
  close(loss_j, loss_n, "loss")
  close(g_xs_j, g_xs_n, "grad wrt the input")
  tree_close(g_carry_j, g_carry_n, "grad wrt the initial carry")
  g_n, g_j = nnx.to_pure_dict(g_mod_n), nnx.to_pure_dict(g_mod_j)
  tree_close(g_j, g_n, "grad wrt the nnx params")
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g_n)), "every parameter must get a gradient"


def test_step_equals_nnx_cell_call():
  """One step through the cell's apply against the nnx module's own __call__ (no nnx.RNN in between)."""
  for name in CELLS:
    module, carry0, xs, _ = _data(name, seed=1)
    cell, params = interop.from_nnx(module)
    nnx_carry, y_n = module(carry0, xs[0])
    carry, y = cell.apply(params, interop.from_flax_carry(carry0), xs[0])
    close(y, y_n, f"{name} output")
    tree_close(carry, interop.from_flax_carry(nnx_carry), f"{name} carry")


@pytest.mark.parametrize("name", CELLS)
def test_nnx_round_trip(name):
  module = _module(name, seed=3)
  _, params = interop.from_nnx(module)
  module2 = interop.to_nnx(params, **TO_NNX_OPTIONS.get(name, {}))
  assert type(module2) is type(module)
  assert (module2.in_features, module2.hidden_features) == (I, H)
  assert module2.activation_fn is module.activation_fn
  expected, actual = nnx.to_pure_dict(nnx.state(module)), nnx.to_pure_dict(nnx.state(module2))
  tree_equal(actual, expected)


def _params_of(cell, seed: int = 0):
  """Random params of a jaxrnn cell with input size ``I``."""
  return random_like(seed, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))


@pytest.mark.parametrize(
  "cell, options",
  [
    (jaxrnn.elman(H), {}),
    (jaxrnn.elman(H, nonlinearity="relu"), dict(nonlinearity="relu")),
    (jaxrnn.gru(H), {}),
    (jaxrnn.gru(H, bias=False), {}),
    (jaxrnn.lstm(H), {}),
    (jaxrnn.lstm(H), dict(optimized=True)),
    (jaxrnn.lstm(H, bias=False), {}),
  ],
  ids=["elman", "elman_relu", "gru", "gru_no_bias", "lstm", "optimized_lstm", "lstm_no_bias"],
)
def test_jaxrnn_params_to_nnx_compute_the_same(cell, options):
  params = _params_of(cell)
  if isinstance(params, jaxrnn.GRUParams) and params.b_hn is not None:
    params = params._replace(b_hn=jnp.zeros_like(params.b_hn))  # nnx's GRU has no recurrent bias
  module = interop.to_nnx(params, **options)
  x = random_like(5, jnp.zeros((B, I)))
  carry0 = random_like(6, cell.initial_carry((B,)))
  nnx_carry, y_n = module(interop.to_flax_carry(carry0), x)
  carry, y = cell.apply(params, carry0, x)
  close(y, y_n, "output")
  tree_close(carry, interop.from_flax_carry(nnx_carry), "carry")
  if params.b is not None:
    _, back = interop.from_nnx(module)
    tree_close(back, params, "from_nnx(to_nnx(params))")


def test_errors_name_what_was_received():
  with pytest.raises(TypeError, match=r"flax\.nnx\.SimpleCell.*got flax\.nnx\.nn\.linear\.Linear"):
    interop.from_nnx(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  with pytest.raises(TypeError, match=r"pass module\.cell"):
    interop.from_nnx(nnx.RNN(CELLS["gru"]()))
  with pytest.raises(TypeError, match=r"a flax\.linen module: use jaxrnn\.interop\.from_flax"):
    interop.from_nnx(nn.LSTMCell(H))
  with pytest.raises(TypeError, match=r"flax\.linen\.SimpleCell.*use jaxrnn\.interop\.from_nnx\), got flax\.nnx"):
    interop.from_flax(CELLS["lstm"](), {})
  with pytest.raises(ValueError, match="LSTMCell.gate_fn is 'relu'"):
    interop.from_nnx(nnx.LSTMCell(I, H, gate_fn=nnx.relu, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="residual"):
    interop.from_nnx(nnx.SimpleCell(I, H, residual=True, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="dtype is bfloat16"):
    interop.from_nnx(nnx.GRUCell(I, H, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
  module = CELLS["optimized_lstm"]()
  module.dense_h.kernel.set_value(jnp.zeros((H, 3 * H)))
  with pytest.raises(ValueError, match=r"OptimizedLSTMCell\.dense_h\.kernel has shape \(6, 18\), expected \(6, 24\)"):
    interop.from_nnx(module)
  module = CELLS["lstm"]()
  module.hg.bias.set_value(jnp.zeros((H,), jnp.int32))
  with pytest.raises(TypeError, match=r"LSTMCell\.hg\.bias has dtype int32, expected float32 like the others"):
    interop.from_nnx(module)

  gru_params = _params_of(jaxrnn.gru(H))
  with pytest.raises(ValueError, match="b_hn is not zero; flax.nnx's GRUCell has no recurrent bias"):
    interop.to_nnx(gru_params)
  with pytest.raises(ValueError, match=r"params\.b_hn is traced: call it outside jit"):
    jax.jit(lambda b_hn: interop.to_nnx(gru_params._replace(b_hn=b_hn)))(jnp.zeros((H,)))
  with pytest.raises(ValueError, match=r"params\.w_x is traced"):
    jax.jit(interop.to_nnx)(_params_of(jaxrnn.lstm(H)))
  with pytest.raises(ValueError, match=r"reset_after=False"):
    interop.to_nnx(_params_of(jaxrnn.gru(H, reset_after=False)))
  with pytest.raises(TypeError, match=r"flax\.nnx has no MGU cell\), got MGUParams"):
    interop.to_nnx(_params_of(jaxrnn.mgu(H)))
  with pytest.raises(TypeError, match="got DenseParams"):
    interop.to_nnx(_params_of(jaxrnn.dense(3)))
  assert_refuses_lstm_options(interop.to_nnx, _params_of, H)
  with pytest.raises(ValueError, match="nonlinearity must be one of"):
    interop.to_nnx(_params_of(jaxrnn.elman(H)), nonlinearity="sigmoid")


def test_jaxrnn_params_held_as_nnx_params():
  """A cell nnx lacks keeps its params in an nnx module as ``nnx.Param`` leaves (README): ``nnx.grad`` through
  ``nnx.as_pure`` gives jax.grad's gradients of the plain params."""
  cell = jaxrnn.lstm1997(2, 2)
  params = random_like(7, jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)))
  xs = random_like(8, jnp.zeros((T, B, I)))

  class Model(nnx.Module):
    def __init__(self, params):
      self.params = nnx.data(jax.tree.map(nnx.Param, params))

    def __call__(self, xs):
      return jaxrnn.unroll(cell, nnx.as_pure(self.params), xs)[1]

  def loss(params):
    return jnp.sum(jnp.sin(jaxrnn.unroll(cell, params, xs)[1]))

  model = Model(params)
  grads = nnx.grad(lambda m: jnp.sum(jnp.sin(m(xs))))(model)
  expected = jax.grad(loss)(params)
  tree_close(nnx.as_pure(nnx.to_pure_dict(grads)["params"]), expected._asdict(), "nnx gradients")
