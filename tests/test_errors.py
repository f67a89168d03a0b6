"""Bad input fails at trace time, eagerly and under jax.jit, with a message naming the argument and both values."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import jaxrnn

I, H = 3, 4
KEY = jax.random.key(0)
CELLS = {
  "elman": jaxrnn.elman(H),
  "gru": jaxrnn.gru(H),
  "mgu": jaxrnn.mgu(H),
  "lstm": jaxrnn.lstm(H),
  "lstm1997": jaxrnn.lstm1997(2, 2),
}
PARAMS = {name: jax.eval_shape(lambda k, c=cell: c.init(k, I), KEY) for name, cell in CELLS.items()}
PARAMS = {name: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), p) for name, p in PARAMS.items()}


def raises_eager_and_jit(error, match, f, *arrays):
  """``f(*arrays)`` raises ``error`` matching ``match``, called directly and under ``jax.jit``."""
  with pytest.raises(error, match=match):
    f(*arrays)
  with pytest.raises(error, match=match):
    jax.jit(f)(*arrays)


# ----------------------------------------------------------------------------
# Inputs


@pytest.mark.parametrize("name", sorted(CELLS))
def test_wrong_feature_size(name):
  cell, params = CELLS[name], PARAMS[name]
  match = r"x has feature size 7 \(shape \(2, 7\)\), but the cell was initialised with input_size 3"
  raises_eager_and_jit(ValueError, match, lambda xs: jaxrnn.unroll(cell, params, xs), jnp.ones((5, 2, 7)))
  raises_eager_and_jit(ValueError, match, lambda x: cell.apply(params, cell.initial_carry((2,)), x), jnp.ones((2, 7)))
  with pytest.raises(jaxrnn.InputError):
    jaxrnn.unroll(cell, params, jnp.ones((5, 2, 7)))


def test_wrong_feature_size_of_layers_and_readouts():
  layer = jaxrnn.stacked(jaxrnn.gru(H), jaxrnn.lstm(2))
  params = layer.init(KEY, I)
  match = r"feature size 5 .*input_size 3"
  raises_eager_and_jit(ValueError, match, lambda xs: layer.apply(params, xs), jnp.ones((4, 1, 5)))
  out = jaxrnn.dense(2)
  p = out.init(KEY, 4)
  raises_eager_and_jit(
    ValueError, r"x has feature size 3 \(shape \(6, 3\)\).*input_size 4", lambda x: out.apply(p, x), jnp.ones((6, 3))
  )


@pytest.mark.parametrize("name", sorted(CELLS))
def test_wrong_rank(name):
  cell, params = CELLS[name], PARAMS[name]
  match = r"xs must have rank >= 2 \(T, \*batch, features\), got shape \(5,\)"
  raises_eager_and_jit(ValueError, match, lambda xs: jaxrnn.unroll(cell, params, xs), jnp.ones(5))
  match = r"xs must have rank >= 2 \(\*batch, T, features\), got shape \(5,\)"
  raises_eager_and_jit(ValueError, match, lambda xs: jaxrnn.unroll(cell, params, xs, time_major=False), jnp.ones(5))
  match = r"x must have shape \(\*batch, 3\), got a scalar"
  raises_eager_and_jit(ValueError, match, lambda x: cell.apply(params, cell.initial_carry(), x), jnp.ones(()))


def test_wrong_rank_of_layer_inputs_and_last_step():
  layer = jaxrnn.rnn(jaxrnn.elman(H))
  params = layer.init(KEY, I)
  raises_eager_and_jit(
    ValueError, r"xs must have rank >= 2.*got shape \(3,\)", lambda xs: layer.apply(params, xs), jnp.ones(3)
  )
  raises_eager_and_jit(ValueError, r"ys must have rank >= 2.*got shape \(4,\)", jaxrnn.last_step, jnp.ones(4))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_integer_inputs(name):
  cell, params = CELLS[name], PARAMS[name]
  match = r"xs must be a floating array, got dtype int32"
  raises_eager_and_jit(TypeError, match, lambda xs: jaxrnn.unroll(cell, params, xs), jnp.ones((5, 2, I), jnp.int32))
  match = r"x must be a floating array \(float32 like the params\), got dtype int32"
  raises_eager_and_jit(
    TypeError, match, lambda x: cell.apply(params, cell.initial_carry((2,)), x), jnp.ones((2, I), jnp.int32)
  )
  with pytest.raises(jaxrnn.InputTypeError, match=r"xs must be an array, got list"):
    jaxrnn.unroll(cell, params, [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_input_dtype_differs_from_params(name):
  cell, params = CELLS[name], PARAMS[name]
  match = r"x has dtype float16, but the params have dtype float32"
  raises_eager_and_jit(TypeError, match, lambda xs: jaxrnn.unroll(cell, params, xs), jnp.ones((5, 2, I), jnp.float16))
  with jax.enable_x64(True):
    match = r"x has dtype float64, but the params have dtype float32"
    raises_eager_and_jit(TypeError, match, lambda xs: jaxrnn.unroll(cell, params, xs), jnp.ones((5, 2, I), jnp.float64))


# ----------------------------------------------------------------------------
# Lengths


def test_lengths_of_the_wrong_shape_or_dtype():
  cell, params = CELLS["gru"], PARAMS["gru"]
  xs = jnp.ones((5, 2, I))
  shape_match = r"lengths must have the batch shape \(2,\) of xs, got shape \(3,\)"
  dtype_match = r"lengths must be an integer array, got dtype float32"
  layer = jaxrnn.rnn(cell)
  for run in (
    lambda xs, lengths: jaxrnn.unroll(cell, params, xs, lengths=lengths),
    lambda xs, lengths: layer.apply(params, xs, lengths=lengths),
    lambda xs, lengths: jaxrnn.bidirectional(cell, cell).apply((params, params), xs, lengths=lengths),
    lambda xs, lengths: jaxrnn.last_step(xs, lengths),
  ):
    raises_eager_and_jit(ValueError, shape_match, run, xs, jnp.array([5, 2, 1]))
    raises_eager_and_jit(TypeError, dtype_match, run, xs, jnp.array([5.0, 2.0]))
  # Batch-major: the batch shape is still the axes before T.
  raises_eager_and_jit(
    ValueError,
    r"lengths must have the batch shape \(2, 3\) of xs, got shape \(2,\)",
    lambda xs, lengths: jaxrnn.unroll(cell, params, xs, lengths=lengths, time_major=False),
    jnp.ones((2, 3, 5, I)),
    jnp.array([1, 2]),
  )
  with pytest.raises(TypeError, match=r"lengths must be an integer array, got dtype float32"):
    jaxrnn.unroll(cell, params, xs, lengths=[1.0, 2.0])


def test_concrete_lengths_outside_the_time_axis():
  """Known lengths outside [0, T] are an error; traced ones (under jit) act as the nearest end of the range."""
  cell, params = CELLS["gru"], PARAMS["gru"]
  xs = jax.random.normal(KEY, (5, 2, I))
  layer = jaxrnn.rnn(cell)
  runs = (
    lambda xs, lengths: jaxrnn.unroll(cell, params, xs, lengths=lengths)[1],
    lambda xs, lengths: jaxrnn.unroll(cell, params, xs, lengths=lengths, reverse=True)[1],
    lambda xs, lengths: layer.apply(params, xs, lengths=lengths)[1],
    lambda xs, lengths: jaxrnn.last_step(xs, lengths),
  )
  for run in runs:
    for bad, lo, hi in (([6, 2], 2, 6), ([-1, 2], -1, 2)):
      with pytest.raises(
        ValueError, match=rf"lengths must be in \[0, 5\] \(the number of time steps\), got values from {lo} to {hi}"
      ):
        run(xs, jnp.array(bad))
    # Under jit the values are unknown at trace time: 6 runs as 5 and -1 as 0.
    got = jax.jit(run)(xs, jnp.array([6, -1]))
    want = run(xs, jnp.array([5, 0]))
    assert jnp.array_equal(got, want)


# ----------------------------------------------------------------------------
# Carries


@pytest.mark.parametrize("name", sorted(CELLS))
def test_wrong_carry_shape(name):
  cell, params = CELLS[name], PARAMS[name]
  xs = jnp.ones((5, 2, I))
  carry = jax.tree.map(lambda a: jnp.zeros((3,) + a.shape[1:], a.dtype), cell.initial_carry((2,)))
  size = jax.tree.leaves(carry)[0].shape[-1]
  match = rf"carry leaf 0 has shape \(3, {size}\), expected \(2, {size}\)"
  raises_eager_and_jit(ValueError, match, lambda xs, c: jaxrnn.unroll(cell, params, xs, c), xs, carry)
  raises_eager_and_jit(ValueError, match, lambda x, c: cell.apply(params, c, x), xs[0], carry)
  wide = jax.tree.map(lambda a: jnp.zeros((2, a.shape[-1] + 1), a.dtype), cell.initial_carry((2,)))
  match = rf"carry leaf 0 has shape \(2, {size + 1}\), expected \(2, {size}\)"
  raises_eager_and_jit(ValueError, match, lambda xs, c: jaxrnn.unroll(cell, params, xs, c), xs, wide)
  half = jax.tree.map(lambda a: a.astype(jnp.float16), cell.initial_carry((2,)))
  match = r"carry leaf 0 has dtype float16, expected float32"
  raises_eager_and_jit(TypeError, match, lambda xs, c: jaxrnn.unroll(cell, params, xs, c), xs, half)


# ----------------------------------------------------------------------------
# Params


@pytest.mark.parametrize("name", sorted(CELLS))
def test_params_of_a_cell_of_another_size(name):
  cell = CELLS[name]
  other = {"lstm1997": jaxrnn.lstm1997(3, 2)}.get(name) or getattr(jaxrnn, name)(H + 2)
  params = other.init(KEY, I)
  want = jax.eval_shape(lambda: cell.init(KEY, I)).w_x.shape
  match = (
    rf"params.w_x has shape \({I}, {params.w_x.shape[1]}\), expected \({I}, {want[1]}\) "
    r"\(were the params made by a cell of another size\?\)"
  )
  raises_eager_and_jit(ValueError, match, lambda xs: jaxrnn.unroll(cell, params, xs), jnp.ones((5, 2, I)))
  raises_eager_and_jit(ValueError, match, lambda x: cell.apply(params, cell.initial_carry((2,)), x), jnp.ones((2, I)))


def test_params_of_another_cell_or_with_other_options():
  xs = jnp.ones((5, 2, I))
  run = lambda cell, params: jaxrnn.unroll(cell, params, xs)  # noqa: E731
  with pytest.raises(TypeError, match=r"params must be LSTMParams \(what this cell's init returns\), got GRUParams"):
    run(CELLS["lstm"], PARAMS["gru"])
  with pytest.raises(TypeError, match=r"params must be GRUParams .*, got dict"):
    run(CELLS["gru"], PARAMS["gru"]._asdict())
  # Without these checks, peephole weights were silently ignored or silently missing.
  peep = jaxrnn.lstm(H, peepholes=True)
  with pytest.raises(ValueError, match=r"params.w_peep must be None for this cell .*e.g. bias, peepholes, layer_norm"):
    run(CELLS["lstm"], peep.init(KEY, I))
  with pytest.raises(ValueError, match=r"params.w_peep is None, but this cell needs an array of shape \(3, 4\)"):
    run(peep, PARAMS["lstm"])
  proj = jaxrnn.lstm(H, proj_size=2)
  with pytest.raises(ValueError, match=r"params.w_proj must be None for this cell .*layer_norm or proj_size\?"):
    run(CELLS["lstm"], proj.init(KEY, I))
  with pytest.raises(ValueError, match=r"params.w_proj is None, but this cell needs an array of shape \(4, 2\)"):
    run(proj, PARAMS["lstm"])
  with pytest.raises(ValueError, match=r"params.b is None, but this cell needs an array of shape \(12,\)"):
    run(CELLS["gru"], PARAMS["gru"]._replace(b=None))
  with pytest.raises(ValueError, match=r"params.b_cell must be None for this cell"):
    run(jaxrnn.lstm1997(2, 2, bias="gates"), jaxrnn.lstm1997(2, 2, bias="all").init(KEY, I))
  grud = jaxrnn.grud(H, 2)
  with pytest.raises(ValueError, match=r"params.w_gh has shape \(2, 5\), expected \(2, 4\)"):
    jaxrnn.unroll(grud, grud.init(KEY, 6)._replace(w_gh=jnp.zeros((2, 5))), jnp.ones((5, 2, 6)))
  readout = jaxrnn.dense(2)
  with pytest.raises(ValueError, match=r"params.w has shape \(4, 3\), expected \(4, 2\)"):
    readout.apply(jaxrnn.dense(3).init(KEY, 4), jnp.ones((5, 4)))
  with pytest.raises(ValueError, match=r"params.b is None, but this readout needs an array of shape \(2,\)"):
    readout.apply(jaxrnn.dense(2, bias=False).init(KEY, 4), jnp.ones((5, 4)))
  decay = jaxrnn.time_decay(CELLS["gru"])
  with pytest.raises(TypeError, match=r"params must be TimeDecayParams .*, got GRUParams"):
    run(decay, PARAMS["gru"])


@pytest.mark.parametrize("name", ["lstm", "lstm1997"])
def test_wrong_carry_structure(name):
  cell, params = CELLS[name], PARAMS[name]
  match = r"carry must have the structure .*, got PyTreeDef\(\*\)"
  raises_eager_and_jit(
    ValueError, match, lambda xs, c: jaxrnn.unroll(cell, params, xs, c), jnp.ones((5, 2, I)), jnp.zeros((2, H))
  )


def test_bad_batch_shape_and_carry_dtype():
  cell = CELLS["lstm"]
  with pytest.raises(ValueError, match=r"batch_shape must have non-negative sizes, got \(2, -1\)"):
    cell.initial_carry((2, -1))
  with pytest.raises(TypeError, match=r"batch_shape must be a tuple of ints, got 'ab'"):
    cell.initial_carry("ab")
  with pytest.raises(TypeError, match=r"dtype must be a floating dtype, got int32"):
    cell.initial_carry((2,), jnp.int32)


# ----------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(
  ("make", "error", "match"),
  [
    (
      lambda: jaxrnn.elman(H, nonlinearity="sigmoid"),
      ValueError,
      r"nonlinearity must be one of \('tanh', 'relu'\), got 'sigmoid'",
    ),
    (
      lambda: jaxrnn.lstm1997(2, 2, bias="some"),
      ValueError,
      r"bias must be one of \('all', 'gates', 'none'\), got 'some'",
    ),
    (
      lambda: jaxrnn.bidirectional(jaxrnn.gru(2), jaxrnn.gru(2), merge="max"),
      ValueError,
      r"merge must be one of \('concat', 'sum'\), got 'max'",
    ),
    (
      lambda: jaxrnn.lstm1997(2, 2, cell_input_squash="relu"),
      ValueError,
      r"cell_input_squash must be one of \('paper', 'logistic'\), got 'relu'",
    ),
    (
      lambda: jaxrnn.lstm1997(2, 2, cell_output_squash="tanh"),
      ValueError,
      r"cell_output_squash must be one of \('paper', 'identity'\), got 'tanh'",
    ),
    (lambda: jaxrnn.gru(2, reset_after="yes"), TypeError, r"reset_after must be a bool, got 'yes'"),
    (lambda: jaxrnn.elman(0), ValueError, r"hidden_size must be >= 1, got 0"),
    (lambda: jaxrnn.lstm(2.5), TypeError, r"hidden_size must be an int, got float 2.5"),
    (lambda: jaxrnn.gru(True), TypeError, r"hidden_size must be an int, got bool True"),
    (lambda: jaxrnn.lstm(4, proj_size=0), ValueError, r"proj_size must be >= 1, got 0"),
    (lambda: jaxrnn.lstm1997(0, 2), ValueError, r"num_blocks must be >= 1, got 0"),
    (lambda: jaxrnn.lstm1997(2, -1), ValueError, r"block_size must be >= 1, got -1"),
    (lambda: jaxrnn.lstm1997(2, 2, init_scale=-0.1), ValueError, r"init_scale must be >= 0, got -0.1"),
    (
      lambda: jaxrnn.lstm1997(2, 2, input_gate_bias=(-1.0,)),
      ValueError,
      r"input_gate_bias must have one value per block \(2\), got 1",
    ),
    (
      lambda: jaxrnn.lstm1997(2, 2, output_gate_bias=(1, 2, 3)),
      ValueError,
      r"output_gate_bias must have one value per block \(2\), got 3",
    ),
    (
      lambda: jaxrnn.lstm1997(2, 1, bias="none", input_gate_bias=(-1, -2)),
      ValueError,
      r"input_gate_bias was given but bias='none'",
    ),
    (
      lambda: jaxrnn.lstm1997(2, 1, output_gate=False, output_gate_bias=(-1, -2)),
      ValueError,
      r"output_gate_bias was given but output_gate=False",
    ),
    (lambda: jaxrnn.gru(2, param_dtype=jnp.int32), TypeError, r"param_dtype must be a floating dtype, got int32"),
    (lambda: jaxrnn.dense(0), ValueError, r"output_size must be >= 1, got 0"),
    (lambda: jaxrnn.stacked(), ValueError, r"stacked needs at least one layer"),
    (lambda: jaxrnn.stacked(jaxrnn.gru(2), dropout=1.0), ValueError, r"dropout must be in \[0, 1\), got 1.0"),
    (lambda: jaxrnn.stacked(jaxrnn.gru(2), 3), TypeError, r"expected a jaxrnn.Cell or jaxrnn.Layer, got int"),
    (lambda: jaxrnn.rnn("gru"), TypeError, r"cell must be a jaxrnn.Cell, got str"),
    (lambda: jaxrnn.initializers.uniform(-0.5), ValueError, r"scale must be >= 0, got -0.5"),
  ],
)
def test_bad_options(make, error, match):
  with pytest.raises(error, match=match):
    make()


@pytest.mark.parametrize(
  ("cell", "match"),
  [
    (
      jaxrnn.lstm(H, gate_bias={"x": 1.0}),
      r"gate_bias has unknown gate\(s\) \['x'\]; this cell's gates are \('i', 'f', 'g', 'o'\)",
    ),
    (
      jaxrnn.lstm(H, forget_gate=False, gate_bias={"f": 1.0}),
      r"unknown gate\(s\) \['f'\]; this cell's gates are \('i', 'g', 'o'\)",
    ),
    (
      jaxrnn.gru(H, gate_bias={"f": 1.0, "r": 0.0}),
      r"unknown gate\(s\) \['f'\]; this cell's gates are \('r', 'z', 'n'\)",
    ),
    (jaxrnn.mgu(H, gate_bias={"z": 1.0}), r"unknown gate\(s\) \['z'\]; this cell's gates are \('f', 'n'\)"),
    (
      jaxrnn.lstm(H, gate_bias={"i": jnp.ones(2)}),
      r"gate_bias\['i'\] must be a scalar or have shape \(4,\), got shape \(2,\)",
    ),
    (jaxrnn.lstm(H, bias=False, gate_bias={"i": 1.0}), r"gate_bias was given but bias=False"),
    (jaxrnn.gru(H, bias=False, gate_bias={"z": 1.0}), r"gate_bias was given but bias=False"),
  ],
)
def test_bad_gate_bias(cell, match):
  with pytest.raises(ValueError, match=match):
    cell.init(KEY, I)
  with pytest.raises(ValueError, match=match):
    jax.jit(cell.init, static_argnums=1)(KEY, I)


def test_bad_sizes_and_steps_at_call_time():
  with pytest.raises(ValueError, match=r"input_size must be >= 1, got 0"):
    jaxrnn.gru(2).init(KEY, 0)
  with pytest.raises(TypeError, match=r"input_size must be an int, got float 3.0"):
    jaxrnn.lstm1997(2, 2).init(KEY, 3.0)
  cell, params = CELLS["elman"], PARAMS["elman"]
  raises_eager_and_jit(
    ValueError,
    r"truncate must be >= 1, got 0",
    lambda xs: jaxrnn.unroll(cell, params, xs, truncate=0),
    jnp.ones((5, I)),
  )
  for unroll, error, match in [
    (0, ValueError, r"unroll must be >= 1, got 0"),
    (2.5, TypeError, r"unroll must be an int, got float 2.5"),
    ("8", TypeError, r"unroll must be an int, got str '8'"),
  ]:
    for impl in ("auto", "reference"):
      with pytest.raises(error, match=match):
        jaxrnn.unroll(cell, params, jnp.ones((5, I)), unroll=unroll, impl=impl)


def test_layer_call_errors():
  layer = jaxrnn.stacked(jaxrnn.gru(2), jaxrnn.gru(3))
  params = layer.init(KEY, I)
  xs = jnp.ones((5, 2, I))
  raises_eager_and_jit(
    ValueError, r"params must be a tuple of 2 layers' params", lambda xs: layer.apply(params[:1], xs), xs
  )
  with pytest.raises(TypeError, match=r"key must be a PRNG key array \(jax.random.key\), got int"):
    layer.apply(params, xs, key=0)
  both = jaxrnn.bidirectional(jaxrnn.gru(3), jaxrnn.gru(2), merge="sum")
  p = both.init(KEY, I)
  raises_eager_and_jit(
    ValueError, r"merge='sum' needs equal output sizes, got 3 and 2", lambda xs: both.apply(p, xs), xs
  )
  with pytest.raises(ValueError, match=re.escape("dropout rate must be in [0, 1), got 1.5")):
    jaxrnn.dropout(KEY, xs, 1.5)
