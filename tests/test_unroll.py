"""jaxrnn.unroll's options against references built by hand: lengths, reverse, layout, truncated BPTT."""

from __future__ import annotations

import functools
import math
import re

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn

T, I = 6, 3
CELLS = {
  "elman": jaxrnn.elman(4),
  "gru": jaxrnn.gru(3),
  "lstm_peepholes": jaxrnn.lstm(3, peepholes=True),
  "lstm1997": jaxrnn.lstm1997(2, 1),
}
NAMES = sorted(CELLS)
TOL = {"rtol": 1e-5, "atol": 1e-6}


def random_tree(tree, rng, scale=0.5):
  return jax.tree.map(lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), tree)


def random_params(name, seed=0):
  cell = CELLS[name]
  shapes = jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0))
  return random_tree(shapes, np.random.default_rng(seed))  # every bias and peephole nonzero


PARAMS = {name: random_params(name) for name in NAMES}

# Compiled once per cell, option set and shape, and reused by every test and hypothesis example.
run = jax.jit(jaxrnn.unroll, static_argnums=0, static_argnames=("reverse", "time_major", "truncate", "unroll"))


def random_carry(cell, batch_shape, rng):
  return random_tree(jax.eval_shape(lambda: cell.initial_carry(batch_shape)), rng)


def at(tree, idx):
  """Batch element ``idx`` of a carry (batch axes first)."""
  return jax.tree.map(lambda a: a[idx], tree)


def padded_inputs(rng, batch_shape, lengths):
  """``(T, *batch, I)`` inputs whose padding (steps at or past each length) is large garbage."""
  xs = rng.standard_normal((T, *batch_shape, I))
  pad = np.arange(T).reshape((T,) + (1,) * len(batch_shape)) >= lengths[None]
  return jnp.asarray(np.where(pad[..., None], 1e3 * rng.standard_normal(xs.shape), xs), jnp.float32)


def check_against_unpadded(name, xs, lengths, carry0, reverse):
  """Every sequence of the padded batch gives what it gives alone, unpadded; outputs past its length are 0."""
  cell, params = CELLS[name], PARAMS[name]
  batch_shape = lengths.shape
  carry, ys = run(cell, params, xs, carry0, lengths=jnp.asarray(lengths), reverse=reverse)
  for idx in np.ndindex(*batch_shape):
    L = int(lengths[idx])
    seq = xs[(slice(0, L), *idx)]
    # The reference reads the valid part forward (or flipped, for reverse) with no lengths at all.
    ref_carry, ref_ys = run(cell, params, seq[::-1] if reverse else seq, at(carry0, idx))
    if reverse:
      ref_ys = ref_ys[::-1]
    chex.assert_trees_all_close(ys[(slice(0, L), *idx)], ref_ys, **TOL)
    np.testing.assert_array_equal(ys[(slice(L, None), *idx)], 0.0)
    chex.assert_trees_all_close(at(carry, idx), ref_carry, **TOL)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_padding_never_changes_valid_outputs_or_final_carry(data):
  name = data.draw(st.sampled_from(NAMES), label="cell")
  batch_shape = data.draw(st.sampled_from([(), (3,), (2, 2)]), label="batch_shape")
  n = math.prod(batch_shape)
  lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=n, max_size=n)), np.int32).reshape(batch_shape)
  reverse = data.draw(st.booleans(), label="reverse")
  rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
  xs = padded_inputs(rng, batch_shape, lengths)
  check_against_unpadded(name, xs, lengths, random_carry(CELLS[name], batch_shape, rng), reverse)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_lengths_zero_and_full(name, reverse):
  """Lengths 0 (the carry passes through untouched, outputs are all zero) and T (no padding) side by side."""
  lengths = np.array([0, T, 2, 1, T - 1], np.int32)
  rng = np.random.default_rng(1)
  xs = padded_inputs(rng, lengths.shape, lengths)
  carry0 = random_carry(CELLS[name], lengths.shape, rng)
  check_against_unpadded(name, xs, lengths, carry0, reverse)
  carry, ys = run(CELLS[name], PARAMS[name], xs, carry0, lengths=jnp.asarray(lengths), reverse=reverse)
  chex.assert_trees_all_close(at(carry, 0), at(carry0, 0))
  np.testing.assert_array_equal(ys[:, 0], 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_reverse_without_lengths_is_running_on_flipped_inputs(name):
  cell, params = CELLS[name], PARAMS[name]
  rng = np.random.default_rng(2)
  xs = jnp.asarray(rng.standard_normal((T, 2, I)), jnp.float32)
  carry0 = random_carry(cell, (2,), rng)
  carry, ys = run(cell, params, xs, carry0, reverse=True)
  ref_carry, ref_ys = run(cell, params, xs[::-1], carry0)
  chex.assert_trees_all_close((carry, ys), (ref_carry, ref_ys[::-1]), **TOL)
  assert not np.allclose(ys, run(cell, params, xs, carry0)[1])  # reverse really is different


def test_reverse_valid_reverses_each_valid_part():
  xs = jnp.arange(5 * 3, dtype=jnp.float32).reshape(5, 3, 1)
  lengths = jnp.array([5, 2, 0])
  got = jaxrnn.reverse_valid(xs, lengths)
  want = np.asarray(xs).copy()
  want[:5, 0] = want[:5, 0][::-1]
  want[:2, 1] = want[:2, 1][::-1]
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(jaxrnn.reverse_valid(got, lengths), xs)  # its own inverse


@pytest.mark.parametrize("name", NAMES)
def test_batch_major_layout_is_the_transpose(name):
  cell, params = CELLS[name], PARAMS[name]
  rng = np.random.default_rng(3)
  lengths = jnp.asarray(rng.integers(0, T + 1, (2, 3)), jnp.int32)
  xs = jnp.asarray(rng.standard_normal((T, 2, 3, I)), jnp.float32)
  xs_bm = jnp.moveaxis(xs, 0, -2)  # (2, 3, T, I)
  for kwargs in ({}, {"lengths": lengths, "reverse": True}):
    carry, ys = run(cell, params, xs, **kwargs)
    carry_bm, ys_bm = run(cell, params, xs_bm, time_major=False, **kwargs)
    chex.assert_shape(ys_bm, (2, 3, T, ys.shape[-1]))
    chex.assert_trees_all_close((carry_bm, ys_bm), (carry, jnp.moveaxis(ys, 0, -2)), **TOL)


@pytest.mark.parametrize("name", ["elman", "lstm_peepholes"])
def test_scan_unroll_option_does_not_change_results(name):
  cell, params = CELLS[name], PARAMS[name]
  xs = jax.random.normal(jax.random.key(0), (T, 2, I))
  want = run(cell, params, xs)
  for u in (2, 4, True):
    chex.assert_trees_all_close(run(cell, params, xs, unroll=u), want, **TOL)


@pytest.mark.parametrize(("backend", "steps"), [("cpu", 1), ("gpu", 8), ("tpu", 8)])
@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_default_unroll_follows_the_backend(monkeypatch, backend, steps, impl):
  # unroll=None traces the scans over steps with default_unroll() steps per iteration: 1 on the CPU, 8 on a
  # GPU or TPU (the fast path's loop over chunks of steps stays a plain loop).
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert jaxrnn.default_unroll() == steps
  cell, params = CELLS["lstm_peepholes"], PARAMS["lstm_peepholes"]
  xs = jnp.ones((T, 2, I))
  loss = lambda p: jnp.sum(jaxrnn.unroll(cell, p, xs, impl=impl)[1])  # noqa: E731
  jaxpr = jax.make_jaxpr(jax.grad(loss))(params)
  scans = [e for e in jax_core_eqns(jaxpr.jaxpr) if e.primitive.name == "scan"]
  unrolls = {e.params["unroll"] for e in scans}
  assert max(unrolls) == steps and unrolls <= {1, steps}


def jax_core_eqns(jaxpr):
  """Every equation of ``jaxpr``, those inside sub-jaxprs (scan bodies, custom derivatives) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from jax_core_eqns(sub)


# ----------------------------------------------------------------------------
# Truncated BPTT


def chunked_reference(cell, params, xs, carry, k):
  """Truncated BPTT by hand: a Python loop of steps that stops the carry's gradient before steps k, 2k, ..."""
  ys = []
  for t in range(xs.shape[0]):
    if t > 0 and t % k == 0:
      carry = jax.lax.stop_gradient(carry)
    carry, y = cell.apply(params, carry, xs[t])
    ys.append(y)
  return carry, jnp.stack(ys)


def weighted_loss(carry, ys, w_ys, w_carry):
  """A loss that reads every output and the final carry, with fixed random weights."""
  return jnp.sum(ys * w_ys) + sum(jnp.sum(c * w) for c, w in zip(jax.tree.leaves(carry), jax.tree.leaves(w_carry)))


def truncation_case(name, batch_shape, seed):
  cell = CELLS[name]
  rng = np.random.default_rng(seed)
  xs = jnp.asarray(rng.standard_normal((T, *batch_shape, I)), jnp.float32)
  carry0 = random_carry(cell, batch_shape, rng)
  out_size = jax.eval_shape(lambda: run(cell, PARAMS[name], xs))[1].shape[-1]
  w_ys = jnp.asarray(rng.standard_normal((T, *batch_shape, out_size)), jnp.float32)
  w_carry = random_carry(cell, batch_shape, rng)
  return cell, xs, carry0, w_ys, w_carry


@pytest.mark.parametrize(("name", "reverse"), [("elman", False), ("elman", True), ("lstm_peepholes", False)])
def test_truncate_equals_chunked_stop_gradient_reference(name, reverse):
  cell, xs, carry0, w_ys, w_carry = truncation_case(name, (2,), 4)
  params = PARAMS[name]

  @jax.jit
  def untruncated(params, xs, carry0):
    def loss(params, xs, carry0):
      out = jaxrnn.unroll(cell, params, xs, carry0, reverse=reverse)
      return weighted_loss(*out, w_ys, w_carry), out

    return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0)

  @functools.partial(jax.jit, static_argnums=3)
  def truncated(params, xs, carry0, k):
    def loss(params, xs, carry0):
      out = jaxrnn.unroll(cell, params, xs, carry0, reverse=reverse, truncate=k)
      return weighted_loss(*out, w_ys, w_carry), out

    def ref_loss(params, xs, carry0):
      carry, ys = chunked_reference(cell, params, xs[::-1] if reverse else xs, carry0, k)
      return weighted_loss(carry, ys[::-1] if reverse else ys, w_ys, w_carry)

    got = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0)
    return got, jax.grad(ref_loss, argnums=(0, 1, 2))(params, xs, carry0)

  full, forward = untruncated(params, xs, carry0)
  for k in (2, T):  # cuts before steps 2 and 4; none at all
    (got, got_forward), want = truncated(params, xs, carry0, k)
    chex.assert_trees_all_close(got_forward, forward, **TOL)  # the forward pass is untouched
    chex.assert_trees_all_close(got, want, **TOL)
    if k >= T:  # nothing to cut: full BPTT, the initial carry's gradient included
      chex.assert_trees_all_close(got, full, **TOL)
    else:  # the recurrent weights' gradient and the initial carry's really change
      assert not np.allclose(jax.tree.leaves(got[0])[1], jax.tree.leaves(full[0])[1], rtol=1e-3)
      assert not np.allclose(jax.tree.leaves(got[2])[0], jax.tree.leaves(full[2])[0], rtol=1e-3)


@pytest.mark.parametrize(("name", "reverse"), [("lstm_peepholes", False), ("elman", True)])
def test_truncate_with_lengths_equals_each_sequence_alone(name, reverse):
  """Padding never changes truncated gradients: each sequence is cut every k of its own valid steps."""
  k = 2
  lengths = np.array([T, 3, 1, 0], np.int32)
  cell, _, carry0, w_ys, w_carry = truncation_case(name, lengths.shape, 5)
  xs = padded_inputs(np.random.default_rng(6), lengths.shape, lengths)
  params = PARAMS[name]

  def loss(params, carry0):
    carry, ys = run(cell, params, xs, carry0, lengths=jnp.asarray(lengths), reverse=reverse, truncate=k)
    return weighted_loss(carry, ys, w_ys, w_carry)

  def ref_loss(params, carry0):
    total = 0.0
    for b, L in enumerate(lengths):
      if L == 0:  # nothing to read: the carry passes through
        total = total + weighted_loss(at(carry0, b), 0.0, 0.0, at(w_carry, b))
        continue
      seq = xs[:L, b]
      carry, ys = chunked_reference(cell, params, seq[::-1] if reverse else seq, at(carry0, b), k)
      ys = ys[::-1] if reverse else ys
      total = total + weighted_loss(carry, ys, w_ys[:L, b], at(w_carry, b))
    return total

  grads = jax.jit(lambda *a: (jax.grad(loss, (0, 1))(*a), jax.grad(ref_loss, (0, 1))(*a)))
  chex.assert_trees_all_close(*grads(params, carry0), **TOL)


# ----------------------------------------------------------------------------
# mask: steps skipped anywhere in a sequence


def check_against_kept_steps(name, xs, mask, lengths, carry0, reverse, impl="auto"):
  """Every sequence gives what its kept steps give alone, back to back; skipped steps output zeros."""
  cell, params = CELLS[name], PARAMS[name]
  batch_shape = mask.shape[1:]
  kwargs = {} if lengths is None else {"lengths": jnp.asarray(lengths)}
  carry, ys = run_masked(cell, params, xs, carry0, mask=jnp.asarray(mask), reverse=reverse, impl=impl, **kwargs)
  for idx in np.ndindex(*batch_shape):
    keep = mask[(slice(None), *idx)].copy()
    if lengths is not None:
      keep[lengths[idx] :] = False
    steps = np.flatnonzero(keep)
    want_ys = np.zeros(ys.shape[:1] + ys.shape[1 + len(batch_shape) :], np.float32)
    want_carry = at(carry0, idx)
    if steps.size:
      seq = xs[(steps, *idx)]
      want_carry, kept_ys = run(cell, params, seq[::-1] if reverse else seq, at(carry0, idx))
      want_ys[steps] = kept_ys[::-1] if reverse else kept_ys
    chex.assert_trees_all_close(ys[(slice(None), *idx)], want_ys, **TOL)
    chex.assert_trees_all_close(at(carry, idx), want_carry, **TOL)


run_masked = jax.jit(jaxrnn.unroll, static_argnums=0, static_argnames=("reverse", "time_major", "impl", "truncate"))


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_masked_steps_are_skipped_as_if_absent(data):
  name = data.draw(st.sampled_from(NAMES), label="cell")
  batch_shape = data.draw(st.sampled_from([(3,), (2, 2)]), label="batch_shape")
  n = math.prod(batch_shape)
  mask = np.array(data.draw(st.lists(st.booleans(), min_size=T * n, max_size=T * n)), bool).reshape((T, *batch_shape))
  lengths = None
  if data.draw(st.booleans(), label="with lengths"):
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=n, max_size=n)), np.int32).reshape(batch_shape)
  reverse = data.draw(st.booleans(), label="reverse")
  rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
  xs = jnp.asarray(rng.standard_normal((T, *batch_shape, I)), jnp.float32)
  check_against_kept_steps(name, xs, mask, lengths, random_carry(CELLS[name], batch_shape, rng), reverse)


MASK = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1], [1, 1, 0, 1]], bool)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", ["gru", "lstm_peepholes"])
def test_mask_gradients_fast_path_equal_reference_and_skip_the_masked_inputs(name, reverse):
  cell, params = CELLS[name], PARAMS[name]
  rng = np.random.default_rng(7)
  xs = jnp.asarray(rng.standard_normal((T, 4, I)), jnp.float32)
  carry0 = random_carry(cell, (4,), rng)
  w_ys = jnp.asarray(rng.standard_normal((T, 4, 3)), jnp.float32)
  check_against_kept_steps(name, xs, MASK, None, carry0, reverse, impl="reference")

  def loss(impl, params, xs, carry0):
    carry, ys = run_masked(cell, params, xs, carry0, mask=jnp.asarray(MASK), reverse=reverse, impl=impl, truncate=2)
    return jnp.sum(w_ys * ys) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

  fused = jax.grad(functools.partial(loss, "fused"), (0, 1, 2))(params, xs, carry0)
  reference = jax.grad(functools.partial(loss, "reference"), (0, 1, 2))(params, xs, carry0)
  chex.assert_trees_all_close(fused, reference, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(fused[1])[~MASK], 0.0)  # a skipped step's input has no effect
  assert np.all(np.abs(np.asarray(fused[1])[MASK]).sum(-1) > 0)


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)], ids=["unbatched", "one_batch_axis", "two_batch_axes"])
def test_permute_steps_derivatives_equal_the_gathers(batch_shape):
  """The permutation of steps (mask, reversed lengths) has the gather's derivatives in every mode, in float64."""
  from jaxrnn._src import unroll as unroll_lib

  rng = np.random.default_rng(3)
  n = math.prod(batch_shape)
  idx = np.stack([rng.permutation(T) for _ in range(n)], 1).reshape((T, *batch_shape))
  idx, inv = jnp.asarray(idx), jnp.asarray(np.argsort(idx, axis=0))
  with jax.enable_x64(True):
    a = jnp.asarray(rng.standard_normal((T, *batch_shape, 2)))
    w = jnp.asarray(rng.standard_normal(a.shape))
    got = lambda a: jnp.sum(w * jnp.sin(unroll_lib.permute_steps(a, idx, inv)))  # noqa: E731
    want = lambda a: jnp.sum(w * jnp.sin(jnp.take_along_axis(a, idx.reshape(idx.shape + (1,)), axis=0)))  # noqa: E731
    transforms = {
      "grad": (jax.grad, a),
      "jvp": (lambda f: lambda a: jax.jvp(f, (a,), (w,)), a),
      "hessian": (jax.hessian, a),
      "vmap of grad": (lambda f: jax.vmap(jax.grad(f)), jnp.stack([a, 2.0 * a])),
    }
    for name, (transform, arg) in transforms.items():
      chex.assert_trees_all_close(
        transform(got)(arg), transform(want)(arg), rtol=1e-12, atol=1e-12, custom_message=name
      )
    np.testing.assert_array_equal(unroll_lib.permute_steps(unroll_lib.permute_steps(a, idx, inv), inv, idx), a)


@pytest.mark.parametrize("option", ["mask", "reversed lengths"])
def test_mask_and_reversed_lengths_gradients_gather_and_equal_each_sequence_alone(option):
  """Reverse mode moves the steps back by gathers, with no scatter-add into a zeroed (T, B, H) buffer (which lifted
  a training step over glibc's mmap threshold: benchmarks.mask), and its gradients are each sequence's alone."""
  cell, params = CELLS["gru"], PARAMS["gru"]
  rng = np.random.default_rng(9)
  B = MASK.shape[1]
  xs = jnp.asarray(rng.standard_normal((T, B, I)), jnp.float32)
  w_ys = jnp.asarray(rng.standard_normal((T, B, 3)), jnp.float32)
  lengths = np.array([T, 4, 1, 0], np.int32)
  if option == "mask":
    kwargs, keeps = {"mask": jnp.asarray(MASK)}, [np.flatnonzero(MASK[:, b]) for b in range(B)]
  else:
    kwargs, keeps = {"lengths": jnp.asarray(lengths), "reverse": True}, [np.arange(L) for L in lengths]

  def loss(params, xs):
    return jnp.sum(w_ys * jaxrnn.unroll(cell, params, xs, **kwargs)[1])

  def each_alone(params, xs):
    total = 0.0
    for b, steps in enumerate(keeps):
      if steps.size:
        seq = xs[steps, b][::-1] if option != "mask" else xs[steps, b]
        ys = jaxrnn.unroll(cell, params, seq[:, None])[1][:, 0]
        total = total + jnp.sum(w_ys[steps, b] * (ys[::-1] if option != "mask" else ys))
    return total

  grad = jax.grad(loss, (0, 1))
  chex.assert_trees_all_close(jax.jit(grad)(params, xs), jax.grad(each_alone, (0, 1))(params, xs), **TOL)
  program = str(jax.make_jaxpr(grad)(params, xs))  # with every nested jaxpr
  assert "gather" in program
  assert "scatter" not in program


@pytest.mark.parametrize("name", NAMES)
def test_a_prefix_mask_equals_lengths(name):
  cell, params = CELLS[name], PARAMS[name]
  lengths = np.array([T, 3, 0], np.int32)
  rng = np.random.default_rng(8)
  xs = jnp.asarray(rng.standard_normal((T, 3, I)), jnp.float32)
  prefix = np.arange(T)[:, None] < lengths[None]
  for reverse in (False, True):
    want = run(cell, params, xs, lengths=jnp.asarray(lengths), reverse=reverse)
    got = run_masked(cell, params, xs, mask=jnp.asarray(prefix), reverse=reverse)
    chex.assert_trees_all_close(got, want, **TOL)
    # batch-major: the mask is (*batch, T)
    got_bm = run_masked(
      cell, params, jnp.moveaxis(xs, 0, 1), mask=jnp.asarray(prefix.T), reverse=reverse, time_major=False
    )
    chex.assert_trees_all_close(got_bm, (want[0], jnp.moveaxis(want[1], 0, 1)), **TOL)


def test_layers_pass_the_mask_to_every_direction_and_layer():
  fwd_cell, bwd_cell, top_cell = jaxrnn.gru(3), jaxrnn.lstm(2), jaxrnn.elman(4)
  net = jaxrnn.stacked(jaxrnn.bidirectional(fwd_cell, bwd_cell), top_cell)
  params = net.init(jax.random.key(0), I)
  xs = jax.random.normal(jax.random.key(1), (T, 4, I))
  mask = jnp.asarray(MASK)
  (carry_bi, carry_top), ys = net.apply(params, xs, mask=mask)
  (p_f, p_b), p_top = params
  cf, yf = jaxrnn.unroll(fwd_cell, p_f, xs, mask=mask)
  cb, yb = jaxrnn.unroll(bwd_cell, p_b, xs, mask=mask, reverse=True)
  ct, yt = jaxrnn.unroll(top_cell, p_top, jnp.concatenate([yf, yb], -1), mask=mask)
  chex.assert_trees_all_close((carry_bi, carry_top, ys), ((cf, cb), ct, yt), **TOL)
  # batch-major, through the layer's own layout option
  _, ys_bm = net.apply(params, jnp.moveaxis(xs, 0, 1), mask=mask.T, time_major=False)
  chex.assert_trees_all_close(ys_bm, jnp.moveaxis(ys, 0, 1), **TOL)


@pytest.mark.parametrize(
  "mask, error, message",
  [
    (np.ones((T, 4), np.float32), jaxrnn.InputTypeError, "mask must be a boolean array"),
    (
      np.ones((T, 3), bool),
      jaxrnn.InputError,
      "mask must have shape (T, *batch) = (6, 4) to match xs, got shape (6, 3)",
    ),
    (np.ones((4, T), bool), jaxrnn.InputError, "got shape (4, 6)"),
  ],
)
def test_a_bad_mask_names_the_expected_shape_and_dtype(mask, error, message):
  cell = CELLS["gru"]
  xs = jnp.zeros((T, 4, I))
  with pytest.raises(error, match=re.escape(message)):
    jaxrnn.unroll(cell, PARAMS["gru"], xs, mask=mask)
  with pytest.raises(error, match="mask must"):
    jaxrnn.rnn(cell).apply(PARAMS["gru"], xs, mask=mask)
  with pytest.raises(jaxrnn.InputError, match=re.escape("mask must have shape (*batch, T) = (4, 6)")):
    jaxrnn.unroll(cell, PARAMS["gru"], jnp.moveaxis(xs, 0, 1), mask=np.ones((T, 4), bool), time_major=False)


# Resets: True where a new sequence starts. The reference splits each sequence's steps that run into its
# sequences and runs each alone with plain unroll (checked above against padding and masks).


def split_at_resets(keep, resets):
  """The runs of kept steps (ascending) that the resets separate: a True at a step, kept or skipped, starts a new
  run at the next kept step. Also whether the first run starts after a reset."""
  runs, pending, first_reset = [], False, False
  for t in range(len(keep)):
    pending |= bool(resets[t])
    if keep[t]:
      if not runs:
        runs.append([t])
        first_reset = pending
      elif pending:
        runs.append([t])
      else:
        runs[-1].append(t)
      pending = False
  return runs, first_reset


def reset_reference(cell, params, xs, carry0, reset_carry, keep, resets, reverse, run_fn):
  """One sequence (``xs: (T, I)``): its runs, each from ``reset_carry`` except the first in processing order,
  which starts from ``carry0`` (forward: unless a reset precedes it)."""
  runs, first_reset = split_at_resets(keep, resets)
  ys = jnp.zeros((len(keep), jax.tree.leaves(carry0)[0].shape[-1]), xs.dtype)
  carry = carry0
  order = runs[::-1] if reverse else runs
  for n, steps in enumerate(order):
    start = reset_carry if n > 0 or (first_reset and not reverse) else carry0
    seq = xs[np.array(steps)]
    carry, run_ys = run_fn(cell, params, seq[::-1] if reverse else seq, start)
    ys = ys.at[np.array(steps)].set(run_ys[::-1] if reverse else run_ys)
  return carry, ys


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_resets_start_new_sequences_as_if_run_alone(data):
  name = data.draw(st.sampled_from(NAMES), label="cell")
  batch_shape = data.draw(st.sampled_from([(3,), (2, 2)]), label="batch_shape")
  n = math.prod(batch_shape)
  rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
  resets = rng.random((T, *batch_shape)) < data.draw(st.sampled_from([0.2, 0.5]), label="reset rate")
  mask = rng.random((T, *batch_shape)) < 0.7 if data.draw(st.booleans(), label="with mask") else None
  lengths = None
  if data.draw(st.booleans(), label="with lengths"):
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=n, max_size=n)), np.int32).reshape(batch_shape)
  reverse = data.draw(st.booleans(), label="reverse")
  cell, params = CELLS[name], PARAMS[name]
  xs = jnp.asarray(rng.standard_normal((T, *batch_shape, I)), jnp.float32)
  carry0, reset_carry = random_carry(cell, batch_shape, rng), random_carry(cell, batch_shape, rng)
  kwargs = {} if lengths is None else {"lengths": jnp.asarray(lengths)}
  if mask is not None:
    kwargs["mask"] = jnp.asarray(mask)
  carry, ys = run_masked(
    cell, params, xs, carry0, resets=jnp.asarray(resets), reset_carry=reset_carry, reverse=reverse, **kwargs
  )
  for idx in np.ndindex(*batch_shape):
    keep = np.ones(T, bool) if mask is None else mask[(slice(None), *idx)].copy()
    if lengths is not None:
      keep[lengths[idx] :] = False
    want_carry, want_ys = reset_reference(
      cell, params, xs[(slice(None), *idx)], at(carry0, idx), at(reset_carry, idx), keep,
      resets[(slice(None), *idx)], reverse, run,
    )  # fmt: skip
    chex.assert_trees_all_close(ys[(slice(None), *idx)], want_ys, **TOL)
    chex.assert_trees_all_close(at(carry, idx), want_carry, **TOL)


RESETS = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 1]], bool)


@pytest.mark.parametrize(("name", "reverse"), [("gru", False), ("lstm_peepholes", True), ("lstm1997", False)])
def test_reset_gradients_are_the_separate_sequences_gradients(name, reverse):
  """Gradients through resets (both paths) equal those of the sequences run alone, the reset carry's summed over
  the sequences that start from it; no gradient crosses a reset."""
  cell, params = CELLS[name], PARAMS[name]
  rng = np.random.default_rng(9)
  xs = jnp.asarray(rng.standard_normal((T, 4, I)), jnp.float32)
  carry0 = random_carry(cell, (4,), rng)
  learned = at(random_carry(cell, (1,), rng), 0)  # one carry for every sequence, broadcast
  lengths = jnp.asarray([T, 5, 6, 3], jnp.int32)
  mask = jnp.asarray(MASK | ~RESETS)  # some resets fall on skipped steps
  w_ys = jnp.asarray(rng.standard_normal((T, 4, jax.tree.leaves(carry0)[0].shape[-1])), jnp.float32)

  def loss(carry, ys):
    return jnp.sum(w_ys * jnp.sin(ys)) + sum(jnp.sum(c**3) for c in jax.tree.leaves(carry))

  def unroll_loss(impl, params, xs, carry0, learned):
    out = jaxrnn.unroll(
      cell, params, xs, carry0, lengths=lengths, mask=mask, resets=jnp.asarray(RESETS), reset_carry=learned,
      reverse=reverse, impl=impl,
    )  # fmt: skip
    return loss(*out)

  def separate_loss(params, xs, carry0, learned):
    keep = np.asarray(mask) & (np.arange(T)[:, None] < np.asarray(lengths)[None])
    outs = [
      reset_reference(cell, params, xs[:, b], at(carry0, b), learned, keep[:, b], RESETS[:, b], reverse, jaxrnn.unroll)
      for b in range(4)
    ]
    carry = jax.tree.map(lambda *a: jnp.stack(a), *(c for c, _ in outs))
    return loss(carry, jnp.stack([y for _, y in outs], axis=1))

  args = (params, xs, carry0, learned)
  want = jax.grad(separate_loss, (0, 1, 2, 3))(*args)
  impls = ["auto", "reference"] if name == "lstm1997" else ["fused", "reference"]
  for impl in impls:
    got = jax.jit(jax.grad(functools.partial(unroll_loss, impl), (0, 1, 2, 3)))(*args)
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)
  assert float(jnp.max(jnp.abs(jax.tree.leaves(want[3])[0]))) > 0  # the learned carry is trained


def test_layers_pass_resets_to_every_direction_and_layer():
  fwd_cell, bwd_cell, top_cell = jaxrnn.gru(3), jaxrnn.lstm(2), jaxrnn.elman(4)
  net = jaxrnn.stacked(jaxrnn.bidirectional(fwd_cell, bwd_cell), jaxrnn.rnn(top_cell), dropout=0.5)
  params = net.init(jax.random.key(0), I)
  xs = jax.random.normal(jax.random.key(1), (T, 4, I))
  resets, lengths = jnp.asarray(RESETS), jnp.asarray([T, 5, 2, 4], jnp.int32)
  (carry_bi, carry_top), ys = net.apply(params, xs, resets=resets, lengths=lengths)
  (p_f, p_b), p_top = params
  cf, yf = jaxrnn.unroll(fwd_cell, p_f, xs, resets=resets, lengths=lengths)
  cb, yb = jaxrnn.unroll(bwd_cell, p_b, xs, resets=resets, lengths=lengths, reverse=True)
  ct, yt = jaxrnn.unroll(top_cell, p_top, jnp.concatenate([yf, yb], -1), resets=resets, lengths=lengths)
  chex.assert_trees_all_close((carry_bi, carry_top, ys), ((cf, cb), ct, yt), **TOL)
  _, ys_bm = net.apply(params, jnp.moveaxis(xs, 0, 1), resets=resets.T, lengths=lengths, time_major=False)
  chex.assert_trees_all_close(ys_bm, jnp.moveaxis(ys, 0, 1), **TOL)
  # Without resets the layers' outputs differ: the resets are used.
  assert not np.allclose(net.apply(params, xs, lengths=lengths)[1], ys, atol=1e-3)


def test_layers_restart_from_a_given_reset_carry_per_child():
  fwd_cell, bwd_cell, top_cell = jaxrnn.gru(3), jaxrnn.lstm(2), jaxrnn.elman(4)
  net = jaxrnn.stacked(jaxrnn.bidirectional(fwd_cell, bwd_cell), jaxrnn.rnn(top_cell))
  params = net.init(jax.random.key(0), I)
  xs = jax.random.normal(jax.random.key(1), (T, 4, I))
  resets, lengths = jnp.asarray(RESETS), jnp.asarray([T, 5, 2, 4], jnp.int32)
  rc_f = jax.random.normal(jax.random.key(2), (4, 3))  # one per sequence
  rc_top = jax.random.normal(jax.random.key(3), (4,))  # one learned carry, broadcast over the batch
  (p_f, p_b), p_top = params

  def layered(params, rc_f, rc_top):
    return net.apply(params, xs, resets=resets, lengths=lengths, reset_carry=((rc_f, None), rc_top))

  def by_hand(params, rc_f, rc_top):
    (p_f, p_b), p_top = params
    cf, yf = jaxrnn.unroll(fwd_cell, p_f, xs, resets=resets, lengths=lengths, reset_carry=rc_f)
    cb, yb = jaxrnn.unroll(bwd_cell, p_b, xs, resets=resets, lengths=lengths, reverse=True)
    y = jnp.concatenate([yf, yb], -1)
    ct, yt = jaxrnn.unroll(top_cell, p_top, y, resets=resets, lengths=lengths, reset_carry=rc_top)
    return ((cf, cb), ct), yt

  chex.assert_trees_all_close(layered(params, rc_f, rc_top), by_hand(params, rc_f, rc_top), **TOL)
  # The reset carries are used (the default restarts from zeros), and trained through the layers.
  assert not np.allclose(layered(params, 0 * rc_f, 0 * rc_top)[1], layered(params, rc_f, rc_top)[1], atol=1e-3)

  def loss(f):
    return lambda *a: jnp.sum(jnp.sin(f(*a)[1]))

  got = jax.jit(jax.grad(loss(layered), (0, 1, 2)))(params, rc_f, rc_top)
  chex.assert_trees_all_close(got, jax.grad(loss(by_hand), (0, 1, 2))(params, rc_f, rc_top), rtol=1e-4, atol=1e-5)
  assert float(jnp.max(jnp.abs(got[2]))) > 0
  with pytest.raises(jaxrnn.InputError, match="reset_carry must be a tuple of 2 reset carries"):
    net.apply(params, xs, resets=resets, reset_carry=(rc_f, None, None))
  with pytest.raises(jaxrnn.InputError, match="reset_carry is given without resets"):
    net.apply(params, xs, reset_carry=((rc_f, None), rc_top))


def test_resets_under_vmap_over_params_equal_each_trial():
  cell = CELLS["lstm_peepholes"]
  trials = [random_params("lstm_peepholes", s) for s in (1, 2, 3)]
  stacked_params = jax.tree.map(lambda *a: jnp.stack(a), *trials)
  xs = jax.random.normal(jax.random.key(2), (T, 4, I))
  resets = jnp.asarray(RESETS)

  def loss(p):
    return jnp.sum(jnp.tanh(jaxrnn.unroll(cell, p, xs, resets=resets)[1]))

  got = jax.jit(jax.vmap(jax.value_and_grad(loss)))(stacked_params)
  for n, p in enumerate(trials):
    chex.assert_trees_all_close(at(got, n), jax.value_and_grad(loss)(p), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "kwargs, error, message",
  [
    ({"resets": np.ones((T, 4), np.int32)}, jaxrnn.InputTypeError, "resets must be a boolean array (True: a new seq"),
    ({"resets": np.ones((T, 3), bool)}, jaxrnn.InputError, "resets must have shape (T, *batch) = (6, 4) to match xs"),
    ({"reset_carry": jnp.zeros((4, 3))}, jaxrnn.InputError, "reset_carry is given without resets"),
    (
      {"resets": np.ones((T, 4), bool), "reset_carry": (jnp.zeros(3),)},
      jaxrnn.InputError,
      "reset_carry must have the structure of the carry",
    ),
    (
      {"resets": np.ones((T, 4), bool), "reset_carry": jnp.zeros((2, 3))},
      jaxrnn.InputError,
      "reset_carry leaf 0 has shape (2, 3), which does not broadcast to the carry's (4, 3)",
    ),
  ],
)
def test_bad_resets_name_what_was_expected(kwargs, error, message):
  cell = CELLS["gru"]
  xs = jnp.zeros((T, 4, I))
  with pytest.raises(error, match=re.escape(message)):
    jaxrnn.unroll(cell, PARAMS["gru"], xs, **kwargs)
  if "resets" in kwargs and "reset_carry" not in kwargs:
    with pytest.raises(error, match="resets must"):
      jaxrnn.rnn(cell).apply(PARAMS["gru"], xs, **kwargs)
