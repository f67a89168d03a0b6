"""time_decay and GRU-D against numpy references of their equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn

D, H, T, B = 2, 3, 6, 4


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _irregular_inputs(key, dtype=jnp.float32):
  kv, km, kd = jax.random.split(key, 3)
  values = jax.random.normal(kv, (T, B, D), dtype)
  mask = jax.random.bernoulli(km, 0.5, (T, B, D)).astype(dtype)
  delta = jax.random.uniform(kd, (T, B, D), dtype, 0.0, 3.0)
  return values, mask, delta


def _grud_reference(p, values, mask, delta, x_mean):
  p = jax.tree.map(np.asarray, p)
  values, mask, delta = (np.asarray(a, np.float64) for a in (values, mask, delta))
  h = np.zeros((B, H))
  x_last = np.tile(x_mean, (B, 1))
  ys = []
  for t in range(T):
    x, m, d = values[t], mask[t], delta[t]
    gx = np.exp(-np.maximum(0.0, p.w_gx * d + p.b_gx))
    gh = np.exp(-np.maximum(0.0, d @ p.w_gh + p.b_gh))
    x_hat = m * x + (1 - m) * (gx * x_last + (1 - gx) * x_mean)
    hd = gh * h
    wx = np.split(p.w_x, 3, axis=1)
    wm = np.split(p.w_m, 3, axis=1)
    wh = np.split(p.w_h, 3, axis=1)
    b = np.split(p.b, 3)
    r = _sigmoid(x_hat @ wx[0] + m @ wm[0] + hd @ wh[0] + b[0])
    z = _sigmoid(x_hat @ wx[1] + m @ wm[1] + hd @ wh[1] + b[1])
    n = np.tanh(x_hat @ wx[2] + m @ wm[2] + (r * hd) @ wh[2] + b[2])
    h = (1 - z) * n + z * hd
    x_last = np.where(m > 0, x, x_last)
    ys.append(h)
  return np.stack(ys), h, x_last


def _randomise(params, key, scale=0.5):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [scale * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def test_grud_matches_numpy_reference():
  x_mean = np.array([0.3, -0.7])
  cell = jaxrnn.grud(H, D, x_mean=x_mean)
  params = _randomise(cell.init(jax.random.key(0), 3 * D), jax.random.key(1))
  values, mask, delta = _irregular_inputs(jax.random.key(2))
  carry, ys = jax.jit(lambda p, xs: jaxrnn.unroll(cell, p, xs))(params, jnp.concatenate([values, mask, delta], -1))
  ref_ys, ref_h, ref_last = _grud_reference(params, values, mask, delta, x_mean)
  np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(carry.h, ref_h, rtol=1e-5, atol=1e-5)
  # Features never observed keep reporting the mean; observed ones their last value.
  np.testing.assert_allclose(jnp.where(carry.seen > 0, carry.x_last, x_mean), ref_last, rtol=1e-6)


def test_grud_gradients_match_finite_differences():
  with jax.enable_x64(True):
    cell = jaxrnn.grud(H, D, param_dtype=jnp.float64)
    values, mask, delta = _irregular_inputs(jax.random.key(4), jnp.float64)
    # The decays are exp(-relu(.)): pick params whose pre-activations stay clear of the kink at 0,
    # where finite differences straddle two slopes.
    for seed in range(100):
      params = _randomise(cell.init(jax.random.key(0), 3 * D), jax.random.key(seed))
      pre_x = params.w_gx[None, None] * delta + params.b_gx[None, None]
      pre_h = delta @ params.w_gh + params.b_gh[None, None]
      kink = min(jnp.min(jnp.abs(pre_x)), jnp.min(jnp.abs(pre_h)))
      if kink > 1e-2:
        break
    assert kink > 1e-2
    xs = jnp.concatenate([values, mask, delta], -1)

    def loss(p, v):
      return jnp.sum(jaxrnn.unroll(cell, p, jnp.concatenate([v, mask, delta], -1))[1] ** 2)

    check_grads(loss, (params, values), order=1, modes=("fwd", "rev"))
    assert xs.dtype == jnp.float64


def test_grud_rejects_wrong_input_size():
  cell = jaxrnn.grud(H, D)
  with pytest.raises(ValueError, match=r"input_size must be 3 \* num_features = 6"):
    cell.init(jax.random.key(0), 5)
  params = cell.init(jax.random.key(0), 6)
  with pytest.raises(ValueError, match="feature size 5"):
    cell.apply(params, cell.initial_carry((B,)), jnp.zeros((B, 5)))
  with pytest.raises(ValueError, match=r"x_mean must have shape \(2,\)"):
    jaxrnn.grud(H, D, x_mean=[0.0, 1.0, 2.0])


@pytest.mark.parametrize("delta_as_input", [False, True])
def test_time_decay_matches_numpy_reference(delta_as_input):
  inner = jaxrnn.lstm(H)
  cell = jaxrnn.time_decay(inner, delta_as_input=delta_as_input)
  params = _randomise(cell.init(jax.random.key(0), D + 1), jax.random.key(1))
  values, _, delta = _irregular_inputs(jax.random.key(2))
  xs = jnp.concatenate([values, delta[..., :1]], -1)
  carry, ys = jaxrnn.unroll(cell, params, xs)

  h = np.zeros((B, H))
  c = np.zeros((B, H))
  rate_h = np.log1p(np.exp(np.asarray(params.rate.h)))
  rate_c = np.log1p(np.exp(np.asarray(params.rate.c)))
  p = jax.tree.map(np.asarray, params.cell)
  for t in range(T):
    dt = np.asarray(xs[t, :, -1:])
    h = np.exp(-rate_h * dt) * h
    c = np.exp(-rate_c * dt) * c
    x = np.asarray(xs[t]) if delta_as_input else np.asarray(xs[t, :, :-1])
    i, f, g, o = np.split(x @ p.w_x + h @ p.w_h + p.b, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(ys[t], h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(carry.c, c, rtol=1e-5, atol=1e-5)


def test_time_decay_zero_gap_is_the_wrapped_cell():
  inner = jaxrnn.gru(H)
  cell = jaxrnn.time_decay(inner)
  params = cell.init(jax.random.key(0), D + 1)
  values, _, _ = _irregular_inputs(jax.random.key(1))
  xs = jnp.concatenate([values, jnp.zeros((T, B, 1))], -1)
  _, ys = jaxrnn.unroll(cell, params, xs)
  _, ref = jaxrnn.unroll(inner, params.cell, values)
  np.testing.assert_allclose(ys, ref, rtol=1e-6, atol=1e-6)


def test_time_decay_gradients_match_finite_differences():
  with jax.enable_x64(True):
    cell = jaxrnn.time_decay(jaxrnn.gru(H, param_dtype=jnp.float64))
    params = _randomise(cell.init(jax.random.key(0), D + 1), jax.random.key(5))
    values, _, delta = _irregular_inputs(jax.random.key(6), jnp.float64)
    xs = jnp.concatenate([values, delta[..., :1]], -1)
    check_grads(lambda p: jnp.sum(jaxrnn.unroll(cell, p, xs)[1] ** 2), (params,), order=1, modes=("fwd", "rev"))
