"""The fast path of jaxrnn.unroll (impl="fused") equals the reference lax.scan path (impl="reference").

Outputs (final carry and ys) must agree to 1e-5 and gradients (with respect to
params, inputs and the initial carry) to 1e-4, relative to the largest entry
of each leaf, for every cell the fast path covers and every option of unroll.
No timing here: speed is measured by ``python -m benchmarks.run``.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity_helpers import scan_products

import jaxrnn
from jaxrnn._src import fused

pytestmark = pytest.mark.xdist_group("fused")

T, B, I, H = 9, 3, 4, 5
OUT_TOL, GRAD_TOL = 1e-5, 1e-4

CELLS = {
  "elman": jaxrnn.elman(H),
  "elman_relu_no_bias": jaxrnn.elman(H, nonlinearity="relu", bias=False),
  "gru": jaxrnn.gru(H),
  "gru_reset_before": jaxrnn.gru(H, reset_after=False),
  "gru_no_bias": jaxrnn.gru(H, bias=False),
  "mgu": jaxrnn.mgu(H),
  "mgu_no_reset": jaxrnn.mgu(H, reset_gate=False),
  "lstm": jaxrnn.lstm(H),
  "lstm_peepholes": jaxrnn.lstm(H, peepholes=True),
  "lstm_no_forget": jaxrnn.lstm(H, forget_gate=False),
  "lstm_no_forget_peepholes_no_bias": jaxrnn.lstm(H, forget_gate=False, peepholes=True, bias=False),
  "lstm_layer_norm": jaxrnn.lstm(H, layer_norm=True),
  "lstm_layer_norm_no_forget_no_bias": jaxrnn.lstm(H, layer_norm=True, forget_gate=False, bias=False),
  "lstm_proj": jaxrnn.lstm(H, proj_size=2),
  "lstm_proj_peepholes_no_forget": jaxrnn.lstm(H, proj_size=7, peepholes=True, forget_gate=False),
  "lstm1997": jaxrnn.lstm1997(2, 2),
  "lstm1997_truncated_gates_bias": jaxrnn.lstm1997(
    2, 3, bias="gates", truncated_gradient=True, input_gate_bias=(-1, 2)
  ),
  "lstm1997_no_output_gate_no_bias": jaxrnn.lstm1997(
    3, 1, output_gate=False, bias="none", cell_input_squash="logistic", cell_output_squash="identity"
  ),
}
LENGTHS = np.array([T, 4, 0])
RESETS = np.random.default_rng(8).random((T, B)) < 0.3  # new sequences starting inside the rows (resets=)
OPTIONS = {
  "plain": {},
  "reverse": {"reverse": True},
  "lengths": {"lengths": LENGTHS},
  "lengths_reverse": {"lengths": LENGTHS, "reverse": True},
  "truncate": {"truncate": 3},
  "truncate_lengths_reverse": {"truncate": 2, "lengths": np.array([6, 9, 2]), "reverse": True},
  "remat": {"remat": 4},
  "remat_sqrt_reverse_lengths": {"remat": True, "reverse": True, "lengths": LENGTHS},
  "batch_major_unroll": {"time_major": False, "unroll": 2},
}


def random_tree(tree, seed, scale=0.5):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), tree)


def inputs(cell, batch_shape=(B,), seed=0):
  """Params with every bias and peephole nonzero, inputs and a nonzero initial carry."""
  params = random_tree(jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)), seed)
  xs = random_tree(jax.ShapeDtypeStruct((T, *batch_shape, I), jnp.float32), seed + 1, scale=1.0)
  carry = random_tree(jax.eval_shape(lambda: cell.initial_carry(batch_shape)), seed + 2)
  return params, xs, carry


def rel_err(got, want):
  """The largest leafwise ``max |got - want| / max |want|``."""
  errs = jax.tree.map(lambda g, w: float(jnp.max(jnp.abs(g - w)) / max(float(jnp.max(jnp.abs(w))), 1e-30)), got, want)
  return max(jax.tree.leaves(errs), default=0.0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def outputs_and_grads(cell, impl, options, params, xs, carry, lengths, reset_carry=None):
  """The outputs of unroll and the gradients of a loss on all of them, in one compiled program. With a
  ``reset_carry``, unroll also gets ``resets=RESETS`` (below), and the gradients include the reset carry's."""
  kwargs = dict(options)
  if lengths is not None:
    kwargs["lengths"] = lengths
  if reset_carry is not None:
    kwargs["resets"] = jnp.asarray(RESETS if kwargs.get("time_major", True) else RESETS.T)

  def loss(params, xs, carry, reset_carry):
    out = jaxrnn.unroll(cell, params, xs, carry, impl=impl, reset_carry=reset_carry, **kwargs)
    # Fixed random weights on every output, so every entry of ys and of the carry gets its own cotangent.
    leaves = jax.tree.leaves(out)
    weights = [jnp.sin(1.0 + jnp.arange(a.size, dtype=a.dtype).reshape(a.shape)) for a in leaves]
    return sum(jnp.sum(w * a) for w, a in zip(weights, leaves)), out

  argnums = (0, 1, 2) if reset_carry is None else (0, 1, 2, 3)
  grads, out = jax.grad(loss, argnums=argnums, has_aux=True)(params, xs, carry, reset_carry)
  return out, grads


def check_against_reference(cell, options, params, xs, carry, reset_carry=None):
  """The fast path's outputs and gradients against the reference path's, with ``options`` (an ``OPTIONS`` entry;
  ``xs`` time-major, moved for ``time_major=False``); returns the reference's gradients."""
  options = dict(options)
  lengths = options.pop("lengths", None)
  lengths = None if lengths is None else jnp.asarray(lengths, jnp.int32)
  if not options.get("time_major", True):
    xs = jnp.moveaxis(xs, 0, -2)
  static = tuple(sorted(options.items()))
  got_out, got_grads = outputs_and_grads(cell, "fused", static, params, xs, carry, lengths, reset_carry)
  want_out, want_grads = outputs_and_grads(cell, "reference", static, params, xs, carry, lengths, reset_carry)
  assert jax.tree.structure(got_out) == jax.tree.structure(want_out)
  assert rel_err(got_out, want_out) <= OUT_TOL
  assert rel_err(got_grads, want_grads) <= GRAD_TOL
  return want_grads


def compare(cell, options, batch_shape=(B,), seed=0):
  params, xs, carry = inputs(cell, batch_shape, seed)
  check_against_reference(cell, options, params, xs, carry)


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_programs():
  # Every XLA CPU executable holds dozens of memory mappings; free this module's once it is done.
  yield
  jax.clear_caches()


def test_every_cell_is_recognised():
  for name, cell in CELLS.items():
    assert fused.fused_spec(cell) is not None, name


# Every cell with truncation, lengths and reverse; without any option (no valid-step mask, no cut), one cell per
# kernel code path (the cells' other options share those lines).
EVERY_CELL_CASES = [(n, "truncate_lengths_reverse") for n in sorted(CELLS)]
EVERY_CELL_CASES += [
  (n, "plain") for n in ("elman", "gru", "gru_reset_before", "mgu", "lstm", "lstm_peepholes", "lstm_proj", "lstm1997")
]
EVERY_CELL_CASES += [("lstm1997_truncated_gates_bias", "plain"), ("lstm1997_no_output_gate_no_bias", "plain")]
EVERY_CELL_CASES += [("lstm_layer_norm", "plain")]


@pytest.mark.parametrize(("name", "option"), EVERY_CELL_CASES, ids=[f"{o}-{n}" for n, o in EVERY_CELL_CASES])
def test_every_cell_equals_reference(name, option):
  compare(CELLS[name], OPTIONS[option])


# Every option for the LSTM and GRU kernels; the normalised LSTM's kernel for the options that change its chunk
# structure (its per-step tangent is covered with truncation, lengths and reverse above).
EVERY_OPTION_CASES = [
  (n, o) for n in ("lstm", "gru") for o in sorted(set(OPTIONS) - {"plain", "truncate_lengths_reverse"})
]
EVERY_OPTION_CASES += [("lstm_layer_norm", o) for o in ("remat_sqrt_reverse_lengths", "batch_major_unroll", "truncate")]


@pytest.mark.parametrize(("name", "option"), EVERY_OPTION_CASES, ids=[f"{o}-{n}" for n, o in EVERY_OPTION_CASES])
def test_every_option_equals_reference(name, option):
  compare(CELLS[name], OPTIONS[option])


# Recurrent dropout: the fast path's kernels read h * m in every recurrent product; the reference is the plain scan
# of the cells' own apply with recurrent_mask.
RECURRENT_MASK = jnp.asarray((np.random.default_rng(5).random((B, H)) > 0.4) / 0.6, jnp.float32)


# One cell per kernel code path that reads the mask (the other options of a kernel share those lines).
@pytest.mark.parametrize(
  "name", ["elman_relu_no_bias", "gru", "gru_reset_before", "mgu", "lstm_peepholes", "lstm_layer_norm"]
)
def test_recurrent_mask_equals_reference(name):
  cell = jaxrnn.with_recurrent_mask(CELLS[name], RECURRENT_MASK)
  assert fused.fused_spec(cell) is not None
  compare(cell, OPTIONS["truncate_lengths_reverse"])


@pytest.mark.parametrize("name", ["lstm1997", "lstm1997_truncated_gates_bias"])
def test_lstm1997_recurrent_mask_equals_reference(name):
  # The mask covers the cell outputs (C S of them); the gate activations of t-1 enter unmasked.
  cell = CELLS[name]
  CS = jax.tree.leaves(cell.initial_carry(()))[0].shape[-1]
  mask = jnp.asarray((np.random.default_rng(9).random((B, CS)) > 0.4) / 0.6, jnp.float32)
  masked = jaxrnn.with_recurrent_mask(cell, mask)
  assert fused.fused_spec(masked) is not None
  compare(masked, OPTIONS["truncate_lengths_reverse"])


@pytest.mark.parametrize("option", ["remat_sqrt_reverse_lengths", "batch_major_unroll"])
def test_recurrent_mask_with_other_options(option):
  compare(jaxrnn.with_recurrent_mask(CELLS["lstm"], RECURRENT_MASK[0]), OPTIONS[option])  # one (H,) mask


def test_recurrent_mask_per_trial_under_vmap_forward_mode_and_step_mask():
  cell = CELLS["gru_reset_before"]
  params, xs, carry = inputs(cell)
  trials = 3
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *(random_tree(params, s) for s in range(trials)))
  masks = jnp.asarray((np.random.default_rng(6).random((trials, B, H)) > 0.5) * 2.0, jnp.float32)
  step_mask = jnp.asarray(np.random.default_rng(7).random((T, B)) < 0.7)

  def grads(impl):
    def one(p, m):
      return jaxrnn.unroll(jaxrnn.with_recurrent_mask(cell, m), p, xs, carry, impl=impl, mask=step_mask)[1]

    w = jnp.sin(jnp.arange(trials * T * B * H, dtype=jnp.float32)).reshape(trials, T, B, H)
    return jax.jit(jax.grad(lambda p: jnp.sum(w * jax.vmap(one)(p, masks))))(stacked)

  assert rel_err(grads("fused"), grads("reference")) <= GRAD_TOL

  def jvp(impl):
    masked = jaxrnn.with_recurrent_mask(CELLS["lstm_layer_norm"], RECURRENT_MASK)
    p, x, c = inputs(CELLS["lstm_layer_norm"])

    def f(p):
      return jaxrnn.unroll(masked, p, x, c, impl=impl)

    return jax.jit(lambda p, t: jax.jvp(f, (p,), (t,)))(p, random_tree(p, 11))

  assert rel_err(jvp("fused"), jvp("reference")) <= GRAD_TOL


# Resets (a new sequence starts at a step): the kernels' derivative reads the reset carry where the previous step's
# carry would enter. Gradients with respect to the reset carry too.


RESET_CASES = [
  (n, "truncate_lengths_reverse")
  for n in ("elman_relu_no_bias", "gru_reset_before", "mgu", "mgu_no_reset", "lstm_no_forget", "lstm_layer_norm")
]
RESET_CASES += [("lstm", "remat_sqrt_reverse_lengths"), ("gru", "batch_major_unroll"), ("elman", "truncate")]
RESET_CASES += [("lstm_proj", "remat_sqrt_reverse_lengths"), ("lstm1997", "truncate_lengths_reverse")]
RESET_CASES += [("lstm1997_truncated_gates_bias", "remat_sqrt_reverse_lengths")]


@pytest.mark.parametrize(("name", "option"), RESET_CASES, ids=[f"{o}-{n}" for n, o in RESET_CASES])
def test_resets_equal_reference(name, option):
  cell = CELLS[name]
  params, xs, carry = inputs(cell)
  want_grads = check_against_reference(cell, OPTIONS[option], params, xs, carry, random_tree(carry, 12))
  assert float(jnp.max(jnp.abs(jax.tree.leaves(want_grads[3])[0]))) > 0  # the reset carry has a gradient


# time_decay: the wrapped cell's kernel runs with every carry leaf decayed by exp(-softplus(rate) dt) before each
# step. Gradients with respect to the rates and to the time gaps (the input's last feature) too.
def decay_inputs(cell, seed=0):
  params, xs, carry = inputs(cell, seed=seed)
  params = params._replace(rate=random_tree(params.rate, seed + 3, scale=1.0))
  dt = jnp.asarray(np.random.default_rng(seed + 4).exponential(1.0, (T, B, 1)), jnp.float32)
  return params, xs.at[..., -1:].set(dt), carry


DECAY_CASES = [
  (n, "truncate_lengths_reverse")
  for n in ("elman", "gru_reset_before", "mgu", "lstm_peepholes", "lstm_layer_norm", "lstm_proj")
]
DECAY_CASES += [("gru", "remat_sqrt_reverse_lengths"), ("lstm", "batch_major_unroll")]
DECAY_CASES += [("lstm1997", "truncate_lengths_reverse"), ("lstm1997_truncated_gates_bias", "batch_major_unroll")]


@pytest.mark.parametrize(("name", "option"), DECAY_CASES, ids=[f"{o}-{n}" for n, o in DECAY_CASES])
def test_time_decay_equals_reference(name, option):
  cell = jaxrnn.time_decay(CELLS[name], delta_as_input=name.startswith("gru"))
  params, xs, carry = decay_inputs(cell)
  want_grads = check_against_reference(cell, OPTIONS[option], params, xs, carry)
  g_dt = want_grads[1][..., -1]
  assert float(jnp.max(jnp.abs(g_dt))) > 0 and float(jnp.max(jnp.abs(jax.tree.leaves(want_grads[0].rate)[0]))) > 0


def test_time_decay_with_recurrent_mask_resets_forward_mode_and_vmap():
  masked = jaxrnn.with_recurrent_mask(CELLS["lstm"], RECURRENT_MASK)
  for cell in (jaxrnn.time_decay(masked), jaxrnn.with_recurrent_mask(jaxrnn.time_decay(CELLS["lstm"]), RECURRENT_MASK)):
    params, xs, carry = decay_inputs(cell, seed=1)
    reset_carry = random_tree(carry, 12)
    static = (("remat", 4),)
    got_out, got_grads = outputs_and_grads(cell, "fused", static, params, xs, carry, None, reset_carry)
    want_out, want_grads = outputs_and_grads(cell, "reference", static, params, xs, carry, None, reset_carry)
    assert rel_err(got_out, want_out) <= OUT_TOL
    assert rel_err(got_grads, want_grads) <= GRAD_TOL

  cell = jaxrnn.time_decay(CELLS["gru"])
  params, xs, carry = decay_inputs(cell, seed=2)

  def jvp(impl):
    f = lambda p, x: jaxrnn.unroll(cell, p, x, carry, impl=impl)  # noqa: E731
    return jax.jit(lambda p, x, tp, tx: jax.jvp(f, (p, x), (tp, tx)))(params, xs, random_tree(params, 13), xs * 0.5)

  assert rel_err(jvp("fused"), jvp("reference")) <= GRAD_TOL
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *(random_tree(params, s) for s in range(3)))

  def vmapped(impl):
    loss = lambda p: jnp.sum(jnp.tanh(jaxrnn.unroll(cell, p, xs, carry, impl=impl)[1]))  # noqa: E731
    return jax.jit(jax.vmap(jax.value_and_grad(loss)))(stacked)

  assert rel_err(vmapped("fused"), vmapped("reference")) <= GRAD_TOL


@pytest.mark.parametrize("batch_shape", [(), (2, 3)], ids=["unbatched", "two_batch_axes"])
def test_batch_shapes(batch_shape):
  compare(CELLS["lstm_peepholes"], {}, batch_shape=batch_shape)


@pytest.mark.parametrize("name", ["elman", "gru", "lstm"])
def test_long_sequence_several_chunks_and_remat(name):
  # Longer than one chunk (the chunk length scales with 1 / (B H)), with a partial last chunk.
  H = 256 if name == "elman" else 64  # the Elman kernel's chunks hold 4x the steps x batch x units
  cell = {"elman": jaxrnn.elman(H), "gru": jaxrnn.gru(H), "lstm": jaxrnn.lstm(H)}[name]
  _, xs, carry = inputs(cell, (40,))
  xs = jnp.concatenate([xs] * 7)[:61]
  # The cell's own (orthogonal) init: random recurrent weights of this size would make the
  # dynamics chaotic, and 61 steps would amplify float rounding beyond any tolerance.
  params = cell.init(jax.random.key(0), I)
  scale = fused._kernel(fused.fused_spec(cell)).chunk_scale
  assert fused.chunk_length(61, 40, H, scale) < 61  # 61 is prime: chunks of 26 steps and a last one of 9
  assert 60 % fused.chunk_length(60, 40, H, scale) == 0  # 60: two chunks of 30, no shorter last one
  # Lengths that end in the first chunk, at its end, in the next one and in the last one, or hold no step.
  lengths = jnp.asarray([0, 1, 25, 26, 27, 51, 52, 53, 60, 61] * 4, jnp.int32)
  for options, T_, L in [({}, 61, None), ({"remat": 10, "truncate": 25}, 61, None), ({}, 60, None), ({}, 61, lengths)]:
    static = tuple(sorted(options.items()))
    got = outputs_and_grads(cell, "fused", static, params, xs[:T_], carry, L)
    want = outputs_and_grads(cell, "reference", static, params, xs[:T_], carry, L)
    assert rel_err(got[0], want[0]) <= OUT_TOL
    assert rel_err(got[1], want[1]) <= GRAD_TOL


def test_chunk_length_prefers_a_divisor_of_the_length():
  # About CHUNK_ELEMENTS steps x batch x units; the shortest length up to 1.5x that divides T, if any.
  assert fused.chunk_length(200, 8, 512) == 20  # 16 -> 20: ten chunks
  assert fused.chunk_length(100, 64, 128) == 10  # 8 -> 10
  assert fused.chunk_length(1000, 16, 64) == 64  # no divisor of 1000 in 64..96: a last chunk of 40
  assert fused.chunk_length(61, 40, 64) == 26  # prime
  assert fused.chunk_length(5, 1, 1) == 5  # at most T


def test_mapped_size_counts_the_enclosing_vmaps():
  seen = []

  def f(w, x):
    seen.append(fused.mapped_size((w, x)))
    return jnp.sum(jnp.tanh(x @ w))

  w, x = jnp.ones((3, 4)), jnp.ones((5, 3))
  W, X = jnp.ones((7, 3, 4)), jnp.ones((7, 5, 3))
  cases = {
    "plain": (lambda: f(w, x), 1),
    "grad": (lambda: jax.grad(f)(w, x), 1),
    "jit(vmap(grad))": (lambda: jax.jit(jax.vmap(jax.grad(f)))(W, X), 7),
    "only the params mapped": (lambda: jax.vmap(f, in_axes=(0, None))(W, x), 7),
    "grad of a vmap": (lambda: jax.grad(lambda W: jnp.sum(jax.vmap(f, in_axes=(0, None))(W, x)))(W), 7),
    "vmap of vmap": (lambda: jax.vmap(jax.vmap(f))(jnp.ones((2, 7, 3, 4)), jnp.ones((2, 7, 5, 3))), 14),
    "jvp of a vmap": (lambda: jax.jvp(lambda W: jax.vmap(f)(W, X), (W,), (W,)), 7),
    # A vmap that batches a function traced before it (jit, a scan's body) is not seen.
    "vmap of jit": (lambda: jax.vmap(jax.jit(jax.grad(f)))(W, X), 1),
    "scan in a vmap": (
      lambda: jax.vmap(lambda w, x: jax.lax.scan(lambda c, _: (c + f(w, x), None), 0.0, None, 2))(W, X),
      1,
    ),
  }
  for name, (run, want) in cases.items():
    seen.clear()
    run()
    assert seen == [want], name


def test_the_vmap_probe_under_other_transformations():
  """The fast path's probe of enclosing vmaps (a custom_vmap) under checkpoint, shard_map and export."""
  cell = CELLS["lstm"]
  params, xs, carry = inputs(cell)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), params, random_tree(params, 5))
  xs2 = jnp.stack([xs, 0.5 * xs])

  def loss(impl):
    return lambda p, x: jnp.sum(jaxrnn.unroll(cell, p, x, carry, impl=impl)[1] ** 2)

  want = jax.vmap(jax.grad(loss("reference")))(stacked, xs2)
  mesh = jax.make_mesh((1,), ("d",))
  spec = jax.sharding.PartitionSpec()
  runs = {
    "checkpoint": jax.jit(jax.vmap(jax.grad(jax.checkpoint(loss("fused"))))),
    "shard_map": jax.jit(
      jax.shard_map(jax.vmap(jax.grad(loss("fused"))), mesh=mesh, in_specs=(spec, spec), out_specs=spec)
    ),
    "export": jax.export.export(jax.jit(jax.vmap(jax.grad(loss("fused")))))(stacked, xs2).call,
  }
  for name, run in runs.items():
    assert rel_err(run(stacked, xs2), want) <= GRAD_TOL, name


def test_vmapped_chunks_hold_every_example(monkeypatch):
  """Under vmap the derivative's chunks are sized for the rows of every example (``fused.mapped_size``) once
  one example's chunks over all of them would hold more than ``MAPPED_SLACK`` times the target, and the vmapped
  fast path still equals the reference path; ``fused.chunks_per_example`` restores one example's chunks."""
  cell, N, H_, B_, T_ = jaxrnn.gru(64), 4, 64, 40, 61
  params = jax.vmap(lambda k: cell.init(k, I))(jax.random.split(jax.random.key(3), N))
  xs = jax.random.normal(jax.random.key(4), (N, T_, B_, I))
  rows = []
  length = fused.chunk_length
  monkeypatch.setattr(fused, "chunk_length", lambda T, B, H, scale=1: rows.append(B) or length(T, B, H, scale))

  def grads(impl, per_example=False):
    def loss(p, x):
      with fused.chunks_per_example() if per_example else contextlib.nullcontext():
        return jnp.sum(jaxrnn.unroll(cell, p, x, impl=impl)[1] ** 2)

    return jax.jit(jax.vmap(jax.value_and_grad(loss)))(params, xs)

  want = grads("reference")
  rows.clear()
  got = grads("fused")
  # One example's chunks of 26 steps, over the 4 examples, are past the slack: chunks of 6 steps.
  assert N * 26 * B_ * H_ > fused.MAPPED_SLACK * fused.CHUNK_ELEMENTS
  assert rows == [B_, N * B_] and length(T_, B_, H_) == 26 and length(T_, N * B_, H_) == 6
  assert rel_err(got, want) <= GRAD_TOL
  rows.clear()
  got = grads("fused", per_example=True)
  assert rows == [B_]
  assert rel_err(got, want) <= GRAD_TOL
  # Within the slack (a third of the rows each), one example's chunks stay.
  rows.clear()
  jax.jit(jax.vmap(jax.grad(lambda p, x: jnp.sum(jaxrnn.unroll(cell, p, x)[1] ** 2))))(params, xs[:, :, :13])
  assert N * length(T_, 13, H_) * 13 * H_ <= fused.MAPPED_SLACK * fused.CHUNK_ELEMENTS and rows == [13]


def test_vmap_over_params_of_grad():
  cell = CELLS["gru"]
  params, xs, carry = inputs(cell)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), params, random_tree(params, 7))

  def grads(impl):
    def loss(p):
      return jnp.sum(jaxrnn.unroll(cell, p, xs, carry, impl=impl)[1] ** 2)

    return jax.jit(jax.vmap(jax.grad(loss)))(stacked)

  assert rel_err(grads("fused"), grads("reference")) <= GRAD_TOL


@pytest.mark.parametrize("name", ["lstm_peepholes", "lstm_layer_norm"])
def test_forward_mode_and_second_order(name):
  cell = CELLS[name]
  params, xs, carry = inputs(cell)
  tangents = random_tree(params, 11)

  def jvp(impl):
    def f(p):
      return jaxrnn.unroll(cell, p, xs, carry, impl=impl, lengths=jnp.asarray(LENGTHS, jnp.int32))

    return jax.jit(lambda p, t: jax.jvp(f, (p,), (t,)))(params, tangents)

  assert rel_err(jvp("fused"), jvp("reference")) <= GRAD_TOL

  def hvp(impl):
    def loss(p):
      return jnp.sum(jnp.tanh(jaxrnn.unroll(cell, p, xs, carry, impl=impl)[1]))

    return jax.jit(lambda p, t: jax.jvp(jax.grad(loss), (p,), (t,))[1])(params, tangents)

  assert rel_err(hvp("fused"), hvp("reference")) <= GRAD_TOL


def test_stacked_and_bidirectional_layers():
  net = jaxrnn.stacked(jaxrnn.bidirectional(jaxrnn.lstm(H), jaxrnn.gru(H)), jaxrnn.elman(H))
  params = net.init(jax.random.key(0), I)
  xs = random_tree(jax.ShapeDtypeStruct((T, B, I), jnp.float32), 1, scale=1.0)
  lengths = jnp.asarray(LENGTHS, jnp.int32)

  def run(impl):
    # Layers call unroll with its default impl; switch the fast path off by hand for the reference.
    def loss(p):
      return jnp.sum(jnp.sin(net.apply(p, xs, lengths=lengths)[1]))

    if impl == "reference":
      with _fast_path_off():
        return jax.jit(jax.value_and_grad(loss))(params)
    return jax.jit(jax.value_and_grad(loss))(params)

  got, want = run("fused"), run("reference")
  assert rel_err(got[0], want[0]) <= OUT_TOL
  assert rel_err(got[1], want[1]) <= GRAD_TOL


@contextlib.contextmanager
def _fast_path_off():
  """Makes ``impl="auto"`` take the reference path within the block (by hiding every cell's description)."""
  saved = fused.fused_spec
  fused.fused_spec = lambda cell: None
  try:
    yield
  finally:
    fused.fused_spec = saved


def test_float64():
  cell = CELLS["lstm"]
  with jax.enable_x64(True):
    params, xs, carry = jax.tree.map(lambda a: a.astype(jnp.float64), inputs(cell))
    got = outputs_and_grads(cell, "fused", (), params, xs, carry, None)
    want = outputs_and_grads(cell, "reference", (), params, xs, carry, None)
    assert got[0][1].dtype == jnp.float64
    assert rel_err(got, want) <= 1e-12


def test_other_cells_take_the_reference_path():
  inner = jaxrnn.gru(H)
  wrapped = jaxrnn.Cell(inner.init, inner.initial_carry, lambda p, c, x: inner.apply(p, c, x))
  params, xs, carry = inputs(inner)
  assert fused.fused_spec(wrapped) is None
  got = jaxrnn.unroll(wrapped, params, xs, carry)
  want = jaxrnn.unroll(inner, params, xs, carry, impl="reference")
  assert rel_err(got, want) <= OUT_TOL
  with pytest.raises(ValueError, match="impl='fused'"):
    jaxrnn.unroll(wrapped, params, xs, carry, impl="fused")
  with pytest.raises(ValueError, match="impl"):
    jaxrnn.unroll(inner, params, xs, carry, impl="fast")
  custom = jaxrnn.lstm1997(2, 2, cell_output_squash=jnp.tanh)  # a callable squash: no kernel
  assert fused.fused_spec(custom) is None and fused.fused_spec(jaxrnn.lstm1997(2, 2)) is not None


def test_errors_are_the_cells_own():
  cell = CELLS["lstm"]
  params, xs, carry = inputs(cell)
  with pytest.raises(ValueError, match="input_size 4"):
    jaxrnn.unroll(cell, params, jnp.ones((T, B, 7)), impl="fused")
  with pytest.raises(TypeError, match="dtype"):
    jaxrnn.unroll(cell, params, xs.astype(jnp.bfloat16), impl="fused")


@pytest.mark.parametrize("option", [{"lengths": True, "reverse": True}, {"mask": True}])
def test_gradient_of_jitted_vmap_with_per_trial_lengths_or_masks(option):
  """A sweep's pattern: trials vmapped inside one jitted function, each with its own lengths (reversed) or
  mask, differentiated from outside. The reversal and the mask gather the fast path's outputs with mapped
  indices; with jax 0.10.2 this failed to compile until the fast path's outputs were made canonical."""
  cell = CELLS["gru"]
  params, xs, carry = inputs(cell)
  trials = 3
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *(random_tree(params, s) for s in range(trials)))
  lengths = jnp.asarray([[T, 4, 0], [2, T, 5], [1, 1, 8]], jnp.int32)
  masks = jnp.asarray(np.random.default_rng(3).random((trials, T, B)) < 0.6)

  def loss(impl):
    def one(p, l, m):
      kwargs = {"mask": m} if "mask" in option else {"lengths": l, "reverse": True}
      return jaxrnn.unroll(cell, p, xs, carry, impl=impl, **kwargs)[1]

    f = jax.jit(jax.vmap(one))
    w = jnp.sin(jnp.arange(trials * T * B * H, dtype=jnp.float32)).reshape(trials, T, B, H)
    return jax.grad(lambda p: jnp.sum(w * f(p, lengths, masks)))(stacked)

  assert rel_err(loss("fused"), loss("reference")) <= GRAD_TOL


# GRU-D: the fast path computes every step's imputed input at once (the last observed value by a running maximum
# of step indices within each segment between resets) and runs the GRU kernel (reset before the product) with the
# hidden decay as a carry factor. Gradients with respect to the values, the time gaps, the initial carry's x_last
# (read until a feature is first observed) and the reset carry too.
GRUD = jaxrnn.grud(H, 2, x_mean=np.array([0.3, -0.7]))


def grud_inputs(seed=0):
  rng = np.random.default_rng(seed)
  params = random_tree(jax.eval_shape(lambda k: GRUD.init(k, 6), jax.random.key(0)), seed)
  values = rng.standard_normal((T, B, 2))
  observed = rng.random((T, B, 2)) < 0.35
  delta = rng.exponential(1.0, (T, B, 2))
  xs = jnp.asarray(np.concatenate([values, observed, delta], axis=-1), jnp.float32)
  carry = jaxrnn.GRUDCarry(
    jnp.asarray(rng.standard_normal((B, H)), jnp.float32),
    jnp.asarray(rng.standard_normal((B, 2)), jnp.float32),
    jnp.asarray(rng.random((B, 2)) < 0.5, jnp.float32),  # some features seen before the sequence, some not
  )
  return params, xs, carry


GRUD_CASES = [
  "plain",
  "reverse",
  "truncate_lengths_reverse",
  "remat_sqrt_reverse_lengths",
  "batch_major_unroll",
  "truncate",
]


@pytest.mark.parametrize("option", GRUD_CASES + [f"resets-{o}" for o in [*GRUD_CASES, "lengths"]])
def test_grud_equals_reference(option):
  assert fused.fused_spec(GRUD) is not None
  params, xs, carry = grud_inputs()
  reset_carry = None
  if option.startswith("resets-"):
    reset_carry = random_tree(carry, 12)._replace(seen=jnp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
  want_grads = check_against_reference(GRUD, OPTIONS[option.removeprefix("resets-")], params, xs, carry, reset_carry)
  # The initial carry's x_last (imputed from until a feature is observed) and the time gaps have gradients.
  assert float(jnp.max(jnp.abs(want_grads[2].x_last))) > 0
  assert float(jnp.max(jnp.abs(want_grads[1][..., 4:]))) > 0


def test_grud_with_step_mask_recurrent_mask_vmap_and_forward_mode():
  params, xs, carry = grud_inputs(seed=1)
  step_mask = jnp.asarray(np.random.default_rng(9).random((T, B)) < 0.6)
  cell = jaxrnn.with_recurrent_mask(GRUD, RECURRENT_MASK)
  assert fused.fused_spec(cell) is not None
  reset_carry = random_tree(carry, 12)._replace(seen=jnp.ones((B, 2)))

  def grads(impl):
    def loss(p, xs, c, rc):
      out = jaxrnn.unroll(cell, p, xs, c, impl=impl, mask=step_mask, resets=jnp.asarray(RESETS), reset_carry=rc)
      w = [jnp.cos(jnp.arange(a.size, dtype=a.dtype).reshape(a.shape)) for a in jax.tree.leaves(out)]
      return sum(jnp.sum(wi * a) for wi, a in zip(w, jax.tree.leaves(out))), out

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(params, xs, carry, reset_carry)

  assert rel_err(grads("fused"), grads("reference")) <= GRAD_TOL

  stacked = jax.tree.map(lambda *a: jnp.stack(a), *(random_tree(params, s) for s in range(3)))

  def vmapped(impl):
    loss = lambda p: jnp.sum(jnp.tanh(jaxrnn.unroll(GRUD, p, xs, carry, impl=impl, reverse=True)[1]))  # noqa: E731
    return jax.jit(jax.vmap(jax.value_and_grad(loss)))(stacked)

  assert rel_err(vmapped("fused"), vmapped("reference")) <= GRAD_TOL

  def jvp(impl):
    f = lambda p, x, c: jaxrnn.unroll(GRUD, p, x, c, impl=impl, lengths=jnp.asarray(LENGTHS, jnp.int32))  # noqa: E731
    tangents = (random_tree(params, 13), xs * 0.5, random_tree(carry, 14))
    return jax.jit(lambda *a: jax.jvp(f, a[:3], a[3:]))(params, xs, carry, *tangents)

  assert rel_err(jvp("fused"), jvp("reference")) <= GRAD_TOL


def test_grud_takes_the_reference_path_with_traced_means_or_inside_time_decay():
  params, xs, carry = grud_inputs()

  @jax.jit
  def traced(mean):
    cell = jaxrnn.grud(H, 2, x_mean=mean)
    assert fused.fused_spec(cell) is None
    return jaxrnn.unroll(cell, params, xs, carry)

  assert rel_err(traced(jnp.asarray([0.3, -0.7])), jaxrnn.unroll(GRUD, params, xs, carry, impl="reference")) <= OUT_TOL
  decayed = jaxrnn.time_decay(GRUD)  # would decay x_last and seen as well: no kernel for that
  with pytest.raises(ValueError, match="impl='fused'"):
    jaxrnn.unroll(decayed, decayed.init(jax.random.key(0), 7), jnp.ones((T, B, 7)), impl="fused")


# The LSTM kernel's inference (no derivative taken) computes x W_x + h W_h as one product of [x, h] and
# [W_x; W_h] per step (fused._xh_joint), and the GRU's (reset after the product) one of [x, h] and a kernel with
# a block of zeros (fused._joint_reset_after); their derivatives' forward passes keep the two products.
INFERENCE_CASES = [
  (n, o)
  for n in (
    "lstm",
    "lstm_peepholes",
    "lstm_no_forget_peepholes_no_bias",
    "lstm_proj_peepholes_no_forget",
    "gru",
    "gru_no_bias",
    "mgu",
    "mgu_no_reset",
  )
  for o in ("plain", "lengths_reverse", "batch_major_unroll", "truncate")
]


@pytest.mark.parametrize(("name", "option"), INFERENCE_CASES, ids=[f"{o}-{n}" for n, o in INFERENCE_CASES])
def test_joint_product_inference_equals_reference(name, option):
  cell = CELLS[name]
  params, xs, carry = inputs(cell, seed=3)
  kwargs = dict(OPTIONS[option])
  if "lengths" in kwargs:
    kwargs["lengths"] = jnp.asarray(kwargs["lengths"], jnp.int32)
  if not kwargs.get("time_major", True):
    xs = jnp.moveaxis(xs, 0, -2)
  got = jax.jit(lambda p, xs, c: jaxrnn.unroll(cell, p, xs, c, impl="fused", **kwargs))(params, xs, carry)
  want = jaxrnn.unroll(cell, params, xs, carry, impl="reference", **kwargs)
  assert rel_err(got, want) <= OUT_TOL


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu"])
def test_joint_product_inference_with_recurrent_mask_and_resets_equals_reference(name):
  cell = jaxrnn.with_recurrent_mask(CELLS[name], RECURRENT_MASK)
  params, xs, carry = inputs(CELLS[name], seed=4)
  resets = jnp.asarray(RESETS)
  got = jax.jit(lambda p, xs: jaxrnn.unroll(cell, p, xs, carry, resets=resets))(params, xs)
  assert rel_err(got, jaxrnn.unroll(cell, params, xs, carry, resets=resets, impl="reference")) <= OUT_TOL


# Per cell: the fused-module rule patched to take two products per step everywhere, and its patched value.
TWO_PRODUCTS_PATCH = {
  "lstm": ("JOINT_MAX_BYTES", 0),
  "gru": ("_joint_reset_after", lambda rows, i, h: False),
  "mgu": ("_joint_reset_after", lambda rows, i, h: False),
}


@pytest.mark.parametrize("name", sorted(TWO_PRODUCTS_PATCH))
def test_inference_takes_one_product_per_step_where_the_rule_allows(name, monkeypatch):
  cell = CELLS[name]
  params, xs, carry = inputs(cell)

  def infer(p):
    return jaxrnn.unroll(cell, p, xs, carry)

  def train(p):
    return jax.grad(lambda p: jnp.sum(jnp.sin(jaxrnn.unroll(cell, p, xs, carry)[1])))(p)

  assert scan_products(infer, params) == [1]
  grads = jax.jit(train)(params)
  monkeypatch.setattr(fused, *TWO_PRODUCTS_PATCH[name])
  jax.clear_caches()  # unroll's traces are cached; trace again under the patched rule
  assert scan_products(infer, params) == [2]
  np.testing.assert_allclose(jax.jit(infer)(params)[1], jaxrnn.unroll(cell, params, xs, carry)[1], rtol=1e-6)
  # Training never takes the joint product: its gradients are the same to the bit either way.
  for a, b in zip(jax.tree.leaves(jax.jit(train)(params)), jax.tree.leaves(grads), strict=True):
    np.testing.assert_array_equal(a, b)
  monkeypatch.undo()
  jax.clear_caches()  # no trace made under the patched rule outlives this test


def test_gru_with_the_reset_before_the_product_keeps_three_products_per_step():
  """The reset multiplies h before the candidate's product, so its inference has no joint product."""
  cell = CELLS["gru_reset_before"]
  params, xs, carry = inputs(cell)
  assert scan_products(lambda p: jaxrnn.unroll(cell, p, xs, carry), params) == [3]


def test_joint_reset_after_rule_counts_the_rows_of_every_vmapped_example():
  """The zeros' work is counted over the rows of all examples an enclosing vmap runs (fused.mapped_size)."""
  h, i, b, n = 32, 8, 4, 16  # 4 rows: 5,120 multiply-adds of zeros per step; 16 examples of them: 81,920
  assert fused._joint_reset_after(b, i, h) and not fused._joint_reset_after(b * n, i, h)
  cell = jaxrnn.gru(h)
  params = cell.init(jax.random.key(0), i)
  xs = jnp.ones((n, 3, b, i), jnp.float32)
  one = jax.jit(lambda p, xs: jaxrnn.unroll(cell, p, xs)[1])
  assert scan_products(one, params, xs[0]) == [1]
  every = jax.jit(jax.vmap(lambda xs: jaxrnn.unroll(cell, params, xs)[1]))
  assert scan_products(every, xs) == [2]
  np.testing.assert_allclose(every(xs)[3], one(params, xs[3]), rtol=1e-5, atol=1e-6)
  # Small hidden layers take one product at any size: there two products' step is left unvectorised by XLA CPU.
  assert fused._joint_reset_after(1024, 8, 8) and not fused._joint_reset_after(1, 2, 1)


def wide_batch_inference_jaxpr(make_cell, option, seed, h=12, b=32):
  """``make_cell(h)`` with a recurrent mask, run over ``b`` rows with ``OPTIONS[option]``: its inference equals the
  reference path's; returns the jaxpr of that inference (to see which step it took)."""
  mask = jnp.asarray((np.random.default_rng(seed).random((b, h)) > 0.3) / 0.7, jnp.float32)
  cell = jaxrnn.with_recurrent_mask(make_cell(h), mask)
  params = random_tree(jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)), seed + 1)
  xs = random_tree(jax.ShapeDtypeStruct((T, b, I), jnp.float32), seed + 2, scale=1.0)
  carry = random_tree(jax.eval_shape(lambda: cell.initial_carry((b,))), seed + 3)
  kwargs = dict(OPTIONS[option])
  if "lengths" in kwargs:
    kwargs["lengths"] = jnp.asarray(np.random.default_rng(seed + 4).integers(0, T + 1, b), jnp.int32)
  got = jax.jit(lambda p, xs, c: jaxrnn.unroll(cell, p, xs, c, **kwargs))(params, xs, carry)
  want = jaxrnn.unroll(cell, params, xs, carry, impl="reference", **kwargs)
  assert rel_err(got, want) <= OUT_TOL
  return str(jax.make_jaxpr(lambda p: jaxrnn.unroll(cell, p, xs, carry, **kwargs)[1])(params))


TRANSPOSED_CASES = [(c, o) for c in ("gru", "mgu", "mgu_no_reset") for o in ("plain", "lengths_reverse", "truncate")]
RESET_AFTER = {"gru": jaxrnn.gru, "mgu": jaxrnn.mgu, "mgu_no_reset": functools.partial(jaxrnn.mgu, reset_gate=False)}


@pytest.mark.parametrize(("name", "option"), TRANSPOSED_CASES, ids=[f"{o}-{n}" for n, o in TRANSPOSED_CASES])
def test_transposed_reset_after_inference_equals_reference(name, option):
  """At 8 < H < 16 with 32 rows or more the GRU's and the MGU's inference run their step transposed
  (fused._transposed_reset_after), lengths or not (the step is the scan's); the reference path's cell runs
  untransposed."""
  rule = fused._transposed_reset_after
  assert rule(32, 12) and not rule(32, 16) and not rule(16, 12)
  jaxpr = wide_batch_inference_jaxpr(RESET_AFTER[name], option, seed=6)
  # The transposed step is the one taken: one product whose result has the gates first, (4 H, B) or (3 H, B).
  assert f"f32[{(4 if name == 'gru' else 3) * 12},32] = dot_general" in jaxpr


TRANSPOSED_LSTM_CASES = [
  (n, o)
  for n in ("plain", "peepholes", "no_forget", "no_forget_peepholes_no_bias")
  for o in ("plain", "reverse", "truncate", "lengths_reverse")
]
TRANSPOSED_LSTMS = {
  "plain": {},
  "peepholes": {"peepholes": True},
  "no_forget": {"forget_gate": False},
  "no_forget_peepholes_no_bias": {"forget_gate": False, "peepholes": True, "bias": False},
}


@pytest.mark.parametrize(("name", "option"), TRANSPOSED_LSTM_CASES, ids=[f"{o}-{n}" for n, o in TRANSPOSED_LSTM_CASES])
def test_transposed_lstm_inference_equals_reference(name, option):
  """At H < 16 with 32 rows or more the LSTM's inference scans on transposed arrays (fused._transposed_lstm), with
  lengths too (each column's carry held through its padding)."""
  assert fused._transposed_lstm(32, 12) and not fused._transposed_lstm(32, 16) and not fused._transposed_lstm(16, 12)
  jaxpr = wide_batch_inference_jaxpr(functools.partial(jaxrnn.lstm, **TRANSPOSED_LSTMS[name]), option, seed=11)
  gates = (4 if name in ("plain", "peepholes") else 3) * 12
  assert f"f32[{gates},32] = dot_general" in jaxpr


def test_transposed_lstm_inference_with_a_mask_equals_reference():
  """A mask runs as lengths after moving the kept steps forward (jaxrnn.unroll): transposed too, and equal."""
  cell, h, b = jaxrnn.lstm(12, peepholes=True), 12, 32
  params = random_tree(jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)), 21)
  xs = random_tree(jax.ShapeDtypeStruct((T, b, I), jnp.float32), 22, scale=1.0)
  mask = jnp.asarray(np.random.default_rng(23).random((T, b)) < 0.6)
  got = jax.jit(lambda p, xs: jaxrnn.unroll(cell, p, xs, mask=mask))(params, xs)
  assert rel_err(got, jaxrnn.unroll(cell, params, xs, mask=mask, impl="reference")) <= OUT_TOL
  jaxpr = str(jax.make_jaxpr(lambda p: jaxrnn.unroll(cell, p, xs, mask=mask)[1])(params))
  assert f"f32[{4 * h},{b}] = dot_general" in jaxpr


@pytest.mark.parametrize("proj_size", [None, 5])
def test_transposed_lstm_is_not_taken_with_a_projection_or_in_the_engine(proj_size):
  h, b = 12, 32
  xs = jnp.ones((T, b, I), jnp.float32)
  cell = jaxrnn.lstm(h, proj_size=proj_size)
  params = cell.init(jax.random.key(0), I)
  transposed = f"f32[{4 * h},{b}] = dot_general" in str(jax.make_jaxpr(lambda p: jaxrnn.unroll(cell, p, xs))(params))
  assert transposed == (proj_size is None)
  with fused.two_products_per_step():  # as the experiments' engine evaluates: the training step's products
    assert scan_products(lambda p: jaxrnn.unroll(cell, p, xs), params) == [2 if proj_size is None else 3]


@pytest.mark.parametrize("name", ["gru", "mgu", "lstm_peepholes"])
def test_transposed_inference_under_vmap_batch_major_and_unrolled(name):
  """The transposed steps (fused._transposed_reset_after, fused._transposed_lstm) with the batch axis second and two
  steps per iteration, and under vmap (each example's 32 rows transposed), equal the reference path."""
  make = {"gru": jaxrnn.gru, "mgu": jaxrnn.mgu, "lstm_peepholes": functools.partial(jaxrnn.lstm, peepholes=True)}
  cell, b = make[name](12), 32
  params = random_tree(jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0)), 16)
  xs = random_tree(jax.ShapeDtypeStruct((3, b, T, I), jnp.float32), 17, scale=1.0)
  kwargs = {"time_major": False, "unroll": 2}
  got = jax.jit(lambda p, xs: jaxrnn.unroll(cell, p, xs, **kwargs))(params, xs[0])
  assert rel_err(got, jaxrnn.unroll(cell, params, xs[0], impl="reference", **kwargs)) <= OUT_TOL
  mapped = jax.jit(jax.vmap(lambda xs: jaxrnn.unroll(cell, params, xs, time_major=False)[1]))(xs)
  for k in range(3):
    want = jaxrnn.unroll(cell, params, xs[k], time_major=False, impl="reference")[1]
    assert rel_err(mapped[k], want) <= OUT_TOL
  gates = {"gru": 4, "mgu": 3, "lstm_peepholes": 4}[name] * 12
  assert f"f32[{gates},{b}] = dot_general" in str(
    jax.make_jaxpr(lambda xs: jaxrnn.unroll(cell, params, xs[0], **kwargs))(xs)
  )
