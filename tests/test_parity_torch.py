"""Parity with PyTorch: `jaxrnn.interop.from_torch` layers compute torch's outputs, final states and gradients.

Every comparison is float32 at atol = rtol = 1e-5. torch's weight gradients
are mapped to jaxrnn's layout here, independently of the converter: kernels
transposed; RNN and LSTM ``bias_ih`` and ``bias_hh`` have equal gradients
(they enter the same sum), which equal the gradient of the folded ``b``; the
GRU's ``bias_hh`` r, z parts equal ``b``'s and its n part is ``b_hn``'s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import jaxrnn
from jaxrnn import interop

torch.set_num_threads(1)  # the test machines are small and shared
# torch runs an LSTM with a projection without oneDNN, and says so on every call.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

T, B, I, H = 5, 3, 4, 6
TOL = dict(atol=1e-5, rtol=1e-5)
# LLVM's optimisation level changes how fast the compiled code runs, not what it computes; level 0 halves the
# compile time of these small functions, which dominates this file's run time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
LENGTHS = np.array([5, 2, 3])  # includes T (torch's padded output then has T steps) and a short one

KINDS = {
  "rnn_tanh": lambda **kw: torch.nn.RNN(I, H, nonlinearity="tanh", **kw),
  "rnn_relu": lambda **kw: torch.nn.RNN(I, H, nonlinearity="relu", **kw),
  "gru": lambda **kw: torch.nn.GRU(I, H, **kw),
  "lstm": lambda **kw: torch.nn.LSTM(I, H, **kw),
}
P = 3  # proj_size of the LSTM with a projection (Sak et al. 2014): outputs and h of size P, c of size H
PROJ_KINDS = {"lstm_proj": lambda **kw: torch.nn.LSTM(I, H, proj_size=P, **kw)}


def _out_size(kind: str) -> int:
  return P if kind == "lstm_proj" else H


# Each configuration exercises several options at once to keep the number of compilations down.
CONFIGS = {
  "single": {},  # a jaxrnn.Cell through jaxrnn.unroll
  "single_no_bias_batch_first": dict(bias=False, batch_first=True),  # unroll(time_major=False)
  "bidirectional": dict(bidirectional=True),  # a Layer: stacked(bidirectional(cell, cell))
  "multi_bidirectional": dict(num_layers=2, bidirectional=True),
  "multi_no_bias_batch_first": dict(num_layers=3, bias=False, batch_first=True),
}


def _make(kind: str, seed: int = 0, **config) -> torch.nn.Module:
  torch.manual_seed(seed)
  return {**KINDS, **PROJ_KINDS}[kind](**config)  # torch's default init: every weight and bias uniform in +-1/sqrt(H)


def _np(t: torch.Tensor) -> np.ndarray:
  return t.detach().numpy()


def _close(actual, expected, what: str) -> None:
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), err_msg=what, **TOL)


def _torch_grads_in_jaxrnn_layout(module: torch.nn.Module, kind: str) -> tuple:
  """torch's parameter gradients as the tree of jaxrnn params `from_torch` returns (before any reshaping)."""
  directions = ("", "_reverse") if module.bidirectional else ("",)

  def one(tail: str):
    def g(name):
      return _np(getattr(module, name + tail).grad)

    w_x, w_h = g("weight_ih").T, g("weight_hh").T
    b = b_hn = None
    if module.bias:
      b_ih, b_hh = g("bias_ih"), g("bias_hh")
      if kind == "gru":
        _close(b_hh[: 2 * H], b_ih[: 2 * H], f"bias_hh r,z grad equals bias_ih's{tail}")
        b, b_hn = b_ih, b_hh[2 * H :]
      else:
        _close(b_hh, b_ih, f"bias_hh grad equals bias_ih's{tail}")
        b = b_ih
    if kind == "gru":
      return jaxrnn.GRUParams(w_x, w_h, b, b_hn)
    if kind.startswith("lstm"):
      w_proj = g("weight_hr").T if kind == "lstm_proj" else None
      return jaxrnn.LSTMParams(w_x, w_h, b, None, None, w_proj)
    return jaxrnn.ElmanParams(w_x, w_h, b)

  layers = []
  for k in range(module.num_layers):
    per_dir = tuple(one(f"_l{k}{d}") for d in directions)
    layers.append(per_dir if module.bidirectional else per_dir[0])
  if module.num_layers == 1 and not module.bidirectional:
    return layers[0]
  return tuple(layers)


def _jax_loss_fn(layer, batch_first: bool):
  """A jitted ``(params, xs, carry, lengths, r_out, r_state) -> ((loss, (ys, state)), grads)``."""

  def loss(params, xs, carry, lengths, r_out, r_state):
    if isinstance(layer, jaxrnn.Cell):
      final, ys = jaxrnn.unroll(layer, params, xs, carry, lengths=lengths, time_major=not batch_first)
    else:
      final, ys = layer.apply(params, xs, carry, lengths=lengths)
    state = interop.to_torch_state(final)
    state = state if isinstance(state, tuple) else (state,)
    total = jnp.sum(ys * r_out) + sum(jnp.sum(s * r) for s, r in zip(state, r_state, strict=True))
    return total, (ys, state)

  return _jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _check_parity(kind: str, config: dict, *, lengths: np.ndarray | None, with_h0: bool) -> None:
  module = _make(kind, **config)
  layer, params = interop.from_torch(module)
  bf = module.batch_first
  L, D = module.num_layers, 2 if module.bidirectional else 1
  rng = np.random.default_rng(1)
  xs = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(np.float32)
  lstm, out = kind.startswith("lstm"), _out_size(kind)
  out_shape = (B, T, D * out) if bf else (T, B, D * out)
  r_out = rng.standard_normal(out_shape).astype(np.float32)
  state_sizes = (out, H) if lstm else (H,)  # h_n (and c_n)
  r_state = tuple(rng.standard_normal((L * D, B, n)).astype(np.float32) for n in state_sizes)
  h0 = tuple(rng.standard_normal((L * D, B, n)).astype(np.float32) for n in state_sizes) if with_h0 else None

  # torch
  xs_t = torch.tensor(xs, requires_grad=True)
  h0_t = tuple(torch.tensor(h, requires_grad=True) for h in h0) if with_h0 else None
  inp = (
    xs_t if lengths is None else pack_padded_sequence(xs_t, torch.tensor(lengths), batch_first=bf, enforce_sorted=False)
  )
  if h0_t is None:
    out_t, state_t = module(inp)
  else:
    out_t, state_t = module(inp, h0_t if lstm else h0_t[0])
  if lengths is not None:
    out_t, _ = pad_packed_sequence(out_t, batch_first=bf, total_length=T)
  state_t = state_t if isinstance(state_t, tuple) else (state_t,)
  loss_t = (out_t * torch.tensor(r_out)).sum() + sum(
    (s * torch.tensor(r)).sum() for s, r in zip(state_t, r_state, strict=True)
  )
  loss_t.backward()

  # jaxrnn
  carry0 = None
  if with_h0:
    carry0 = interop.from_torch_state(h0 if lstm else h0[0], num_layers=L, bidirectional=module.bidirectional)
  fn = _jax_loss_fn(layer, bf)
  (loss, (ys, state)), (g_params, g_xs, g_carry) = fn(
    params, jnp.asarray(xs), carry0, None if lengths is None else jnp.asarray(lengths), r_out, r_state
  )

  _close(ys, _np(out_t), "outputs")
  assert len(state) == len(state_t)
  for name, s, s_t in zip(("h_n", "c_n"), state, state_t, strict=False):
    _close(s, _np(s_t), name)
  _close(loss, loss_t.item(), "loss")
  _close(g_xs, _np(xs_t.grad), "grad wrt the input")
  expected = _torch_grads_in_jaxrnn_layout(module, kind)
  assert jax.tree.structure(g_params) == jax.tree.structure(expected)
  for path, g, e in zip(
    [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(g_params)],
    jax.tree.leaves(g_params),
    jax.tree.leaves(expected),
    strict=True,
  ):
    _close(g, e, f"grad wrt params{path}")
  if with_h0:
    g_state = interop.to_torch_state(g_carry)
    g_state = g_state if isinstance(g_state, tuple) else (g_state,)
    for name, g, h in zip(("h_0", "c_0"), g_state, h0_t, strict=False):
      _close(g, _np(h.grad), f"grad wrt {name}")


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_states_and_gradients_equal_torch(kind, config):
  _check_parity(kind, config, lengths=None, with_h0=True)


@pytest.mark.parametrize(
  "config",
  [{}, dict(num_layers=2, bidirectional=True, batch_first=True)],
  ids=["single", "multi_bidirectional_batch_first"],
)
@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])  # relu differs from tanh only in the activation
def test_variable_lengths_equal_pack_padded_sequence(kind, config):
  _check_parity(kind, config, lengths=LENGTHS, with_h0=False)


# The LSTM with a projection: one cell (jaxrnn.unroll, the fast path) with an initial state, and a stacked
# bidirectional layer with variable lengths (its upper layer reads the projected outputs of both directions).
@pytest.mark.parametrize(
  ("config", "lengths", "with_h0"),
  [({}, None, True), (dict(num_layers=2, bidirectional=True, batch_first=True), LENGTHS, False)],
  ids=["single", "multi_bidirectional_batch_first_lengths"],
)
def test_lstm_with_projection_equals_torch(config, lengths, with_h0):
  _check_parity("lstm_proj", config, lengths=lengths, with_h0=with_h0)


@pytest.mark.parametrize("kind", KINDS)
def test_layer_structure(kind):
  cell, params = interop.from_torch(_make(kind))
  assert isinstance(cell, jaxrnn.Cell)
  expected_type = {"gru": jaxrnn.GRUParams, "lstm": jaxrnn.LSTMParams}.get(kind, jaxrnn.ElmanParams)
  assert isinstance(params, expected_type)
  G = {"gru": 3, "lstm": 4}.get(kind, 1)
  assert params.w_x.shape == (I, G * H) and params.w_h.shape == (H, G * H) and params.b.shape == (G * H,)
  assert params.w_x.dtype == jnp.float32

  layer, params = interop.from_torch(_make(kind, num_layers=2, bidirectional=True, bias=False))
  assert isinstance(layer, jaxrnn.Layer)
  assert len(params) == 2 and all(len(p) == 2 for p in params)
  assert params[1][0].w_x.shape == (2 * H, G * H)
  assert params[0][1].b is None


def test_params_are_copies():
  module = _make("lstm")
  _, params = interop.from_torch(module)
  before = np.array(params.w_x)
  with torch.no_grad():
    module.weight_ih_l0.add_(1.0)
  np.testing.assert_array_equal(np.asarray(params.w_x), before)


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
def test_dropout_eval_equals_torch_eval(kind):
  module = _make(kind, num_layers=2, dropout=0.5, batch_first=True).eval()
  layer, params = interop.from_torch(module)
  xs = torch.randn(B, T, I, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    out_t, _ = module(xs)
  apply = _jit(layer.apply)
  _, ys = apply(params, jnp.asarray(xs.numpy()))
  _close(ys, out_t.numpy(), "eval outputs")
  # With a key the layer drops (as torch in training mode): the module's dropout rate was carried over.
  _, ys_train = apply(params, jnp.asarray(xs.numpy()), key=jax.random.key(0))
  assert not np.allclose(np.asarray(ys_train), np.asarray(ys), **TOL)


def test_no_dropout_ignores_key():
  layer, params = interop.from_torch(_make("gru", num_layers=2))
  xs = jnp.asarray(np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32))
  ys, ys_key = _jit(lambda p, x: (layer.apply(p, x)[1], layer.apply(p, x, key=jax.random.key(0))[1]))(params, xs)
  np.testing.assert_array_equal(np.asarray(ys), np.asarray(ys_key))


@pytest.mark.parametrize(
  "make",
  [
    lambda: torch.nn.RNNCell(I, H, nonlinearity="tanh"),
    lambda: torch.nn.RNNCell(I, H, nonlinearity="relu"),
    lambda: torch.nn.GRUCell(I, H),
    lambda: torch.nn.LSTMCell(I, H),
    lambda: torch.nn.LSTMCell(I, H, bias=False),
  ],
  ids=["rnn_cell_tanh", "rnn_cell_relu", "gru_cell", "lstm_cell", "lstm_cell_no_bias"],
)
def test_torch_cells_step_by_step(make):
  torch.manual_seed(0)
  module = make()
  cell, params = interop.from_torch(module)
  xs = torch.randn(T, B, I, generator=torch.Generator().manual_seed(3))
  lstm = isinstance(module, torch.nn.LSTMCell)
  state = None
  outs = []
  with torch.no_grad():
    for t in range(T):
      state = module(xs[t], state)
      outs.append(state[0] if lstm else state)
  carry, ys = _jit(functools.partial(jaxrnn.unroll, cell))(params, jnp.asarray(xs.numpy()))
  _close(ys, torch.stack(outs).numpy(), "outputs")
  if lstm:
    _close(carry.h, state[0].numpy(), "h")
    _close(carry.c, state[1].numpy(), "c")
  else:
    _close(carry, state.numpy(), "h")


def test_state_helpers_round_trip():
  rng = np.random.default_rng(0)
  h = rng.standard_normal((4, B, H)).astype(np.float32)
  c = rng.standard_normal((4, B, H)).astype(np.float32)
  carry = interop.from_torch_state((torch.tensor(h), torch.tensor(c)), num_layers=2, bidirectional=True)
  assert isinstance(carry, tuple) and len(carry) == 2 and isinstance(carry[1][0], jaxrnn.LSTMCarry)
  np.testing.assert_array_equal(np.asarray(carry[1][0].c), c[2])  # layer 1 forward is torch's index 2
  h_n, c_n = interop.to_torch_state(carry)
  np.testing.assert_array_equal(np.asarray(h_n), h)
  np.testing.assert_array_equal(np.asarray(c_n), c)

  single = interop.from_torch_state(h[:1])
  assert single.shape == (B, H)
  np.testing.assert_array_equal(np.asarray(interop.to_torch_state(single)), h[:1])
  stacked = interop.from_torch_state(h[:3], num_layers=3)
  np.testing.assert_array_equal(np.asarray(interop.to_torch_state(stacked)), h[:3])


def test_errors_name_what_was_received():
  with pytest.raises(TypeError, match=r"torch\.nn\.RNN.*got torch\.nn\.modules\.linear\.Linear"):
    interop.from_torch(torch.nn.Linear(I, H))
  with pytest.raises(ValueError, match=r"state has shape \(2, 3, 6\), expected \(num_layers \* num_directions = 4"):
    interop.from_torch_state(np.zeros((2, B, H), np.float32), num_layers=2, bidirectional=True)
  with pytest.raises(ValueError, match="h_0 and c_0 must have the same shape but for the last axis"):
    interop.from_torch_state((np.zeros((1, B, H), np.float32), np.zeros((2, B, H), np.float32)))
  with pytest.raises(ValueError, match="carry mixes"):
    interop.to_torch_state((jnp.zeros((B, H)), jaxrnn.LSTMCarry(jnp.zeros((B, H)), jnp.zeros((B, H)))))
  with pytest.raises(ValueError, match=r"carry\[0\] must be"):
    interop.to_torch_state(((jnp.zeros((B, H)),) * 3,))


def test_float64_module_gives_float64_params_under_x64():
  module = _make("lstm", num_layers=2, bidirectional=True).double()
  xs = torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
  with torch.no_grad():
    out_t, (h_t, c_t) = module(xs)
  with jax.enable_x64(True):
    layer, params = interop.from_torch(module)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))
    carry, ys = layer.apply(params, jnp.asarray(xs.numpy()))
    h_n, c_n = interop.to_torch_state(carry)
    assert ys.dtype == jnp.float64
    # float64 all the way, so far tighter than the float32 tolerance.
    for got, want in [(ys, out_t), (h_n, h_t), (c_n, c_t)]:
      np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------
# to_torch: jaxrnn params (from jaxrnn's own init, perturbed so that every bias matters) into torch modules

JAX_CELLS = {
  "rnn_tanh": lambda **kw: jaxrnn.elman(H, **kw),
  "rnn_relu": lambda **kw: jaxrnn.elman(H, nonlinearity="relu", **kw),
  "gru": lambda **kw: jaxrnn.gru(H, **kw),
  "lstm": lambda **kw: jaxrnn.lstm(H, **kw),
  "lstm_proj": lambda **kw: jaxrnn.lstm(H, proj_size=P, **kw),
}
# (layers, bias, batch_first); a layer is "cell" or "pair" (jaxrnn.bidirectional of two cells).
JAX_CONFIGS = {
  "single": ((), True, False),  # one cell through jaxrnn.unroll
  "single_no_bias_batch_first": ((), False, True),
  "multi_bidirectional": (("pair", "pair"), True, False),
  "multi_no_bias_batch_first": (("cell", "cell", "cell"), False, True),
}


def _perturbed(params, seed: int):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten(
    [x + 0.3 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
  )


def _jaxrnn_net(kind: str, layers: tuple, bias: bool, batch_first: bool):
  make = functools.partial(JAX_CELLS[kind], bias=bias)
  if not layers:
    return make()
  children = [jaxrnn.bidirectional(make(), make()) if c == "pair" else make() for c in layers]
  return jaxrnn.stacked(*children, time_major=not batch_first)


# Every kind in the two bias-carrying layouts; the bias-free batch-first ones once per torch class.
TO_TORCH_CASES = [(k, c) for k in KINDS for c in ("single", "multi_bidirectional")] + [
  ("rnn_tanh", "single_no_bias_batch_first"),
  ("gru", "multi_no_bias_batch_first"),
  ("lstm", "single_no_bias_batch_first"),
  ("lstm", "multi_no_bias_batch_first"),
  ("lstm_proj", "single"),
  ("lstm_proj", "multi_bidirectional"),
]


@pytest.mark.parametrize(("kind", "config_name"), TO_TORCH_CASES, ids=[f"{k}-{c}" for k, c in TO_TORCH_CASES])
def test_to_torch_module_computes_what_jaxrnn_computes(kind, config_name):
  layers, bias, bf = JAX_CONFIGS[config_name]
  net = _jaxrnn_net(kind, layers, bias, bf)
  params = _perturbed(net.init(jax.random.key(0), I), 1)
  module = jaxrnn.interop.to_torch(params, nonlinearity="relu" if kind == "rnn_relu" else "tanh", batch_first=bf)
  expected_class = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM, "lstm_proj": torch.nn.LSTM}.get(kind, torch.nn.RNN)
  assert type(module) is expected_class
  assert module.hidden_size == H and getattr(module, "proj_size", 0) == (P if kind == "lstm_proj" else 0)
  D = 2 if "pair" in layers else 1
  assert (module.num_layers, module.bidirectional, module.bias, module.batch_first) == (
    max(len(layers), 1),
    D == 2,
    bias,
    bf,
  )
  rng = np.random.default_rng(2)
  xs = rng.standard_normal((B, T, I) if bf else (T, B, I)).astype(np.float32)
  L = max(len(layers), 1)
  lstm = kind.startswith("lstm")
  h0 = rng.standard_normal((L * D, B, _out_size(kind))).astype(np.float32)
  c0 = rng.standard_normal((L * D, B, H)).astype(np.float32)
  torch_state = (torch.tensor(h0), torch.tensor(c0)) if lstm else torch.tensor(h0)
  carry0 = interop.from_torch_state(torch_state, num_layers=L, bidirectional=D == 2)

  with torch.no_grad():
    out_t, state_t = module(torch.tensor(xs), torch_state)
  if isinstance(net, jaxrnn.Cell):
    final, ys = _jit(functools.partial(jaxrnn.unroll, net, time_major=not bf))(params, jnp.asarray(xs), carry0)
  else:
    final, ys = _jit(net.apply)(params, jnp.asarray(xs), carry0)
  _close(ys, out_t.numpy(), "outputs")
  state = interop.to_torch_state(final)
  for got, want, name in zip(
    state if lstm else (state,), state_t if lstm else (state_t,), ("h_n", "c_n"), strict=False
  ):
    _close(got, want.numpy(), name)

  # And back: from_torch undoes to_torch exactly (b + a zero bias_hh is b).
  _, params_again = interop.from_torch(module)
  assert jax.tree.structure(params_again) == jax.tree.structure(params)
  for got, want in zip(jax.tree.leaves(params_again), jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("kind", KINDS)
def test_to_torch_cell_module_steps_as_the_cell(kind):
  cell = JAX_CELLS[kind]()
  params = _perturbed(cell.init(jax.random.key(3), I), 4)
  module = jaxrnn.interop.to_torch(params, nonlinearity="relu" if kind == "rnn_relu" else "tanh", cell_module=True)
  assert type(module) is {"gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}.get(kind, torch.nn.RNNCell)
  rng = np.random.default_rng(5)
  x = rng.standard_normal((B, I)).astype(np.float32)
  h = rng.standard_normal((B, H)).astype(np.float32)
  c = rng.standard_normal((B, H)).astype(np.float32)
  carry = jaxrnn.LSTMCarry(jnp.asarray(h), jnp.asarray(c)) if kind == "lstm" else jnp.asarray(h)
  new_carry, y = cell.apply(params, carry, jnp.asarray(x))
  with torch.no_grad():
    if kind == "lstm":
      h_t, c_t = module(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
      _close(new_carry.c, c_t.numpy(), "c")
    else:
      h_t = module(torch.tensor(x), torch.tensor(h))
  _close(y, h_t.numpy(), "h")


def test_to_torch_keeps_float64():
  with jax.enable_x64(True):
    params = _perturbed(jaxrnn.gru(H, param_dtype=jnp.float64).init(jax.random.key(6), I), 7)
    module = jaxrnn.interop.to_torch(params)
    assert module.weight_ih_l0.dtype == torch.float64
    xs = np.random.default_rng(8).standard_normal((T, B, I))
    _, ys = jaxrnn.unroll(jaxrnn.gru(H, param_dtype=jnp.float64), params, jnp.asarray(xs))
  with torch.no_grad():
    out_t, _ = module(torch.tensor(xs))
  np.testing.assert_allclose(np.asarray(ys), out_t.numpy(), atol=1e-12, rtol=1e-12)


def test_to_torch_errors_name_what_torch_cannot_express():
  def params_of(cell):
    return cell.init(jax.random.key(0), I)

  lstm_p, gru_p = params_of(jaxrnn.lstm(H)), params_of(jaxrnn.gru(H))
  cases = [
    (params_of(jaxrnn.lstm(H, peepholes=True)), ValueError, r"params\.w_peep is set: an lstm\(peepholes=True\)"),
    (params_of(jaxrnn.lstm(H, layer_norm=True)), ValueError, r"params\.norm is set"),
    (params_of(jaxrnn.lstm(H, forget_gate=False)), ValueError, r"w_h has shape \(6, 18\): 3 gates"),
    (params_of(jaxrnn.gru(H, reset_after=False)), ValueError, r"gru\(reset_after=False\)"),
    (params_of(jaxrnn.mgu(H)), TypeError, r"params must be jaxrnn\.ElmanParams.*got MGUParams"),
    (params_of(jaxrnn.lstm1997(2, 2)), TypeError, r"got LSTM1997Params"),
    ((lstm_p, gru_p), ValueError, r"params mix cell kinds"),
    (((lstm_p, lstm_p), params_of(jaxrnn.lstm(H))), ValueError, r"mix one-direction and bidirectional layers"),
    ((lstm_p, (lstm_p, lstm_p, lstm_p)), ValueError, r"params\[1\] is a sequence of 3"),
    ((lstm_p, params_of(jaxrnn.lstm(H + 1))), ValueError, r"params\[1\] have hidden size 7, the first layer's 6"),
    ((lstm_p, lstm_p), ValueError, r"params\[1\]\.w_x has input size 4, expected 6"),
    (
      ((lstm_p, lstm_p), (params_of(jaxrnn.lstm(H)),) * 2),
      ValueError,
      r"params\[1\]\[0\]\.w_x has input size 4, expected 12 \(layer 0's two directions concatenated",
    ),
    ((), ValueError, "empty sequence"),
  ]
  for params, error, match in cases:
    with pytest.raises(error, match=match):
      jaxrnn.interop.to_torch(params)
  with pytest.raises(ValueError, match=r"cell_module=True needs one cell's params, got a tuple over 2 layers"):
    jaxrnn.interop.to_torch((lstm_p, lstm_p), cell_module=True)
  proj_p = jaxrnn.lstm(H, proj_size=P).init(jax.random.key(0), H)  # reads a layer of H outputs
  with pytest.raises(ValueError, match=r"params\[1\] have proj_size 3, the first layer's None; torch needs one"):
    jaxrnn.interop.to_torch((lstm_p, proj_p))
  with pytest.raises(ValueError, match=r"params\.w_proj is set: an lstm\(proj_size=\.\.\.\); torch's LSTMCell has no"):
    jaxrnn.interop.to_torch(proj_p, cell_module=True)
  with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1\.5"):
    jaxrnn.interop.to_torch(lstm_p, dropout=1.5)
  with pytest.raises(ValueError, match="nonlinearity"):
    jaxrnn.interop.to_torch(params_of(jaxrnn.elman(H)), nonlinearity="sigmoid")
