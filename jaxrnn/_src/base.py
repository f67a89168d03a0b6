"""Core types of jaxrnn: the `Cell` triple of pure functions and input checks.

Every check here runs at trace time on static shapes and dtypes, so a bad
input fails with a message naming the argument instead of an XLA shape error
from deep inside a `lax.scan`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

Params = Any  # a pytree of arrays
Carry = Any  # a pytree of arrays, every leaf shaped (*batch, features)
PRNGKey = jax.Array
Shape = Sequence[int]
DType = Any


class InitFn(Protocol):
  def __call__(self, key: PRNGKey, input_size: int) -> Params: ...


class InitialCarryFn(Protocol):
  def __call__(self, batch_shape: Shape = (), dtype: DType = jnp.float32) -> Carry: ...


class ApplyFn(Protocol):
  def __call__(self, params: Params, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]: ...


class InputError(ValueError):
  """A wrong shape, rank, size or value of an argument (a ``ValueError``)."""


class InputTypeError(TypeError):
  """A wrong dtype or kind of an argument (a ``TypeError``)."""


class Cell(NamedTuple):
  """A recurrent cell as three pure functions (the shape of optax's transforms).

  Attributes:
    init: ``init(key, input_size) -> params``, a pytree of arrays. The cell's
      hyperparameters (sizes, options) live in the factory's closure, never
      in ``params``, so ``jax.vmap`` over stacked params needs no markings.
    initial_carry: ``initial_carry(batch_shape=(), dtype=jnp.float32)``, the
      all-zero carry for inputs of batch shape ``batch_shape``.
    apply: ``apply(params, carry, x) -> (carry, y)``, one time step, with
      ``x: (*batch, input_size)``; every axis before the last is a batch axis.
      It has the signature of a ``lax.scan`` body once ``params`` is bound.
      jaxrnn's recurrent cells (not ``dense``) also take ``recurrent_mask=``
      (recurrent dropout, see :func:`jaxrnn.with_recurrent_mask`).
  """

  init: InitFn
  initial_carry: InitialCarryFn
  apply: ApplyFn


class Dense(NamedTuple):
  """A dense readout as two pure functions.

  Attributes:
    init: ``init(key, input_size) -> DenseParams``.
    apply: ``apply(params, x) -> y`` with ``x: (..., input_size)`` and
      ``y: (..., output_size)``.
  """

  init: Callable[[PRNGKey, int], Any]
  apply: Callable[[Any, jax.Array], jax.Array]


# ----------------------------------------------------------------------------
# Checks shared by every cell and runner.


def check_positive_int(name: str, value: Any) -> int:
  """Returns ``value`` if it is an int >= 1, else raises naming ``name``."""
  if isinstance(value, bool) or not isinstance(value, int):
    raise InputTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
  if value < 1:
    raise InputError(f"{name} must be >= 1, got {value}")
  return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
  """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise InputError(f"{name} must be one of {tuple(choices)!r}, got {value!r}")
  return value


def check_batch_shape(batch_shape: Any) -> tuple[int, ...]:
  """Normalises ``batch_shape`` to a tuple of non-negative ints."""
  if isinstance(batch_shape, int):
    batch_shape = (batch_shape,)
  try:
    shape = tuple(int(d) for d in batch_shape)
  except (TypeError, ValueError) as e:
    raise InputTypeError(f"batch_shape must be a tuple of ints, got {batch_shape!r}") from e
  if any(d < 0 for d in shape):
    raise InputError(f"batch_shape must have non-negative sizes, got {shape}")
  return shape


def check_floating_dtype(name: str, dtype: Any) -> Any:
  dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise InputTypeError(f"{name} must be a floating dtype, got {dtype}")
  return dtype


def check_step_input(x: Any, input_size: int, param_dtype: Any, *, name: str = "x") -> jax.Array:
  """Checks one step's input ``x: (*batch, input_size)`` against the params."""
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    raise InputTypeError(f"{name} must be an array, got {type(x).__name__}")
  if x.ndim < 1:
    raise InputError(f"{name} must have shape (*batch, {input_size}), got a scalar")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise InputTypeError(
      f"{name} must be a floating array ({jnp.dtype(param_dtype)} like the params), got dtype {x.dtype}"
    )
  if x.dtype != param_dtype:
    raise InputTypeError(
      f"{name} has dtype {x.dtype}, but the params have dtype {jnp.dtype(param_dtype)}; "
      "cast one to the other (e.g. jax.tree.map(lambda a: a.astype(x.dtype), params))"
    )
  if x.shape[-1] != input_size:
    raise InputError(
      f"{name} has feature size {x.shape[-1]} (shape {tuple(x.shape)}), "
      f"but the cell was initialised with input_size {input_size}"
    )
  return x


def _check_leaf_shape(where: str, leaf: Any, expected: Any, hint: str) -> None:
  """Raises unless ``leaf`` is an array with ``expected``'s shape; ``hint`` says what the shape is made of."""
  if not hasattr(leaf, "shape"):
    raise InputTypeError(f"{where} must be an array, got {type(leaf).__name__}")
  if tuple(leaf.shape) != tuple(expected.shape):
    raise InputError(f"{where} has shape {tuple(leaf.shape)}, expected {tuple(expected.shape)} ({hint})")


def params_spec(init: Callable[[PRNGKey, int], Any]) -> Callable[[int], Any]:
  """``input_size -> jax.eval_shape`` of ``init``: the params a cell's init makes, as shapes (cached)."""

  @functools.cache
  def spec(input_size: int) -> Any:
    return jax.eval_shape(lambda: init(jax.random.key(0), input_size))

  return spec


def check_params_type(params: Any, expected_type: type, *, name: str = "params", what: str = "cell") -> None:
  """Raises unless ``params`` is an ``expected_type`` (the NamedTuple a cell's init returns)."""
  if not isinstance(params, expected_type):
    raise InputTypeError(
      f"{name} must be {expected_type.__name__} (what this {what}'s init returns), got {type(params).__name__}"
    )


def check_params(params: Any, expected: Any, *, name: str = "params", what: str = "cell") -> None:
  """Checks that ``params`` has the fields and shapes of ``expected`` (a :func:`params_spec`).

  Params made by a cell of another size, or with other options (``bias``,
  ``peepholes``), raise here, naming the field, instead of failing inside a
  matrix product or running without the missing weights.
  """
  check_params_type(params, type(expected), name=name, what=what)
  other = f"were the params made by a {what} with other options, e.g. bias, peepholes, layer_norm or proj_size?"

  def check_none(where: str, exp: Any, leaf: Any) -> None:
    if exp is None and leaf is not None:
      raise InputError(f"{where} must be None for this {what} (its init makes none; {other})")
    if exp is not None and leaf is None:
      needs = f"an array of shape {tuple(exp.shape)}" if hasattr(exp, "shape") else f"a {type(exp).__name__}"
      raise InputError(f"{where} is None, but this {what} needs {needs} ({other})")

  for field in getattr(expected, "_fields", ()):  # optional parts (None or a subtree) first, by name
    check_none(f"{name}.{field}", getattr(expected, field), getattr(params, field))
  is_none = lambda v: v is None  # noqa: E731
  want = jax.tree_util.tree_flatten_with_path(expected, is_leaf=is_none)[0]
  got = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_none)[0]
  keys = [jax.tree_util.keystr(path) for path, _ in want]
  if keys != [jax.tree_util.keystr(path) for path, _ in got]:
    raise InputError(f"{name} must have the fields {keys}, got {[jax.tree_util.keystr(p) for p, _ in got]}")
  for key, (_, exp), (_, leaf) in zip(keys, want, got):
    where = f"{name}{key}"
    check_none(where, exp, leaf)
    if exp is None:
      continue
    _check_leaf_shape(where, leaf, exp, f"were the params made by a {what} of another size?")


def check_step_carry(carry: Any, initial_carry: Callable[..., Any], x: jax.Array, *, name: str = "carry") -> None:
  """Checks one step's ``carry`` against ``initial_carry(batch_shape, x.dtype)`` for ``x: (*batch, features)``."""
  batch = tuple(x.shape[:-1])
  check_carry(carry, jax.eval_shape(lambda: initial_carry(batch, x.dtype)), batch, name=name)


def check_step(
  params: Any,
  carry: Any,
  x: Any,
  *,
  params_type: type,
  spec: Callable[[int], Any],
  initial_carry: Callable[..., Any],
  input_size: int | None = None,
) -> None:
  """A cell step's checks, in the order that gives the clearest message: the params' type, ``x`` against
  the params (``input_size``, default ``params.w_x``'s rows), the params against ``spec(input_size)`` (a
  :func:`params_spec`), and the carry against ``initial_carry``."""
  check_params_type(params, params_type)
  n = int(params.w_x.shape[0]) if input_size is None else input_size
  check_step_input(x, n, params.w_x.dtype)
  check_params(params, spec(n))
  check_step_carry(carry, initial_carry, x)


def check_carry(carry: Any, expected: Any, batch_shape: tuple[int, ...], *, name: str = "carry") -> None:
  """Checks that ``carry`` has the structure, shapes and dtypes of ``expected``.

  ``expected`` is a pytree of ``jax.ShapeDtypeStruct``-likes (for instance
  ``jax.eval_shape(initial_carry, batch_shape, dtype)``).
  """
  exp_leaves, exp_tree = jax.tree.flatten(expected)
  try:
    leaves = exp_tree.flatten_up_to(carry)  # type: ignore[attr-defined]  # in jaxlib, not in its stubs
  except (ValueError, TypeError) as e:
    got = jax.tree.structure(carry)
    raise InputError(f"{name} must have the structure {exp_tree}, got {got}") from e
  for i, (leaf, exp) in enumerate(zip(leaves, exp_leaves)):
    _check_leaf_shape(f"{name} leaf {i}", leaf, exp, f"batch shape {batch_shape} of the input plus the feature size")
    if leaf.dtype != exp.dtype:
      raise InputTypeError(f"{name} leaf {i} has dtype {leaf.dtype}, expected {exp.dtype} (the params' dtype)")
