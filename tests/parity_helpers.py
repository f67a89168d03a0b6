"""Helpers shared by several test files: the parity tests' comparisons (``tests/test_parity_*.py``) and more."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TOL = dict(atol=1e-5, rtol=1e-5)


def close(actual, expected, what: str) -> None:
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), err_msg=what, **TOL)


def tree_close(actual, expected, what: str) -> None:
  """Equal tree structures, and every leaf close; ``what`` and the leaf's path name a failure."""
  assert jax.tree.structure(actual) == jax.tree.structure(expected), what
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected), strict=True):
    close(a, e, what + jax.tree_util.keystr(path))


def random_like(seed: int, tree):
  """Every leaf (arrays or shape structs) replaced by 0.5 * N(0, 1) float32.

  Random biases too: the peers initialise some to zero, which would hide a misplaced bias. numpy draws the
  values, so setting up a test compiles nothing.
  """
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: jnp.asarray(0.5 * rng.standard_normal(leaf.shape), jnp.float32), tree)


def tree_equal(actual, expected) -> None:
  """Equal tree structures, and every leaf equal to the bit."""
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e), err_msg=jax.tree_util.keystr(path))


def assert_refuses_lstm_options(convert, params_of, hidden: int) -> None:
  """``convert`` (a ``to_*`` converter) raises for the LSTMs a peer's plain LSTM cell cannot express, naming the
  option; ``params_of(cell)`` gives a cell's params."""
  import pytest

  import jaxrnn

  cases = [
    (dict(peepholes=True), r"peepholes \(w_peep\)"),
    (dict(layer_norm=True), r"layer norms \(norm\): an lstm\(layer_norm=True\)"),
    (dict(proj_size=2), r"a projection \(w_proj\): an lstm\(proj_size=\.\.\.\)"),
    (dict(forget_gate=False), "3 gates"),
  ]
  for options, message in cases:
    with pytest.raises(ValueError, match=message):
      convert(params_of(jaxrnn.lstm(hidden, **options)))


def loss_from_outputs(carry, ys, r):
  """A scalar that depends on every output and every carry leaf (carry in jaxrnn's layout); ``r`` holds random
  weights ``(r_out, r_h, r_c)`` for the outputs, ``h`` and an LSTM's ``c``."""
  import jaxrnn

  r_out, r_h, r_c = r
  total = jnp.sum(ys * r_out)
  if isinstance(carry, jaxrnn.LSTMCarry):
    return total + jnp.sum(carry.h * r_h) + jnp.sum(carry.c * r_c)
  return total + jnp.sum(carry * r_h)


def scan_products(fn, *args) -> list[int]:
  """The number of matrix products in the body of every scan of ``fn``'s jaxpr (nested jaxprs included)."""
  import jax.extend

  counts = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "scan":
        body = eqn.params["jaxpr"].jaxpr
        counts.append(sum(e.primitive.name == "dot_general" for e in body.eqns))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return counts
