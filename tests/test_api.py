"""The public API is exactly what is documented, and the initialisers put values where they say."""

from __future__ import annotations

import re
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

PUBLIC = {
  # types
  "Cell",
  "Dense",
  "Layer",
  "InputError",
  "InputTypeError",
  # cells, their params and carries
  "elman",
  "ElmanParams",
  "gru",
  "GRUParams",
  "mgu",
  "MGUParams",
  "lstm",
  "LSTMParams",
  "LSTMNorm",
  "LayerNormParams",
  "LSTMCarry",
  "lstm1997",
  "LSTM1997Params",
  "LSTM1997Carry",
  # irregularly sampled series
  "time_decay",
  "TimeDecayParams",
  "grud",
  "GRUDParams",
  "GRUDCarry",
  # running
  "unroll",
  "reverse_valid",
  "default_unroll",
  "tune_malloc",
  # layers and readouts
  "rnn",
  "stacked",
  "bidirectional",
  "dense",
  "DenseParams",
  "dropout",
  "with_recurrent_mask",
  "last_step",
  "broadcast_carry",
  "output_size",
  # submodules
  "initializers",
  "interop",
}

INITIALIZERS = {
  "Initializer",
  "constant",
  "glorot_normal",
  "glorot_uniform",
  "lecun_normal",
  "ones",
  "orthogonal",
  "torch_default",
  "uniform",
  "zeros",
}


def public_names(module) -> set[str]:
  return {name for name in dir(module) if not name.startswith("_")}


def test_jaxrnn_exposes_exactly_the_documented_names():
  assert public_names(jaxrnn) == PUBLIC


def test_initializers_expose_exactly_the_documented_names():
  assert public_names(jaxrnn.initializers) == INITIALIZERS


def test_version_matches_the_package_metadata():
  assert jaxrnn.__version__ == metadata.version("jaxrnn")


def test_error_types():
  assert issubclass(jaxrnn.InputError, ValueError)
  assert issubclass(jaxrnn.InputTypeError, TypeError)


@pytest.mark.parametrize("name", sorted(PUBLIC - {"initializers", "interop", "InputError", "InputTypeError"}))
def test_public_callables_are_documented(name):
  assert (getattr(jaxrnn, name).__doc__ or "").strip()


# ----------------------------------------------------------------------------
# Initialisers


@pytest.mark.parametrize("scale", [0.1, 0.2, 1.5])
def test_uniform_is_symmetric_in_range(scale):
  w = np.asarray(jaxrnn.initializers.uniform(scale)(jax.random.key(0), (200, 50)))
  assert w.dtype == np.float32
  assert np.all(np.abs(w) <= scale)
  assert w.min() < -0.95 * scale and w.max() > 0.95 * scale  # fills [-scale, scale], not [0, scale]
  assert abs(w.mean()) < 0.02 * scale
  np.testing.assert_allclose(w.std(), scale / np.sqrt(3.0), rtol=0.03)  # the std of U(-a, a)


def test_uniform_zero_and_negative_scale():
  np.testing.assert_array_equal(jaxrnn.initializers.uniform(0.0)(jax.random.key(0), (3,)), 0.0)
  with pytest.raises(ValueError, match=r"scale must be >= 0, got -1"):
    jaxrnn.initializers.uniform(-1.0)


def test_torch_default_bound():
  w = np.asarray(jaxrnn.initializers.torch_default(16)(jax.random.key(0), (64, 64), jnp.float32))
  assert np.all(np.abs(w) <= 0.25) and np.abs(w).max() > 0.24


@pytest.mark.parametrize(
  ("cell", "gates"),
  [
    (jaxrnn.elman(5), 1),
    (jaxrnn.gru(5), 3),
    (jaxrnn.mgu(5), 2),
    (jaxrnn.lstm(5), 4),
    (jaxrnn.lstm(5, forget_gate=False), 3),
  ],
)
def test_recurrent_kernels_are_orthogonal_per_gate(cell, gates):
  H = 5
  params = cell.init(jax.random.key(0), 3)
  assert params.w_h.shape == (H, gates * H)
  blocks = [np.asarray(params.w_h[:, g * H : (g + 1) * H], np.float64) for g in range(gates)]
  for q in blocks:
    np.testing.assert_allclose(q.T @ q, np.eye(H), atol=1e-5)
  for a, b in zip(blocks, blocks[1:]):
    assert not np.allclose(a, b)  # each gate draws its own matrix
  assert params.w_x.shape == (3, gates * H)


def _lapack_operand_shapes(fn, *args) -> list[tuple[int, ...]]:
  """The shapes of the first operand of every LAPACK custom call in ``jit(fn)``'s lowering."""
  text = jax.jit(fn).lower(*args).as_text()
  calls = re.findall(r"custom_call @lapack_\w+\(.*?:\s*\(tensor<([0-9x]+)x?f(?:32|64)>", text)
  return [tuple(int(d) for d in dims.split("x") if d) for dims in calls]


ORTHOGONAL_CELLS = [
  jaxrnn.elman(6),
  jaxrnn.gru(6),
  jaxrnn.mgu(6),
  jaxrnn.lstm(6),
  jaxrnn.lstm(6, proj_size=3),
  jaxrnn.grud(6, 1),  # input_size 3 = [values, mask, delta] of one feature
]


@pytest.mark.parametrize("cell", ORTHOGONAL_CELLS, ids=["elman", "gru", "mgu", "lstm", "lstm_proj", "grud"])
def test_vmapped_init_decomposes_one_matrix_at_a_time(cell):
  """jaxlib 0.10's CPU LAPACK kernels split a batch of matrices over XLA's thread pool and wait for the parts;
  two batched QR decompositions run side by side could deadlock (``jaxrnn.initializers.orthogonal``). Under
  ``vmap``, and ``vmap`` of ``vmap``, every decomposition of a cell's init must be of a single matrix, and the
  params must be those of an init per key."""
  keys = jax.random.split(jax.random.key(0), 6)
  init = jax.vmap(lambda k: cell.init(k, 3))
  shapes = _lapack_operand_shapes(init, keys)
  assert shapes and all(len(s) == 2 for s in shapes), shapes
  nested = _lapack_operand_shapes(jax.vmap(init), keys.reshape(2, 3))
  assert nested and all(len(s) == 2 for s in nested), nested
  got = jax.jit(init)(keys)
  for i in (0, 5):
    want = cell.init(keys[i], 3)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      np.testing.assert_array_equal(a[i], b)


def test_orthogonal_loop_is_chosen_by_the_lowering_platform(monkeypatch):
  """The loop is taken where the program runs on the CPU, whatever JAX's default backend (a program placed on
  the CPU of a GPU machine), and only there: exported for the CPU and CUDA, the CUDA branch keeps its batched
  decompositions."""
  keys = jax.random.split(jax.random.key(2), 4)
  init = jax.vmap(lambda k: jaxrnn.lstm(5).init(k, 3))
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  shapes = _lapack_operand_shapes(init, keys)
  assert shapes and all(len(s) == 2 for s in shapes), shapes
  monkeypatch.undo()
  exported = jax.export.export(jax.jit(init), platforms=("cpu", "cuda"))(keys)
  text = exported.mlir_module()
  cuda = re.findall(r"custom_call @cusolver_\w+\(.*?:\s*\(tensor<([0-9x]+)x?f32>", text)
  assert any(dims.count("x") == 2 for dims in cuda), cuda  # (4, 5, 5): one batched call on the GPU
  got = exported.call(keys)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(jax.jit(init)(keys)), strict=True):
    np.testing.assert_array_equal(a, b)


def test_orthogonal_is_jax_orthogonal_bit_for_bit():
  keys = jax.random.split(jax.random.key(1), 4)
  for shape, kwargs in [((5, 5), {}), ((3, 7), {"scale": 2.0}), ((6, 2, 4), {"column_axis": 0})]:
    ours, theirs = jaxrnn.initializers.orthogonal(**kwargs), jax.nn.initializers.orthogonal(**kwargs)
    np.testing.assert_array_equal(ours(keys[0], shape), theirs(keys[0], shape))
    got = jax.jit(jax.vmap(lambda k: ours(k, shape)))(keys)  # noqa: B023
    want = jax.vmap(lambda k: theirs(k, shape))(keys)  # noqa: B023
    np.testing.assert_array_equal(got, want)

  # The scale stays differentiable, under vmap too.
  def total(scale, module):
    return jnp.sum(jax.vmap(lambda k: module.orthogonal(scale=scale)(k, (4, 4)))(keys) ** 3)

  assert jax.grad(total)(1.5, jaxrnn.initializers) == jax.grad(total)(1.5, jax.nn.initializers)
  # The batched form (one decomposition over the batch) is what the initialiser avoids.
  batched = _lapack_operand_shapes(jax.vmap(lambda k: jax.nn.initializers.orthogonal()(k, (5, 5))), keys)
  assert any(len(s) == 3 for s in batched), batched


def test_lstm_gate_bias_and_forget_bias_slices():
  H = 3
  o = jnp.asarray([0.1, 0.2, 0.3])
  b = jaxrnn.lstm(H, gate_bias={"i": 2.0, "o": o}).init(jax.random.key(0), 2).b
  np.testing.assert_allclose(b, np.concatenate([[2.0] * 3, [1.0] * 3, [0.0] * 3, [0.1, 0.2, 0.3]]), rtol=1e-6)
  b = jaxrnn.lstm(H, forget_bias=3.0).init(jax.random.key(0), 2).b  # order i, f, g, o
  np.testing.assert_array_equal(b, np.concatenate([[0.0] * 3, [3.0] * 3, [0.0] * 6]))
  b = jaxrnn.lstm(H, forget_bias=3.0, gate_bias={"f": -1.0}).init(jax.random.key(0), 2).b  # gate_bias wins
  np.testing.assert_array_equal(b[H : 2 * H], -1.0)
  b = jaxrnn.lstm(H, forget_gate=False, gate_bias={"g": 0.5}).init(jax.random.key(0), 2).b  # order i, g, o
  np.testing.assert_array_equal(b, np.concatenate([[0.0] * 3, [0.5] * 3, [0.0] * 3]))


def test_gru_and_mgu_gate_bias_slices():
  H = 2
  b = jaxrnn.gru(H, gate_bias={"z": 1.5, "n": -0.5}).init(jax.random.key(0), 2).b  # order r, z, n
  np.testing.assert_array_equal(b, [0.0, 0.0, 1.5, 1.5, -0.5, -0.5])
  b = jaxrnn.mgu(H).init(jax.random.key(0), 2).b  # order f, n; forget bias 1 by default
  np.testing.assert_array_equal(b, [1.0, 1.0, 0.0, 0.0])
  b = jaxrnn.mgu(H, forget_bias=2.0, gate_bias={"n": 0.25}).init(jax.random.key(0), 2).b
  np.testing.assert_array_equal(b, [2.0, 2.0, 0.25, 0.25])


def test_custom_initialisers_are_used():
  c = jaxrnn.initializers.constant(0.3)
  p = jaxrnn.elman(2, kernel_init=c, recurrent_init=jaxrnn.initializers.ones, bias_init=c).init(jax.random.key(0), 3)
  np.testing.assert_allclose(p.w_x, 0.3)
  np.testing.assert_array_equal(p.w_h, 1.0)
  np.testing.assert_allclose(p.b, 0.3)
  p = jaxrnn.lstm(2, peepholes=True, peephole_init=c).init(jax.random.key(0), 3)
  np.testing.assert_allclose(p.w_peep, 0.3)
  assert p.w_peep.shape == (3, 2)
  with jax.enable_x64(True):
    p = jaxrnn.gru(2, param_dtype=jnp.float64).init(jax.random.key(0), 3)
    assert {leaf.dtype for leaf in jax.tree.leaves(p)} == {jnp.dtype(jnp.float64)}


def test_init_is_deterministic_and_key_dependent():
  cell = jaxrnn.lstm(3)
  a, b, c = (cell.init(jax.random.key(k), 2) for k in (0, 0, 1))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.w_h, c.w_h)
