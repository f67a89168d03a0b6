"""Every cell through the same tests: scan vs step loop, jit, shapes, gradients, vmap, numpy references.

The numpy references restate each cell's equations (the docstrings, and the
1997 paper for ``lstm1997``) gate by gate; they never call jaxrnn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn

T, I, H = 5, 3, 4  # time steps, input size, hidden size
BATCH = (2,)


# ----------------------------------------------------------------------------
# numpy references, one step each: step(params, carry, x) -> (carry, y), batched over leading axes.


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def relu(x):
  return np.maximum(x, 0.0)


def split_gates(a, names, size):
  """``{name: a[..., k*size:(k+1)*size]}`` for a fused last axis."""
  return {n: a[..., k * size : (k + 1) * size] for k, n in enumerate(names)}


def ref_elman(act, bias):
  def step(p, h, x):
    z = x @ p.w_x + h @ p.w_h
    if bias:
      z = z + p.b
    h = act(z)
    return h, h

  return step


def ref_gru(reset_after):
  def step(p, h, x):
    wx, wh, b = split_gates(p.w_x, "rzn", H), split_gates(p.w_h, "rzn", H), split_gates(p.b, "rzn", H)
    r = sigmoid(x @ wx["r"] + h @ wh["r"] + b["r"])
    z = sigmoid(x @ wx["z"] + h @ wh["z"] + b["z"])
    if reset_after:
      n = np.tanh(x @ wx["n"] + b["n"] + r * (h @ wh["n"] + p.b_hn))
    else:
      n = np.tanh(x @ wx["n"] + (r * h) @ wh["n"] + b["n"])
    h = (1.0 - z) * n + z * h
    return h, h

  return step


def ref_mgu(reset_gate):
  def step(p, h, x):
    wx, wh, b = split_gates(p.w_x, "fn", H), split_gates(p.w_h, "fn", H), split_gates(p.b, "fn", H)
    f = sigmoid(x @ wx["f"] + b["f"] + h @ wh["f"])
    if reset_gate:
      n = np.tanh(x @ wx["n"] + b["n"] + f * (h @ wh["n"] + p.b_hn))
    else:
      n = np.tanh(x @ wx["n"] + b["n"] + h @ wh["n"])
    h = (1.0 - f) * n + f * h
    return h, h

  return step


def layer_norm(v, p, eps=1e-5):
  """Ba et al. (2016): normalise over the last axis, then gain and shift."""
  mean = v.mean(-1, keepdims=True)
  return (v - mean) / np.sqrt(((v - mean) ** 2).mean(-1, keepdims=True) + eps) * p.scale + p.shift


def ref_lstm(forget_gate, peepholes, norm=False, proj=False):
  names = "ifgo" if forget_gate else "igo"

  def step(p, carry, x):
    h, c = carry
    if norm:  # each product normalised over all its gates, then split
      zx, zh = layer_norm(x @ p.w_x, p.norm.x), layer_norm(h @ p.w_h, p.norm.h)
    else:
      zx, zh = x @ p.w_x, h @ p.w_h
    zx, zh, b = split_gates(zx, names, H), split_gates(zh, names, H), split_gates(p.b, names, H)
    pre = {n: zx[n] + zh[n] + b[n] for n in names}
    if peepholes:  # rows of w_peep: i, (f,) o
      pre["i"] = pre["i"] + p.w_peep[0] * c
      if forget_gate:
        pre["f"] = pre["f"] + p.w_peep[1] * c
    i, g = sigmoid(pre["i"]), np.tanh(pre["g"])
    c_new = (sigmoid(pre["f"]) * c if forget_gate else c) + i * g
    zo = pre["o"] + (p.w_peep[-1] * c_new if peepholes else 0.0)
    h_new = sigmoid(zo) * np.tanh(layer_norm(c_new, p.norm.c) if norm else c_new)
    if proj:  # Sak et al. 2014: the output and the recurrent state are projected to P units
      h_new = h_new @ p.w_proj
    return jaxrnn.LSTMCarry(h_new, c_new), h_new  # the carry keeps c' itself, not LN(c')

  return step


def g_paper(x):
  return 4.0 * sigmoid(x) - 2.0


def h_paper(x):
  return 2.0 * sigmoid(x) - 1.0


def ref_lstm1997(C, S, output_gate, bias):
  """The 1997 step, unit by unit: hidden units are [cells (block-major), input gates, output gates]."""
  CS = C * S
  U = CS + C + (C if output_gate else 0)

  def step(p, carry, x):
    s_prev, y_prev = carry
    b = np.zeros(U)
    if bias == "all":
      b[:CS] = p.b_cell
    if bias != "none":
      b[CS : CS + C] = p.b_in
      if output_gate:
        b[CS + C :] = p.b_out
    # Every unit sees the inputs at t and every hidden activation (cells and gates) at t-1.
    net = x @ p.w_x + y_prev @ p.w_h + b
    s = np.array(s_prev, copy=True)
    y_c = np.zeros_like(s)
    y_in = np.stack([sigmoid(net[..., CS + j]) for j in range(C)], axis=-1)
    y_out = np.stack([sigmoid(net[..., CS + C + j]) for j in range(C)], axis=-1) if output_gate else None
    for j in range(C):
      for v in range(S):
        u = j * S + v
        s[..., u] = s_prev[..., u] + y_in[..., j] * g_paper(net[..., u])
        y_c[..., u] = (y_out[..., j] if output_gate else 1.0) * h_paper(s[..., u])
    y = np.concatenate([y_c, y_in] + ([y_out] if output_gate else []), axis=-1)
    return jaxrnn.LSTM1997Carry(s, y), y_c

  return step


# ----------------------------------------------------------------------------
# The catalogue: every cell variant, its numpy step, output size and parameter shapes.


class Spec(NamedTuple):
  cell: jaxrnn.Cell
  reference: Callable[..., Any]
  out_size: int
  param_shapes: dict[str, tuple[int, ...] | None]
  truncated: bool = False


def _lstm1997_spec(output_gate=True, bias="all", truncated=False):
  C, S = 2, 2
  U = C * (S + 2) if output_gate else C * (S + 1)
  return Spec(
    jaxrnn.lstm1997(C, S, output_gate=output_gate, bias=bias, truncated_gradient=truncated),
    ref_lstm1997(C, S, output_gate, bias),
    C * S,
    {
      "w_x": (I, U),
      "w_h": (U, U),
      "b_cell": (C * S,) if bias == "all" else None,
      "b_in": (C,) if bias != "none" else None,
      "b_out": (C,) if bias != "none" and output_gate else None,
    },
    truncated,
  )


PJ = 2  # proj_size of the projected LSTMs


def _lstm_shapes(G, peepholes, norm=False, proj=False):
  ln = lambda n: jaxrnn.LayerNormParams((n,), (n,))  # noqa: E731
  return {
    "w_x": (I, G * H),
    "w_h": (PJ if proj else H, G * H),
    "b": (G * H,),
    "w_peep": (G - 1, H) if peepholes else None,
    "norm": jaxrnn.LSTMNorm(ln(G * H), ln(G * H), ln(H)) if norm else None,
    "w_proj": (H, PJ) if proj else None,
  }


SPECS: dict[str, Spec] = {
  "elman_tanh": Spec(jaxrnn.elman(H), ref_elman(np.tanh, True), H, {"w_x": (I, H), "w_h": (H, H), "b": (H,)}),
  "elman_relu": Spec(
    jaxrnn.elman(H, nonlinearity="relu"), ref_elman(relu, True), H, {"w_x": (I, H), "w_h": (H, H), "b": (H,)}
  ),
  "elman_no_bias": Spec(
    jaxrnn.elman(H, bias=False), ref_elman(np.tanh, False), H, {"w_x": (I, H), "w_h": (H, H), "b": None}
  ),
  "gru_reset_after": Spec(
    jaxrnn.gru(H), ref_gru(True), H, {"w_x": (I, 3 * H), "w_h": (H, 3 * H), "b": (3 * H,), "b_hn": (H,)}
  ),
  "gru_reset_before": Spec(
    jaxrnn.gru(H, reset_after=False),
    ref_gru(False),
    H,
    {"w_x": (I, 3 * H), "w_h": (H, 3 * H), "b": (3 * H,), "b_hn": None},
  ),
  "mgu_reset_gate": Spec(
    jaxrnn.mgu(H), ref_mgu(True), H, {"w_x": (I, 2 * H), "w_h": (H, 2 * H), "b": (2 * H,), "b_hn": (H,)}
  ),
  "mgu_no_reset_gate": Spec(
    jaxrnn.mgu(H, reset_gate=False),
    ref_mgu(False),
    H,
    {"w_x": (I, 2 * H), "w_h": (H, 2 * H), "b": (2 * H,), "b_hn": None},
  ),
  "lstm": Spec(jaxrnn.lstm(H), ref_lstm(True, False), H, _lstm_shapes(4, False)),
  "lstm_no_forget_gate": Spec(jaxrnn.lstm(H, forget_gate=False), ref_lstm(False, False), H, _lstm_shapes(3, False)),
  "lstm_peepholes": Spec(jaxrnn.lstm(H, peepholes=True), ref_lstm(True, True), H, _lstm_shapes(4, True)),
  "lstm_peepholes_no_forget_gate": Spec(
    jaxrnn.lstm(H, peepholes=True, forget_gate=False), ref_lstm(False, True), H, _lstm_shapes(3, True)
  ),
  "lstm_layer_norm": Spec(
    jaxrnn.lstm(H, layer_norm=True), ref_lstm(True, False, True), H, _lstm_shapes(4, False, True)
  ),
  "lstm_proj": Spec(
    jaxrnn.lstm(H, proj_size=PJ), ref_lstm(True, False, proj=True), PJ, _lstm_shapes(4, False, proj=True)
  ),
  "lstm_proj_layer_norm_peepholes": Spec(  # the reference path (the fast path has no such kernel)
    jaxrnn.lstm(H, proj_size=PJ, layer_norm=True, peepholes=True),
    ref_lstm(True, True, True, proj=True),
    PJ,
    _lstm_shapes(4, True, True, proj=True),
  ),
  "lstm_layer_norm_peepholes_no_forget_gate": Spec(
    jaxrnn.lstm(H, layer_norm=True, peepholes=True, forget_gate=False),
    ref_lstm(False, True, True),
    H,
    _lstm_shapes(3, True, True),
  ),
  "lstm1997": _lstm1997_spec(),
  "lstm1997_no_output_gate": _lstm1997_spec(output_gate=False),
  "lstm1997_bias_gates": _lstm1997_spec(bias="gates"),
  "lstm1997_bias_none": _lstm1997_spec(bias="none"),
  "lstm1997_no_output_gate_bias_gates": _lstm1997_spec(output_gate=False, bias="gates"),
  "lstm1997_truncated": _lstm1997_spec(truncated=True),
}
NAMES = sorted(SPECS)


def random_tree(tree, rng, scale):
  """A pytree like ``tree`` (arrays or ShapeDtypeStructs) with normal(0, scale) leaves, drawn by numpy."""
  return jax.tree.map(lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), tree)


def sample(name: str, seed: int, batch_shape=BATCH, steps=T):
  """Random params (every bias and peephole nonzero), inputs and initial carry for cell ``name``."""
  cell = SPECS[name].cell
  rng = np.random.default_rng(seed)
  params = random_tree(jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)), rng, 0.5)
  xs = jnp.asarray(rng.standard_normal((steps, *batch_shape, I)), jnp.float32)
  carry = random_tree(jax.eval_shape(lambda: cell.initial_carry(batch_shape)), rng, 0.5)
  return params, xs, carry


def step_loop(apply, params, xs, carry):
  """``cell.apply`` (here one compiled step) called from a Python loop."""
  ys = []
  for t in range(xs.shape[0]):
    carry, y = apply(params, carry, xs[t])
    ys.append(y)
  return carry, jnp.stack(ys)


# One compiled unroll per cell and shape, shared by the tests of that cell (they run on one xdist worker).
unroll_jit = jax.jit(jaxrnn.unroll, static_argnums=0)
TOL = {"rtol": 1e-5, "atol": 1e-6}


def each_cell(names=NAMES):
  return pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xdist_group(f"cell-{n}")) for n in names])


# ----------------------------------------------------------------------------


@each_cell()
def test_param_structure(name):
  spec = SPECS[name]
  params = jax.eval_shape(lambda k: spec.cell.init(k, I), jax.random.key(0))
  shapes = {k: (None if v is None else jax.tree.map(lambda a: a.shape, v)) for k, v in params._asdict().items()}
  assert shapes == spec.param_shapes
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


@each_cell()
def test_unroll_equals_step_loop_with_and_without_jit(name):
  cell = SPECS[name].cell
  chex.clear_trace_counter()  # the counter keys on the source of `run`, the same for every cell

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(params, xs, carry):
    return jaxrnn.unroll(cell, params, xs, carry), jaxrnn.unroll(cell, params, xs)

  zeros = cell.initial_carry(BATCH)
  chex.assert_trees_all_close(zeros, jax.tree.map(jnp.zeros_like, sample(name, 0)[2]))
  apply = jax.jit(cell.apply)
  for seed in (0, 1):  # new values with the same shapes: no retrace
    params, xs, carry = sample(name, seed)
    want = step_loop(apply, params, xs, carry)
    got, got_from_zeros = run(params, xs, carry)
    chex.assert_trees_all_close(got, want, **TOL)
    # Without an initial carry, unroll starts from initial_carry: zeros.
    chex.assert_trees_all_close(got_from_zeros, step_loop(apply, params, xs, zeros), **TOL)
  chex.assert_trees_all_close(jaxrnn.unroll(cell, params, xs, carry), want, **TOL)  # eager


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@each_cell()
def test_shapes(name, batch_shape):
  spec = SPECS[name]
  cell = spec.cell
  carry0 = cell.initial_carry(batch_shape)
  for leaf in jax.tree.leaves(carry0):
    assert leaf.shape == (*batch_shape, leaf.shape[-1]) and leaf.dtype == jnp.float32

  def shapes(params, xs):
    xs_bm = jnp.moveaxis(xs, 0, -2)
    return (
      jaxrnn.unroll(cell, params, xs),
      cell.apply(params, carry0, xs[0]),
      jaxrnn.unroll(cell, params, xs_bm, time_major=False),
    )

  params = jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0))
  xs = jax.ShapeDtypeStruct((T, *batch_shape, I), jnp.float32)
  (carry, ys), (step_carry, y), (carry_bm, ys_bm) = jax.eval_shape(shapes, params, xs)
  chex.assert_shape(ys, (T, *batch_shape, spec.out_size))
  chex.assert_shape(y, (*batch_shape, spec.out_size))
  chex.assert_shape(ys_bm, (*batch_shape, T, spec.out_size))
  for c in (carry, step_carry, carry_bm):
    chex.assert_trees_all_equal_shapes_and_dtypes(c, carry0)
  assert ys.dtype == y.dtype == ys_bm.dtype == jnp.float32


@each_cell()
def test_grads_match_finite_differences(name):
  spec = SPECS[name]
  cell = spec.cell
  with jax.enable_x64(True):
    if spec.truncated:
      # The truncated gradient is not the derivative of the forward pass over several steps (see
      # test_lstm1997 for its own reference); over one step from a fixed carry the two agree.
      params, xs, carry = jax.tree.map(lambda a: a.astype(jnp.float64), sample(name, 0, steps=1))
      f = jax.jit(lambda p, xs: jaxrnn.unroll(cell, p, xs, carry))
      check_grads(f, (params, xs), order=1, modes=("fwd", "rev"))
    else:
      params, xs, carry = jax.tree.map(lambda a: a.astype(jnp.float64), sample(name, 0))
      f = jax.jit(lambda *a: jaxrnn.unroll(cell, *a))
      check_grads(f, (params, xs, carry), order=1, modes=("fwd", "rev"))


@each_cell()
def test_vmap_over_parameter_sets(name):
  cell = SPECS[name].cell
  stacked_params = jax.vmap(cell.init, in_axes=(0, None))(jax.random.split(jax.random.key(3), 8), I)
  _, xs, carry = sample(name, 0)
  got = jax.jit(jax.vmap(lambda p: jaxrnn.unroll(cell, p, xs, carry)))(stacked_params)
  for n in range(8):
    params_n = jax.tree.map(lambda a, n=n: a[n], stacked_params)
    chex.assert_trees_all_close(jax.tree.map(lambda a, n=n: a[n], got), unroll_jit(cell, params_n, xs, carry), **TOL)
  # The 8 sets really differ, so this is not a comparison of 8 copies of one result.
  assert not np.allclose(got[1][0], got[1][1])


@each_cell()
def test_matches_numpy_reference(name):
  spec = SPECS[name]
  params, xs, carry = sample(name, 4)
  np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  np_carry = jax.tree.map(lambda a: np.asarray(a, np.float64), carry)
  ys = []
  for x in np.asarray(xs, np.float64):
    np_carry, y = spec.reference(np_params, np_carry, x)
    ys.append(y)
  got_carry, got_ys = unroll_jit(spec.cell, params, xs, carry)
  np.testing.assert_allclose(got_ys, np.stack(ys), rtol=2e-5, atol=2e-5)
  chex.assert_trees_all_close(got_carry, np_carry, rtol=2e-5, atol=2e-5)
  assert np.abs(np.stack(ys)).max() > 1e-2  # not a comparison of near-zero outputs


def test_layer_norm_lstm_starts_as_plain_normalisation_and_has_no_fast_path_with_peepholes():
  cell = jaxrnn.lstm(H, layer_norm=True)
  params = cell.init(jax.random.key(0), I)
  for ln in params.norm:  # gains 1, shifts 0
    np.testing.assert_array_equal(ln.scale, 1.0)
    np.testing.assert_array_equal(ln.shift, 0.0)
  xs = jnp.ones((T, *BATCH, I))
  peep = jaxrnn.lstm(H, layer_norm=True, peepholes=True)
  with pytest.raises(jaxrnn.InputError, match="impl='fused'"):
    jaxrnn.unroll(peep, peep.init(jax.random.key(0), I), xs, impl="fused")
  with pytest.raises(jaxrnn.InputError, match="params.norm is None, but this cell needs a LSTMNorm"):
    jaxrnn.unroll(cell, jaxrnn.lstm(H).init(jax.random.key(0), I), xs)
  with pytest.raises(jaxrnn.InputError, match="norm_eps must be a number > 0, got 0"):
    jaxrnn.lstm(H, layer_norm=True, norm_eps=0)
