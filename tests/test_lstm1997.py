"""The 1997 LSTM against the paper: weight counts, gate biases, squashes, and the truncated gradient of Appendix A.

The truncated-gradient reference below is the paper's own algorithm written in
numpy: forward accumulation of the partial derivatives of the cell states with
respect to the cell and input-gate weights (a truncated RTRL), output-gate
weights from the immediate error only, a sigmoid output layer and squared error.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn


def count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def paper_net_count(C, S, I, K, *, bias, output_gate=True, output_bias=True) -> int:
  """Weights of the cell plus a ``dense`` readout of the C*S cell outputs, from jaxrnn's own inits."""
  cell = jaxrnn.lstm1997(C, S, bias=bias, output_gate=output_gate)
  params = jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0))
  out = jaxrnn.dense(K, activation=jax.nn.sigmoid, bias=output_bias)
  assert jaxrnn.output_size(cell, params, I) == C * S  # the readout sees exactly the cells
  out_params = jax.eval_shape(lambda k: out.init(k, C * S), jax.random.key(1))
  return count(params) + count(out_params)


@pytest.mark.parametrize(
  ("experiment", "C", "S", "I", "K", "bias", "output_bias", "paper"),
  [
    ("Exp 4/5 adding, multiplication", 2, 2, 2, 1, "all", True, 93),
    ("Exp 6a temporal order", 2, 2, 8, 4, "all", True, 156),
    ("Exp 6b temporal order", 3, 2, 8, 8, "all", True, 308),
    ("Exp 1 Reber 4x1", 4, 1, 7, 7, "gates", False, 264),
    ("Exp 1 Reber 3x2", 3, 2, 7, 7, "gates", False, 276),
    ("Exp 3 two-sequence", 3, 1, 1, 1, "all", False, 102),
    ("Exp 2c p=50", 2, 1, 50 + 4, 2, "none", False, 364),
    ("Exp 2c p=100", 2, 1, 100 + 4, 2, "none", False, 664),
  ],
)
def test_weight_counts_match_the_paper(experiment, C, S, I, K, bias, output_bias, paper):
  assert paper_net_count(C, S, I, K, bias=bias, output_bias=output_bias) == paper, experiment


@pytest.mark.parametrize(("C", "S", "I", "K"), [(1, 1, 1, 1), (2, 2, 2, 1), (3, 2, 8, 8), (4, 3, 5, 2), (2, 4, 3, 6)])
def test_weight_count_formula(C, S, I, K):
  H = C * (S + 2)  # cells, input gates and output gates
  assert paper_net_count(C, S, I, K, bias="all") == H * (I + H + 1) + K * (C * S + 1)


def test_init_ranges_and_gate_biases():
  cell = jaxrnn.lstm1997(3, 2, init_scale=0.2, input_gate_bias=(-1.0, -3.0, -5.0), output_gate_bias=(-2, -4, -6))
  params = cell.init(jax.random.key(0), 4)
  np.testing.assert_array_equal(params.b_in, [-1.0, -3.0, -5.0])
  np.testing.assert_array_equal(params.b_out, [-2.0, -4.0, -6.0])
  for w in (params.w_x, params.w_h, params.b_cell):
    assert np.all(np.abs(w) <= 0.2) and np.abs(w).max() > 0.1  # uniform in [-0.2, 0.2], not all tiny
  # Random gate biases are uniform too; with bias="gates" the cells have none.
  p = jaxrnn.lstm1997(4, 1, bias="gates", init_scale=0.1, output_gate_bias=(-1, -2, -3, -4)).init(jax.random.key(1), 7)
  assert p.b_cell is None and np.all(np.abs(p.b_in) <= 0.1)
  np.testing.assert_array_equal(p.b_out, [-1.0, -2.0, -3.0, -4.0])


def test_squashes_and_carry_layout():
  """g in [-2, 2], h in [-1, 1]; the carry holds s and every hidden activation [cells, in gates, out gates]."""
  C, S, I = 2, 2, 2
  cell = jaxrnn.lstm1997(C, S)
  params = jax.tree.map(lambda a: 50.0 * a, cell.init(jax.random.key(0), I))  # saturate every unit
  xs = 10.0 * jax.random.normal(jax.random.key(1), (7, 3, I))
  carry, ys = jax.jit(lambda p, xs: jaxrnn.unroll(cell, p, xs))(params, xs)
  chex.assert_shape((carry.s, carry.y, ys), ((3, C * S), (3, C * (S + 2)), (7, 3, C * S)))
  np.testing.assert_allclose(carry.y[:, : C * S], ys[-1])  # cell outputs come first in the carry
  gates = carry.y[:, C * S :]
  assert np.all((gates >= 0) & (gates <= 1))
  assert np.all(np.abs(ys) <= 1.0)
  # Each step adds y_in * g(net_c) with |g| <= 2 to a state that starts at 0, so |s(T)| <= 2 T; saturated
  # inputs make some cell exceed what a squash in [-1, 1] could reach.
  assert np.all(np.abs(carry.s) <= 2.0 * 7) and np.abs(carry.s).max() > 7.0


def test_named_squash_options():
  """Exp 2a/2b: logistic cell input in [0, 1] and identity output: then y_c = s when there is no output gate."""
  cell = jaxrnn.lstm1997(1, 1, output_gate=False, cell_input_squash="logistic", cell_output_squash="identity")
  params = cell.init(jax.random.key(0), 3)
  xs = jax.random.normal(jax.random.key(1), (6, 3))
  carry, ys = jaxrnn.unroll(cell, params, xs)
  np.testing.assert_allclose(ys[-1], carry.s, rtol=1e-6)
  increments = np.diff(np.concatenate([np.zeros((1, 1)), np.asarray(ys)]), axis=0)
  assert np.all((increments >= 0) & (increments <= 1))  # y_in * sigmoid(net) in [0, 1]
  custom = jaxrnn.lstm1997(1, 1, output_gate=False, cell_input_squash=jnp.tanh, cell_output_squash="identity")
  c2, _ = jaxrnn.unroll(custom, params, xs)
  assert not np.allclose(c2.s, carry.s)


# ----------------------------------------------------------------------------
# The truncated gradient of Appendix A, by the paper's own algorithm.


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def truncated_gradient_reference(params, w_out, b_out, xs, targets, scored, *, C, S, output_gate, bias):
  """The paper's truncated gradient of ``E = sum_t scored_t * 1/2 sum_k (o_k(t) - target_k(t))^2``.

  Returns the gradient as ``(LSTM1997Params, w_out, b_out)`` in float64.
  """
  T, I = xs.shape
  CS = C * S
  U = CS + C + (C if output_gate else 0)
  IN, OUT = CS, CS + C  # offsets of the input and output gates among the hidden units
  b_row = np.zeros(U)  # the bias unit's weights (zero where the unit has no bias)
  if bias == "all":
    b_row[:CS] = params.b_cell
  if bias != "none":
    b_row[IN : IN + C] = params.b_in
    if output_gate:
      b_row[OUT:] = params.b_out
  W = np.concatenate([params.w_x, params.w_h, b_row[None]])  # (M, U): sources m = [inputs, hidden(t-1), bias]

  s = np.zeros(CS)
  y_prev = np.zeros(U)
  ds_dw_cell = np.zeros((W.shape[0], CS))  # ds_c / dw_{c,m}: each cell's own incoming weights
  ds_dw_in = np.zeros((W.shape[0], CS))  # ds_{c_j^v} / dw_{in_j,m}
  gW = np.zeros_like(W)
  gw_out, gb_out = np.zeros_like(w_out), np.zeros_like(b_out)
  for t in range(T):
    y_m = np.concatenate([xs[t], y_prev, [1.0]])  # inputs at t, every hidden activation at t-1
    net = y_m @ W
    y_in = sigmoid(net[IN : IN + C])
    y_out = sigmoid(net[OUT : OUT + C]) if output_gate else np.ones(C)
    y_c = np.zeros(CS)
    for j in range(C):
      for v in range(S):
        c = j * S + v
        g = 4.0 * sigmoid(net[c]) - 2.0
        g_prime = 4.0 * sigmoid(net[c]) * (1.0 - sigmoid(net[c]))
        f_in_prime = y_in[j] * (1.0 - y_in[j])
        ds_dw_cell[:, c] += g_prime * y_in[j] * y_m
        ds_dw_in[:, c] += g * f_in_prime * y_m
        s[c] += y_in[j] * g
        y_c[c] = y_out[j] * (2.0 * sigmoid(s[c]) - 1.0)
    if scored[t]:
      o = sigmoid(y_c @ w_out + b_out)
      delta = (o - targets[t]) * o * (1.0 - o)  # error at the output units' net inputs
      gw_out += np.outer(y_c, delta)
      gb_out += delta
      e_c = w_out @ delta  # dE/dy_c(t)
      for j in range(C):
        if output_gate:  # output gates: the immediate error only
          e_out = sum(e_c[j * S + v] * (2.0 * sigmoid(s[j * S + v]) - 1.0) for v in range(S))
          gW[:, OUT + j] += e_out * y_out[j] * (1.0 - y_out[j]) * y_m
        for v in range(S):
          c = j * S + v
          e_s = e_c[c] * y_out[j] * 2.0 * sigmoid(s[c]) * (1.0 - sigmoid(s[c]))  # dE/ds_c(t), immediate
          gW[:, c] += e_s * ds_dw_cell[:, c]
          gW[:, IN + j] += e_s * ds_dw_in[:, c]
    y_prev = np.concatenate([y_c, y_in] + ([y_out] if output_gate else []))

  b_grad = gW[-1]
  grads = jaxrnn.LSTM1997Params(
    w_x=gW[:I],
    w_h=gW[I : I + U],
    b_cell=b_grad[:CS] if bias == "all" else None,
    b_in=b_grad[IN : IN + C] if bias != "none" else None,
    b_out=b_grad[OUT:] if bias != "none" and output_gate else None,
  )
  return grads, gw_out, gb_out


def readout_loss(cell, out):
  def loss(params, out_params, xs, targets, scored):
    _, y_c = jaxrnn.unroll(cell, params, xs)
    o = out.apply(out_params, y_c)
    return 0.5 * jnp.sum(scored[:, None] * (o - targets) ** 2)

  return loss


@pytest.mark.parametrize(
  ("output_gate", "bias", "output_bias"), [(True, "all", True), (True, "gates", False), (False, "all", True)]
)
def test_truncated_gradient_equals_the_papers_rule(output_gate, bias, output_bias):
  C, S, I, K, T = 2, 2, 2, 2, 4
  with jax.enable_x64(True):
    kwargs = {"output_gate": output_gate, "bias": bias, "param_dtype": jnp.float64}
    cell = jaxrnn.lstm1997(C, S, init_scale=1.0, truncated_gradient=True, **kwargs)
    full = jaxrnn.lstm1997(C, S, **kwargs)  # the same weights without truncation
    out = jaxrnn.dense(K, activation=jax.nn.sigmoid, bias=output_bias, param_dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)  # weights uniform in [-1, 1]: large enough for every path to matter
    out_params = out.init(jax.random.key(1), C * S)
    if output_bias:
      out_params = out_params._replace(b=jnp.asarray([0.3, -0.2]))
    rng = np.random.default_rng(2)
    xs = jnp.asarray(rng.standard_normal((T, I)))
    targets = jnp.asarray(rng.uniform(size=(T, K)))

    @jax.jit
    def gradients(scored):
      args = (params, out_params, xs, targets, scored)
      truncated = jax.grad(readout_loss(cell, out), argnums=(0, 1))(*args)
      return truncated, jax.grad(readout_loss(full, out), argnums=(0, 1))(*args)

    # Scored at every step, at the last step only (as in Exp 2b-6), and at some steps.
    for scored in (np.ones(T), np.eye(T)[-1], np.array([0.0, 1.0, 0.0, 1.0])):
      (got_cell, got_out), (full_cell, _) = gradients(jnp.asarray(scored))
      ref_cell, ref_w_out, ref_b_out = truncated_gradient_reference(
        jax.tree.map(np.asarray, params),
        np.asarray(out_params.w),
        np.asarray(out_params.b) if output_bias else np.zeros(K),
        np.asarray(xs),
        np.asarray(targets),
        scored,
        C=C,
        S=S,
        output_gate=output_gate,
        bias=bias,
      )
      chex.assert_trees_all_close(got_cell, ref_cell, rtol=1e-9, atol=1e-12)
      np.testing.assert_allclose(got_out.w, ref_w_out, rtol=1e-9, atol=1e-12)
      if output_bias:
        np.testing.assert_allclose(got_out.b, ref_b_out, rtol=1e-9, atol=1e-12)
      else:
        assert got_out.b is None
      # The truncation matters here: the full gradient is different.
      assert not np.allclose(full_cell.w_h, ref_cell.w_h, rtol=1e-3, atol=1e-6)
      assert not np.allclose(full_cell.w_x, ref_cell.w_x, rtol=1e-3, atol=1e-6)
    # The forward pass is the same with and without truncation.
    forward = jax.jit(lambda: (jaxrnn.unroll(full, params, xs), jaxrnn.unroll(cell, params, xs)))
    chex.assert_trees_all_close(*forward(), rtol=1e-12)


def test_truncated_gradient_flows_back_only_through_the_cell_states():
  """An input at t=0 reaches s(T) by the carousel, and only by its own step's increment y_in g(net_c)."""
  with jax.enable_x64(True):
    kwargs = {"init_scale": 1.0, "param_dtype": jnp.float64}
    cell = jaxrnn.lstm1997(2, 2, truncated_gradient=True, **kwargs)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((6, 2)))

    def s_sum(cell, xs):
      return jnp.sum(jaxrnn.unroll(cell, params, xs)[0].s)

    dx = jax.grad(lambda xs: s_sum(cell, xs))(xs)
    first_step = jax.grad(lambda x0: s_sum(cell, x0[None]))(xs[0])
    assert np.all(np.abs(first_step) > 1e-3)
    np.testing.assert_allclose(dx[0], first_step, rtol=1e-12)
    # The full gradient also flows through the activations fed back at every step, so it differs.
    full = jax.grad(lambda xs: s_sum(jaxrnn.lstm1997(2, 2, **kwargs), xs))(xs)
    assert not np.allclose(full[0], first_step, rtol=1e-3)
