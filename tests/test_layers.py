"""Layers against their manual composition: rnn, stacked (with dropout), bidirectional, dense, last_step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

T, B, I = 6, 3, 2
TOL = {"rtol": 1e-5, "atol": 1e-6}
LENGTHS = jnp.array([T, 2, 0])
XS = jax.random.normal(jax.random.key(0), (T, B, I))
run = jax.jit(jaxrnn.unroll, static_argnums=0, static_argnames=("reverse", "time_major"))


def jit_apply(layer):
  return jax.jit(layer.apply, static_argnames="time_major")


def identity(scale: float = 1.0) -> jaxrnn.Layer:
  """A parameter-free layer that returns ``scale * xs``: a probe for what reaches a layer in a stack."""

  def apply(params, xs, carry=None, *, lengths=None, key=None, time_major=None):
    return (), scale * xs

  return jaxrnn.Layer(lambda key, input_size: (), lambda batch_shape=(), dtype=jnp.float32: (), apply)


def per_sequence_reverse(cell, params, xs, lengths):
  """The backward direction by hand: each sequence's valid part reversed, run forward, flipped back, zero-padded."""
  carries, ys = [], []
  for b, L in enumerate(np.asarray(lengths)):
    carry, y = run(cell, params, xs[:L, b][::-1])
    carries.append(carry)
    ys.append(jnp.concatenate([y[::-1], jnp.zeros((xs.shape[0] - L, y.shape[-1]))]))
  return jax.tree.map(lambda *c: jnp.stack(c), *carries), jnp.stack(ys, axis=1)


def test_rnn_layer_is_unroll():
  cell = jaxrnn.gru(4)
  params = cell.init(jax.random.key(1), I)
  layer = jaxrnn.rnn(cell)
  assert layer.init is cell.init and layer.initial_carry is cell.initial_carry
  chex.assert_trees_all_close(layer.apply(params, XS, lengths=LENGTHS), run(cell, params, XS, lengths=LENGTHS), **TOL)
  back = jit_apply(jaxrnn.rnn(cell, reverse=True))
  want = run(cell, params, XS, lengths=LENGTHS, reverse=True)
  chex.assert_trees_all_close(back(params, XS, lengths=LENGTHS), want, **TOL)
  # Batch-major, by construction or per call; the output follows the input's layout.
  xs_bm = jnp.swapaxes(XS, 0, 1)
  carry, ys = jit_apply(jaxrnn.rnn(cell, reverse=True, time_major=False))(params, xs_bm, lengths=LENGTHS)
  chex.assert_trees_all_close((carry, jnp.swapaxes(ys, 0, 1)), want, **TOL)
  chex.assert_trees_all_close(back(params, xs_bm, lengths=LENGTHS, time_major=False), (carry, ys), **TOL)


def test_stacked_without_key_is_deterministic_composition():
  c1, c2 = jaxrnn.lstm(4), jaxrnn.elman(3)
  net = jaxrnn.stacked(c1, c2, dropout=0.5)
  params = net.init(jax.random.key(2), I)
  k1, k2 = jax.random.split(jax.random.key(2))
  chex.assert_trees_all_close(params, (c1.init(k1, I), c2.init(k2, 4)))
  h1, y1 = run(c1, params[0], XS, lengths=LENGTHS)
  h2, y2 = run(c2, params[1], y1, lengths=LENGTHS)
  apply = jit_apply(net)
  carry, ys = apply(params, XS, lengths=LENGTHS)  # no key: no dropout, whatever the rate
  chex.assert_trees_all_close((carry, ys), ((h1, h2), y2), **TOL)
  chex.assert_trees_all_close(apply(params, XS, lengths=LENGTHS), (carry, ys))
  # An explicit initial carry is a tuple of the layers' carries.
  carry0 = (jaxrnn.LSTMCarry(jnp.ones((B, 4)), -jnp.ones((B, 4))), 0.5 * jnp.ones((B, 3)))
  _, y1 = run(c1, params[0], XS, carry0[0])
  chex.assert_trees_all_close(apply(params, XS, carry0)[1], run(c2, params[1], y1, carry0[1])[1], **TOL)
  chex.assert_trees_all_equal_shapes_and_dtypes(net.initial_carry((B,)), carry0)


def test_stacked_dropout_is_between_layers_only():
  """Three identity layers on ones: two dropouts (between 1-2 and 2-3) give 0 or 1/(1-r)^2 = 4, never 2 or 8."""
  net = jaxrnn.stacked(identity(), identity(), identity(), dropout=0.5)
  ones = jnp.ones((T, B, 8))
  params = net.init(jax.random.key(3), 8)
  assert params == ((), (), ())
  _, ys = net.apply(params, ones, key=jax.random.key(3))
  values = set(np.unique(np.asarray(ys)).tolist())
  assert values == {0.0, 4.0}
  assert 0.1 < np.mean(ys == 4.0) < 0.45  # kept by both masks: about (1 - r)^2 = 1/4
  np.testing.assert_array_equal(net.apply(params, ones)[1], ones)  # no key: no dropout


def test_stacked_dropout_masks_the_first_layers_outputs():
  cell = jaxrnn.elman(8)
  params = cell.init(jax.random.key(4), I)
  net = jaxrnn.stacked(cell, identity(), dropout=0.25)
  apply = jit_apply(net)
  _, ys = apply((params, ()), XS, key=jax.random.key(5))
  _, y1 = run(cell, params, XS)
  kept = np.isclose(ys, y1 / 0.75, rtol=1e-6)
  dropped = ys == 0.0
  assert np.all(kept | dropped) and np.all(y1 != 0.0)
  assert 0.1 < dropped.mean() < 0.4
  # Same key, same masks; another key, other masks.
  np.testing.assert_array_equal(apply((params, ()), XS, key=jax.random.key(5))[1], ys)
  assert not np.array_equal(apply((params, ()), XS, key=jax.random.key(6))[1], ys)


def test_stacked_dropout_rate_zero_is_no_dropout():
  cell = jaxrnn.gru(3)
  net = jaxrnn.stacked(cell, cell, dropout=0.0)
  params = net.init(jax.random.key(7), I)
  apply = jit_apply(net)
  chex.assert_trees_all_close(apply(params, XS, key=jax.random.key(8)), apply(params, XS))


@pytest.mark.parametrize("variational", [True, False])
def test_variational_dropout_reuses_one_mask_across_time(variational):
  net = jaxrnn.stacked(identity(), identity(), dropout=0.5, variational=variational)
  _, ys = net.apply(((), ()), jnp.ones((T, B, 8)), key=jax.random.key(9))
  same_over_time = all(np.array_equal(ys[t], ys[0]) for t in range(T))
  assert same_over_time == variational
  assert set(np.unique(np.asarray(ys)).tolist()) == {0.0, 2.0}  # still a mask within each step
  # The helper: broadcast_time draws one (*batch, F) mask.
  x = jnp.ones((T, B, 8))
  d = jaxrnn.dropout(jax.random.key(10), x, 0.5, broadcast_time=variational)
  assert all(np.array_equal(d[t], d[0]) for t in range(T)) == variational


def test_bidirectional_concat_and_sum():
  fwd, bwd = jaxrnn.lstm(4), jaxrnn.gru(4)
  want_cb = want_yb = None
  for merge in ("concat", "sum"):
    layer = jaxrnn.bidirectional(fwd, bwd, merge=merge)
    params = layer.init(jax.random.key(11), I)
    kf, kb = jax.random.split(jax.random.key(11))
    chex.assert_trees_all_close(params, (fwd.init(kf, I), bwd.init(kb, I)))
    (cf, cb), ys = jit_apply(layer)(params, XS, lengths=LENGTHS)
    want_cf, want_yf = run(fwd, params[0], XS, lengths=LENGTHS)
    if want_cb is None:  # the same params for both merges
      want_cb, want_yb = per_sequence_reverse(bwd, params[1], XS, LENGTHS)
    chex.assert_trees_all_close((cf, cb), (want_cf, want_cb), **TOL)
    want = jnp.concatenate([want_yf, want_yb], -1) if merge == "concat" else want_yf + want_yb
    chex.assert_trees_all_close(ys, want, **TOL)
    assert jaxrnn.output_size(layer, params, I) == (8 if merge == "concat" else 4)
  # A Layer as the backward direction is used as given; a reversed rnn layer equals the bare cell.
  layer = jaxrnn.bidirectional(fwd, bwd)
  as_layer = jaxrnn.bidirectional(fwd, jaxrnn.rnn(bwd, reverse=True))
  chex.assert_trees_all_close(
    jit_apply(as_layer)(params, XS, lengths=LENGTHS), jit_apply(layer)(params, XS, lengths=LENGTHS), **TOL
  )
  # A forward rnn given as the "backward" layer stays forward.
  _, ys = jit_apply(jaxrnn.bidirectional(fwd, jaxrnn.rnn(bwd)))(params, XS, lengths=LENGTHS)
  chex.assert_trees_all_close(ys[..., 4:], run(bwd, params[1], XS, lengths=LENGTHS)[1], **TOL)


def test_bidirectional_batch_major():
  layer = jaxrnn.bidirectional(jaxrnn.elman(3), jaxrnn.elman(2), time_major=False)
  params = layer.init(jax.random.key(13), I)
  apply = jit_apply(layer)
  carry, ys = apply(params, jnp.swapaxes(XS, 0, 1), lengths=LENGTHS)
  want_carry, want_ys = apply(params, XS, lengths=LENGTHS, time_major=True)
  chex.assert_trees_all_close((carry, ys), (want_carry, jnp.swapaxes(want_ys, 0, 1)), **TOL)


def test_dense_against_numpy():
  rng = np.random.default_rng(14)
  x = rng.standard_normal((T, B, 5)).astype(np.float32)
  out = jaxrnn.dense(2, activation=jax.nn.sigmoid)
  p = out.init(jax.random.key(14), 5)
  p = p._replace(b=jnp.asarray([0.5, -1.0]))
  want = 1.0 / (1.0 + np.exp(-(x @ np.asarray(p.w) + np.asarray([0.5, -1.0]))))
  np.testing.assert_allclose(out.apply(p, jnp.asarray(x)), want, rtol=1e-5)
  chex.assert_shape(out.apply(p, jnp.asarray(x[0, 0])), (2,))
  linear = jaxrnn.dense(3, bias=False, kernel_init=jaxrnn.initializers.constant(0.5))
  q = linear.init(jax.random.key(15), 5)
  assert q.b is None
  np.testing.assert_allclose(
    linear.apply(q, jnp.asarray(x)), np.repeat(0.5 * x.sum(-1, keepdims=True), 3, -1), rtol=1e-5
  )


def test_last_step_against_indexing():
  ys = jax.random.normal(jax.random.key(16), (T, 4, 2))
  lengths = jnp.array([T, 1, 0, 3])
  got = jaxrnn.last_step(ys, lengths)
  want = np.stack([ys[T - 1, 0], ys[0, 1], np.zeros(2), ys[2, 3]])
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(jaxrnn.last_step(ys), ys[-1])
  np.testing.assert_array_equal(jaxrnn.last_step(jnp.swapaxes(ys, 0, 1), lengths, time_major=False), want)
  # Several batch axes.
  ys2 = jax.random.normal(jax.random.key(17), (T, 2, 3, 1))
  lengths2 = jnp.array([[1, 2, 3], [4, 5, 6]])
  got2 = jaxrnn.last_step(ys2, lengths2)
  for i, j in np.ndindex(2, 3):
    np.testing.assert_array_equal(got2[i, j], ys2[lengths2[i, j] - 1, i, j])
  # The final carry of an Elman RNN is its output at each sequence's last step.
  cell = jaxrnn.elman(3)
  h, ys3 = run(cell, cell.init(jax.random.key(18), I), XS, lengths=LENGTHS)
  np.testing.assert_allclose(jaxrnn.last_step(ys3, LENGTHS)[:2], h[:2], rtol=1e-6)


def test_last_step_with_a_mask_reads_the_last_kept_step():
  ys = jax.random.normal(jax.random.key(19), (T, 4, 2))
  mask = np.ones((T, 4), bool)
  mask[4:, 0] = False  # sequence 0: last kept step 3
  mask[:, 1] = False  # sequence 1: none kept
  mask[T - 1, 2] = False  # sequence 2: a gap at the end, last kept step T - 2 ...
  mask[1, 3] = False  # sequence 3: a gap inside; with lengths 2 below its last kept step is 0
  got = jaxrnn.last_step(ys, mask=jnp.asarray(mask))
  np.testing.assert_array_equal(got, np.stack([ys[3, 0], np.zeros(2), ys[T - 2, 2], ys[T - 1, 3]]))
  lengths = jnp.array([T, T, 3, 2])
  got = jaxrnn.last_step(ys, lengths, mask=jnp.asarray(mask))
  np.testing.assert_array_equal(got, np.stack([ys[3, 0], np.zeros(2), ys[2, 2], ys[0, 3]]))
  bm = jaxrnn.last_step(jnp.swapaxes(ys, 0, 1), lengths, mask=jnp.asarray(mask.T), time_major=False)
  np.testing.assert_array_equal(bm, got)
  # The final carry of an Elman RNN run with the mask is its output at each sequence's last kept step.
  cell = jaxrnn.elman(3)
  keep = jnp.asarray(np.random.default_rng(0).random((T, B)) < 0.6).at[0, :].set(True)
  h, ys_cell = jaxrnn.unroll(cell, cell.init(jax.random.key(20), I), XS, mask=keep)
  np.testing.assert_allclose(jaxrnn.last_step(ys_cell, mask=keep), h, rtol=1e-6)


def test_broadcast_carry_learns_one_initial_state_for_the_batch():
  cell = jaxrnn.lstm(3)
  params = cell.init(jax.random.key(21), I)
  h0 = jaxrnn.LSTMCarry(*(jax.random.normal(k, (3,)) for k in jax.random.split(jax.random.key(22))))
  carry0 = jaxrnn.broadcast_carry(h0, (B,))
  chex.assert_trees_all_equal(carry0, jax.tree.map(lambda a: jnp.stack([a] * B), h0))
  assert jax.tree.map(jnp.shape, jaxrnn.broadcast_carry(h0, (2, 4))) == jaxrnn.LSTMCarry((2, 4, 3), (2, 4, 3))

  def loss(h0):
    return jnp.sum(jaxrnn.unroll(cell, params, XS, jaxrnn.broadcast_carry(h0, (B,)))[1] ** 2)

  def loss_one(h0, b):  # sequence b alone, started from h0
    return jnp.sum(jaxrnn.unroll(cell, params, XS[:, b], h0)[1] ** 2)

  want = jax.tree.map(lambda *g: sum(g), *(jax.grad(loss_one)(h0, b) for b in range(B)))
  chex.assert_trees_all_close(jax.grad(loss)(h0), want, rtol=1e-5, atol=1e-6)
  with pytest.raises(jaxrnn.InputError, match="batch_shape must have non-negative sizes"):
    jaxrnn.broadcast_carry(h0, (-1,))


def test_output_size():
  def size(layer, input_size=I):
    params = jax.eval_shape(lambda k: layer.init(k, input_size), jax.random.key(0))
    return jaxrnn.output_size(layer, params, input_size)

  assert size(jaxrnn.lstm(5)) == 5
  assert size(jaxrnn.lstm1997(3, 2)) == 6
  assert size(jaxrnn.stacked(jaxrnn.lstm(5), jaxrnn.gru(3))) == 3
  assert size(jaxrnn.bidirectional(jaxrnn.lstm(3), jaxrnn.gru(2))) == 5
  assert size(jaxrnn.bidirectional(jaxrnn.lstm(3), jaxrnn.gru(3), merge="sum")) == 3
  assert size(jaxrnn.stacked(identity(), jaxrnn.mgu(4), identity())) == 4
  assert size(identity(), 7) == 7


def test_composition_under_jit_grad_and_vmap():
  net = jaxrnn.stacked(
    jaxrnn.bidirectional(jaxrnn.lstm(3), jaxrnn.gru(3), merge="sum"),
    jaxrnn.mgu(4),
    dropout=0.3,
    variational=True,
  )
  out = jaxrnn.dense(2, activation=jnp.tanh)
  params = (net.init(jax.random.key(19), I), out.init(jax.random.key(20), 4))

  def predict(params, xs, lengths, key=None):
    _, ys = net.apply(params[0], xs, lengths=lengths, key=key)
    return out.apply(params[1], jaxrnn.last_step(ys, lengths))

  def loss(params, xs, lengths, key=None):
    return jnp.sum(predict(params, xs, lengths, key) ** 2)

  grads = jax.jit(jax.grad(loss))(params, XS, LENGTHS)
  chex.assert_trees_all_equal_structs(grads, params)
  assert all(np.any(g != 0) for g in jax.tree.leaves(grads))
  # Per-sequence calls under vmap (each sees batch shape ()) equal the batched call; so do their gradients.
  jit_predict = jax.jit(predict)
  batched = jit_predict(params, XS, LENGTHS)
  per_seq_loss, per_seq_grads = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=(None, 1, 0)))(params, XS, LENGTHS)
  np.testing.assert_allclose(per_seq_loss, jnp.sum(batched**2, axis=-1), rtol=1e-5)
  chex.assert_trees_all_close(jax.tree.map(lambda g: g.sum(0), per_seq_grads), grads, rtol=1e-4, atol=1e-5)
  # With a key, dropout changes the prediction, deterministically for that key.
  with_dropout = jit_predict(params, XS, LENGTHS, jax.random.key(21))
  np.testing.assert_array_equal(jit_predict(params, XS, LENGTHS, jax.random.key(21)), with_dropout)
  assert not np.allclose(with_dropout, batched)


# ----------------------------------------------------------------------------
# Recurrent dropout. Reference: a mask m on h inside the recurrent products, (h * m) @ w_h, is the unmasked cell
# with w_h's rows scaled by m, h @ (m[:, None] * w_h), in every gate, and the state's own update reads h
# unmasked in both; so each sequence run alone with its own scaled w_h is an independent reference.

RECURRENT_CELLS = {
  "elman_relu": jaxrnn.elman(4, nonlinearity="relu"),
  "gru": jaxrnn.gru(4),
  "gru_reset_before": jaxrnn.gru(4, reset_after=False),
  "mgu": jaxrnn.mgu(4),
  "lstm": jaxrnn.lstm(4),
  "lstm_peepholes_layer_norm": jaxrnn.lstm(4, peepholes=True, layer_norm=True),
  "lstm_proj": jaxrnn.lstm(6, proj_size=4),  # the mask acts on the projected h
  "time_decay_gru": jaxrnn.time_decay(jaxrnn.gru(4)),
  "grud": jaxrnn.grud(4, I, x_mean=jnp.array([0.3, -0.2])),
  "lstm1997": jaxrnn.lstm1997(2, 2, truncated_gradient=True, init_scale=0.5),  # 4 cell outputs
}


def _recurrent_cell_inputs(name):
  if name == "time_decay_gru":  # features, then the time gap
    return jnp.concatenate([XS, jnp.abs(XS[..., :1])], axis=-1)
  if name == "grud":  # values, missingness (about half observed), time since each feature was last seen
    observed = (jax.random.uniform(jax.random.key(3), XS.shape) < 0.5).astype(XS.dtype)
    return jnp.concatenate([XS, observed, 1.0 + jnp.abs(XS)], axis=-1)
  return XS


def _scaled_w_h(params, m):
  if isinstance(params, jaxrnn.TimeDecayParams):
    return params._replace(cell=_scaled_w_h(params.cell, m))
  if isinstance(params, jaxrnn.LSTM1997Params):  # rows of the cell outputs; the gate activations' stay
    m = jnp.concatenate([m, jnp.ones(params.w_h.shape[0] - m.shape[0])])
  return params._replace(w_h=m[:, None] * params.w_h)


@pytest.mark.parametrize("name", RECURRENT_CELLS)
def test_recurrent_mask_equals_scaled_recurrent_weights_per_sequence(name):
  cell = RECURRENT_CELLS[name]
  xs = _recurrent_cell_inputs(name)
  params = cell.init(jax.random.key(1), xs.shape[-1])
  mask = jaxrnn.dropout(jax.random.key(2), jnp.ones((B, 4)), 0.5)
  assert 0 < int(jnp.sum(mask == 0)) < mask.size  # some units dropped, some kept

  def masked(params, xs):
    return run(jaxrnn.with_recurrent_mask(cell, mask), params, xs, lengths=LENGTHS)

  carry, ys = jax.jit(masked)(params, xs)
  for b in range(B):
    want_carry, want_ys = run(cell, _scaled_w_h(params, mask[b]), xs[:, b : b + 1], lengths=LENGTHS[b : b + 1])
    chex.assert_trees_all_close(jax.tree.map(lambda a, b=b: a[b : b + 1], carry), want_carry, **TOL)
    np.testing.assert_allclose(ys[:, b : b + 1], want_ys, **TOL)

  if name not in ("gru_reset_before", "lstm_peepholes_layer_norm", "grud", "lstm1997"):
    return  # gradients of the cells with a fast path: tests/test_fused.py, against the plain scan
  # Gradients: by the chain rule, d/dw_h of the masked cell is m[:, None] times d/dw_h' of the scaled one (one
  # mask for the batch, shape (H,), so that one scaled w_h' serves every sequence).
  m = mask[0]

  def loss_masked(params):
    return jnp.sum(run(jaxrnn.with_recurrent_mask(cell, m), params, xs)[1] ** 2)

  def loss_scaled(params):
    return jnp.sum(run(cell, _scaled_w_h(params, m), xs)[1] ** 2)

  g_masked = jax.grad(loss_masked)(params)
  g_scaled = jax.grad(loss_scaled)(params)  # already through _scaled_w_h: d/dw_h = m[:, None] * d/dw_h'
  chex.assert_trees_all_close(g_masked, g_scaled, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "grud", "lstm1997"])
def test_rnn_recurrent_dropout_draws_one_mask_per_sequence_from_the_key(name):
  cell = RECURRENT_CELLS[name]
  xs = _recurrent_cell_inputs(name)
  params = cell.init(jax.random.key(1), xs.shape[-1])
  layer = jaxrnn.rnn(cell, recurrent_dropout=0.5)
  key = jax.random.key(3)
  carry, ys = jit_apply(layer)(params, xs, lengths=LENGTHS, key=key)
  # The documented mask: dropout(key, ones((*batch, H)), rate).
  mask = jaxrnn.dropout(key, jnp.ones((B, 4)), 0.5)
  chex.assert_trees_all_close(
    (carry, ys), run(jaxrnn.with_recurrent_mask(cell, mask), params, xs, lengths=LENGTHS), **TOL
  )
  # It changes the outputs; without a key the layer is the plain cell (inference).
  assert not np.allclose(ys, run(cell, params, xs, lengths=LENGTHS)[1], **TOL)
  chex.assert_trees_all_close(
    jit_apply(layer)(params, xs, lengths=LENGTHS), run(cell, params, xs, lengths=LENGTHS), **TOL
  )
  if name != "lstm":
    return
  # Over many sequences about `rate` of the units are dropped, each kept one scaled by 1 / (1 - rate).
  wide = jaxrnn.dropout(jax.random.key(4), jnp.ones((2000, 4)), 0.3)
  np.testing.assert_allclose(np.unique(np.asarray(wide)), [0.0, 1 / 0.7], rtol=1e-6)
  assert abs(float(jnp.mean(wide == 0)) - 0.3) < 0.02  # 8000 draws: 4 standard deviations is 0.02


def test_recurrent_dropout_composes_in_stacked_and_bidirectional():
  cell = jaxrnn.gru(3)
  net = jaxrnn.stacked(
    jaxrnn.bidirectional(
      jaxrnn.rnn(cell, recurrent_dropout=0.4), jaxrnn.rnn(cell, reverse=True, recurrent_dropout=0.4)
    ),
    jaxrnn.rnn(jaxrnn.lstm(2), recurrent_dropout=0.4),
  )
  params = net.init(jax.random.key(5), I)
  apply = jit_apply(net)
  _, ys = apply(params, XS, lengths=LENGTHS)
  _, ys_again = apply(params, XS, lengths=LENGTHS)
  np.testing.assert_array_equal(ys, ys_again)  # deterministic without a key
  _, ys_key = apply(params, XS, lengths=LENGTHS, key=jax.random.key(6))
  assert ys_key.shape == ys.shape and not np.allclose(ys_key, ys, **TOL)
  np.testing.assert_array_equal(ys_key[2:, 1], 0.0)  # padding stays zero
  grads = jax.grad(lambda p: jnp.sum(apply(p, XS, lengths=LENGTHS, key=jax.random.key(6))[1] ** 2))(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_recurrent_dropout_errors():
  with pytest.raises(ValueError, match=r"recurrent_dropout must be in \[0, 1\), got 1\.0"):
    jaxrnn.rnn(jaxrnn.gru(3), recurrent_dropout=1.0)
  inner = jaxrnn.gru(3)
  own = jaxrnn.Cell(inner.init, inner.initial_carry, lambda p, c, x: inner.apply(p, c, x))  # a user's cell
  with pytest.raises(ValueError, match="recurrent dropout needs a cell whose apply takes recurrent_mask="):
    jaxrnn.rnn(own, recurrent_dropout=0.1)
  with pytest.raises(ValueError, match="recurrent dropout needs a cell"):
    jaxrnn.with_recurrent_mask(own, jnp.ones(3))
  jaxrnn.rnn(own)  # rate 0 needs nothing of the cell
  with pytest.raises(ValueError, match="recurrent dropout needs a cell"):
    jaxrnn.with_recurrent_mask(jaxrnn.time_decay(own), jnp.ones(3))
  cell = jaxrnn.lstm(4)
  params = cell.init(jax.random.key(0), I)
  with pytest.raises(
    ValueError, match=r"recurrent_mask has shape \(3, 5\), expected one that broadcasts to .* \(3, 4\)"
  ):
    jaxrnn.unroll(jaxrnn.with_recurrent_mask(cell, jnp.ones((3, 5))), params, XS)
  with pytest.raises(TypeError, match="recurrent_mask must be a floating array, got bool"):
    jaxrnn.unroll(jaxrnn.with_recurrent_mask(cell, jnp.ones((3, 4), bool)), params, XS)
  with pytest.raises(TypeError, match="cell must be a jaxrnn.Cell"):
    jaxrnn.with_recurrent_mask(jaxrnn.dense(3), jnp.ones(3))
  # A time_decay cell runs its wrapped cell's kernel, mask included; one of a cell without a kernel has none.
  decayed = jaxrnn.time_decay(cell)
  xs_dt = jnp.concatenate([XS, jnp.ones_like(XS[..., :1])], axis=-1)
  masked = jaxrnn.with_recurrent_mask(decayed, jnp.asarray([1.0, 0.0, 2.0, 1.0]))
  p_dt = decayed.init(jax.random.key(0), I + 1)
  chex.assert_trees_all_close(
    jaxrnn.unroll(masked, p_dt, xs_dt, impl="fused"), jaxrnn.unroll(masked, p_dt, xs_dt, impl="reference"), **TOL
  )
  decayed_1997 = jaxrnn.time_decay(jaxrnn.lstm1997(2, 2, cell_output_squash=jnp.tanh))  # a callable squash
  with pytest.raises(ValueError, match=r"impl='fused' needs a cell with a fast-path kernel"):
    jaxrnn.unroll(
      jaxrnn.with_recurrent_mask(decayed_1997, jnp.ones(4)),
      decayed_1997.init(jax.random.key(0), I + 1),
      xs_dt,
      impl="fused",
    )
