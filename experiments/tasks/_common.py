"""Helpers shared by the task generators: parameter checks, padding and scoring rules.

Every scoring helper takes ``outputs (T, K)`` and one :class:`Example` and returns a scalar, so the
task's ``correct`` / ``error`` stay ``jit``- and ``vmap``-able. Only the steps in ``example.scored``
count; the padded steps past ``example.length`` are never scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tasks.base import Example

# ----------------------------------------------------------------------------
# Parameter validation


def check_int(
  task: str,
  name: str,
  value: object,
  *,
  minimum: int | None = None,
  maximum: int | None = None,
  choices: Sequence[int] | None = None,
) -> int:
  """Returns ``value`` as an int, or raises ValueError naming the parameter, the task and what is allowed.

  Args:
    task: the task name, e.g. ``"adding"``.
    name: the parameter name, e.g. ``"T"``.
    value: the value given.
    minimum: smallest allowed value (inclusive), if any.
    maximum: largest allowed value (inclusive), if any.
    choices: the allowed values, if the parameter takes only a few.

  Returns:
    ``int(value)``.
  """
  if choices is not None:
    allowed = "one of " + ", ".join(str(c) for c in choices)
  elif minimum is not None and maximum is not None:
    allowed = f"an integer in [{minimum}, {maximum}]"
  elif minimum is not None:
    allowed = f"an integer >= {minimum}"
  elif maximum is not None:
    allowed = f"an integer <= {maximum}"
  else:
    allowed = "an integer"
  # bool is an int subclass, but `T=True` is always a mistake.
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"task {task!r}: parameter {name!r} must be {allowed}, got {value!r}")
  value = int(value)
  if (
    (choices is not None and value not in choices)
    or (minimum is not None and value < minimum)
    or (maximum is not None and value > maximum)
  ):
    raise ValueError(f"task {task!r}: parameter {name!r} must be {allowed}, got {value!r}")
  return value


def check_params(task: str, params: dict, allowed: Iterable[str]) -> None:
  """Raises ValueError if ``params`` has a key outside ``allowed``, naming the key, the task and the allowed keys."""
  allowed = tuple(allowed)
  for key in params:
    if key not in allowed:
      listed = ", ".join(allowed) if allowed else "none"
      raise ValueError(f"task {task!r} has no parameter {key!r}; allowed parameters: {listed}")


# ----------------------------------------------------------------------------
# Building examples


def steps(T: int) -> jax.Array:
  """The step indices ``0 .. T-1``, shape ``(T,)`` int32."""
  return jnp.arange(T, dtype=jnp.int32)


def last_step_mask(T: int, length: jax.Array) -> jax.Array:
  """Bool ``(T,)``: True only at the last valid step ``length - 1``."""
  return steps(T) == length - 1


def one_hot(symbols: jax.Array, n: int) -> jax.Array:
  """Float32 one-hot of int ``symbols (*shape,)`` over ``n`` classes: ``(*shape, n)``."""
  return jax.nn.one_hot(symbols, n, dtype=jnp.float32)


def make_example(
  xs: jax.Array,
  targets: jax.Array,
  scored: jax.Array,
  length: jax.Array,
  legal: jax.Array | None = None,
  ids: jax.Array | None = None,
) -> Example:
  """Pads and types one example: zeroes ``xs`` past ``length`` and ``targets`` where not scored.

  Args:
    xs: ``(T, I)`` inputs.
    targets: ``(T, K)`` targets.
    scored: ``(T,)`` bool, the steps that count (all inside ``length``).
    length: ``()`` the number of valid steps.
    legal: ``(T, K)`` bool, or None for the default ``targets > 0.5`` on scored steps.
    ids: ``(T,)`` int, the symbol index of each step where ``xs`` is ``one_hot(ids)``; None for
      real-valued inputs. Set to -1 past ``length``.

  Returns:
    The :class:`Example` with float32 data, bool masks and an int32 length.
  """
  T = xs.shape[0]
  length = jnp.asarray(length, jnp.int32)
  valid = steps(T) < length
  scored = jnp.asarray(scored, bool) & valid
  xs = jnp.where(valid[:, None], xs.astype(jnp.float32), 0.0)
  targets = jnp.where(scored[:, None], targets.astype(jnp.float32), 0.0)
  if legal is None:
    legal = targets > 0.5
  legal = jnp.asarray(legal, bool) & scored[:, None]
  if ids is not None:
    ids = jnp.where(valid, jnp.asarray(ids, jnp.int32), -1)
  return Example(xs=xs, targets=targets, scored=scored, length=length, legal=legal, ids=ids)


# ----------------------------------------------------------------------------
# Scoring


def abs_errors(outputs: jax.Array, example: Example) -> jax.Array:
  """``|outputs - targets|`` on scored steps, 0 elsewhere: ``(T, K)``."""
  err = jnp.abs(jnp.asarray(outputs) - example.targets)
  return jnp.where(example.scored[:, None], err, 0.0)


def max_abs_error(outputs: jax.Array, example: Example) -> jax.Array:
  """The largest absolute error over scored steps and all outputs: ``()``."""
  return jnp.max(abs_errors(outputs, example))


def squared_error(outputs: jax.Array, example: Example) -> jax.Array:
  """Squared error summed over the outputs, averaged over the scored steps: ``()``.

  This is the paper's objective (without the factor 1/2); on the tasks scored at the sequence end
  only it is that one step's squared error.
  """
  sq = jnp.sum(jnp.square(abs_errors(outputs, example)), axis=-1)
  n = jnp.maximum(jnp.sum(example.scored), 1).astype(sq.dtype)
  return jnp.sum(sq) / n


def last_value(values: jax.Array, length: jax.Array) -> jax.Array:
  """``values[length - 1]`` of a ``(T, ...)`` array, as a gather that jits with a traced length."""
  return jnp.take(values, length - 1, axis=0)


def cross_entropy(probabilities: jax.Array, example: Example) -> jax.Array:
  """Cross-entropy ``-sum_k targets * log(p)`` averaged over the scored steps: ``()``.

  Probabilities of 0 are clipped to the smallest normal float, so a confident wrong answer costs
  about 87 nats instead of infinity.
  """
  p = jnp.asarray(probabilities)
  tiny = jnp.finfo(p.dtype).tiny
  per_step = -jnp.sum(example.targets * jnp.log(jnp.maximum(p, tiny)), axis=-1)
  per_step = jnp.where(example.scored, per_step, 0.0)
  n = jnp.maximum(jnp.sum(example.scored), 1).astype(per_step.dtype)
  return jnp.sum(per_step) / n


def coin(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
  """Fair coin flips, ``shape`` bool: ``jax.random.bernoulli`` with a float32 ``p``.

  ``bernoulli``'s default ``p = 0.5`` is a Python float, whose uniform draw is float64 under
  ``jax.enable_x64``: other bits, other sequences. A float32 ``p`` draws the same flips in both
  (``model.dtype = "float64"`` runs see the float32 runs' sequences), and the same as the default
  without x64.
  """
  return jax.random.bernoulli(key, jnp.float32(0.5), shape)


def randint(key: jax.Array, shape: tuple[int, ...], low: int, high: int) -> jax.Array:
  """``jax.random.randint`` with int32 output, as ``low + floor((high - low) u)`` of one uniform float draw.

  ``jax.random.randint`` draws two words of bits per value (three threefry calls with its split);
  one float draw compiles and runs about twice as fast on CPU, which matters because the samplers
  are compiled into every training step. The float32 grid (2^-23) biases the classes of a range of
  ``n`` values by at most ``n 2^-23`` relative, far below anything the experiments can see.

  Args:
    key: a PRNG key.
    shape: the output shape.
    low: the smallest value.
    high: one past the largest value (``high > low``).

  Returns:
    ``shape`` int32.
  """
  u = jax.random.uniform(key, shape, jnp.float32)
  values = jnp.floor(u * float(high - low)).astype(jnp.int32) + low
  return jnp.minimum(values, high - 1)  # u * n can round up to n for u just below 1


def truncated_geometric(key: jax.Array, p_stop: float, maximum: int) -> jax.Array:
  """A geometric count of failures before the first success, conditioned on being ``<= maximum``.

  ``P(k) = (1 - p_stop)^k p_stop / (1 - (1 - p_stop)^(maximum + 1))`` for ``k = 0 .. maximum``, drawn
  by inverting the truncated CDF (no rejection loop).

  Args:
    key: a PRNG key.
    p_stop: the success probability of each trial, in (0, 1).
    maximum: the largest count drawn.

  Returns:
    ``()`` int32 in ``[0, maximum]``.
  """
  keep = 1.0 - p_stop
  mass = 1.0 - keep ** (maximum + 1)  # the probability of k <= maximum before truncation
  u = jax.random.uniform(key, (), jnp.float32)
  k = jnp.floor(jnp.log1p(-u * mass) / math.log(keep))
  return jnp.clip(k, 0, maximum).astype(jnp.int32)
