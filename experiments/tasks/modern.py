"""Modern benchmarks: the adding problem and the copy-memory task of Arjovsky, Shah & Bengio (2016).

Not in the 1997 paper; they give the library's modern cells the same harness.

Adding (``adding_modern``): ``T`` pairs ``(value, marker)``, values uniform in [0, 1], exactly two
markers 1.0, one in each half; the target at the last step is the plain sum of the two marked values;
linear output, squared error. A constant predictor (1.0) has MSE 1/6.

Copy (``copy``): ``copy_length`` symbols, ``T - 1`` blanks, a delimiter, ``copy_length`` blanks; the
net outputs blanks until the delimiter has been read and then the ``copy_length`` symbols in order.
Softmax outputs, cross-entropy. The memoryless baseline (blanks, then uniform guesses) has
cross-entropy ``copy_length * ln(n_symbols) / (T + 2 copy_length)`` per step (``10 ln 8 / (T + 20)``).

Choices:

* Choice (adding_modern): the length is exactly ``T``; the first marker is uniform over steps
  ``0 .. T//2 - 1``, the second over ``T//2 .. T - 1``; every other marker is 0 (no -1 ends).
* Choice (adding_modern): ``correct`` = absolute error < 0.04 at the last step (the 1997 adding
  tolerance applied to the unscaled sum; a constant predictor meets it about 8% of the time);
  ``error`` = the squared error there (the MSE the literature reports).
* Choice (copy): input alphabet ``0`` = blank, ``1 .. n_symbols`` = the symbols, ``n_symbols + 1`` =
  the delimiter (``n_symbols + 2`` one-hot inputs); the outputs are the ``n_symbols + 1`` classes
  blank and symbols (the delimiter is never a target). The copied symbols are i.i.d. uniform.
* Choice (copy): the sequence has ``T + 2 copy_length`` steps: symbols at steps ``0 .. n-1``
  (``n = copy_length``), blanks, the delimiter at step ``T + n - 1``, blanks; the targets are blank
  for steps ``0 .. T + n - 1`` and the symbols for the last ``n`` steps. Every step is scored, so the
  loss and ``error`` (the mean cross-entropy per step) are comparable with the baseline.
* Choice (copy): ``correct`` = the argmax output is the right symbol at each of the last ``n``
  steps (the blank steps are not checked).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.tasks import _common
from experiments.tasks.base import Example, Task


def make_adding_modern(*, T: int = 100) -> Task:
  """The modern adding problem: values in [0, 1], one marker in each half, target their sum.

  Args:
    T: the sequence length (fixed); at least 2.

  Returns:
    The :class:`Task`: 2 inputs (value, marker), 1 linear output, ``T`` steps.

  >>> import jax
  >>> ex = make_adding_modern(T=50).sample(jax.random.key(0))
  >>> ex.xs.shape, int(ex.length)
  ((50, 2), 50)
  """
  T = _common.check_int("adding_modern", "T", T, minimum=2)
  half = T // 2

  def sample(key: jax.Array) -> Example:
    k_values, k_pos1, k_pos2 = jax.random.split(key, 3)
    values = jax.random.uniform(k_values, (T,), jnp.float32)
    pos1 = _common.randint(k_pos1, (), 0, half)
    pos2 = _common.randint(k_pos2, (), half, T)
    t = _common.steps(T)
    markers = ((t == pos1) | (t == pos2)).astype(jnp.float32)
    xs = jnp.stack([values, markers], axis=-1)
    scored = t == T - 1
    targets = jnp.where(scored, values[pos1] + values[pos2], 0.0)[:, None]
    return _common.make_example(xs, targets, scored, jnp.int32(T))

  def correct(outputs: jax.Array, example: Example) -> jax.Array:
    return _common.max_abs_error(outputs, example) < 0.04

  return Task(
    name="adding_modern",
    input_size=2,
    output_size=1,
    max_length=T,
    output_activation="linear",
    loss="mse",
    sample=sample,
    test_sample=sample,
    correct=correct,
    error=_common.squared_error,
  )


def make_copy(*, T: int = 100, n_symbols: int = 8, copy_length: int = 10) -> Task:
  """The copy-memory task: reproduce ``copy_length`` symbols after ``T`` steps of blanks.

  Args:
    T: the delay: the delimiter is ``T`` steps after the last symbol to copy; at least 1.
    n_symbols: the alphabet of symbols to copy (blank and delimiter excluded); at least 1.
    copy_length: how many symbols to copy; at least 1.

  Returns:
    The :class:`Task`: ``n_symbols + 2`` inputs, ``n_symbols + 1`` softmax outputs,
    ``T + 2 copy_length`` steps.

  >>> import jax
  >>> ex = make_copy(T=20).sample(jax.random.key(0))
  >>> ex.xs.shape, ex.targets.shape
  ((40, 10), (40, 9))
  """
  T = _common.check_int("copy", "T", T, minimum=1)
  n_symbols = _common.check_int("copy", "n_symbols", n_symbols, minimum=1)
  n = _common.check_int("copy", "copy_length", copy_length, minimum=1)
  length = T + 2 * n
  delimiter = n_symbols + 1

  def sample(key: jax.Array) -> Example:
    symbols = _common.randint(key, (n,), 1, n_symbols + 1)
    blanks = jnp.zeros((length - n,), jnp.int32)
    inputs = jnp.concatenate([symbols, blanks]).at[T + n - 1].set(delimiter)
    outputs = jnp.concatenate([blanks, symbols])
    xs = _common.one_hot(inputs, n_symbols + 2)
    targets = _common.one_hot(outputs, n_symbols + 1)
    return _common.make_example(xs, targets, jnp.ones((length,), bool), jnp.int32(length), ids=inputs)

  def correct(probabilities: jax.Array, example: Example) -> jax.Array:
    tail = slice(length - n, length)
    hits = jnp.argmax(jnp.asarray(probabilities)[tail], axis=-1) == jnp.argmax(example.targets[tail], axis=-1)
    return jnp.all(hits)

  return Task(
    name="copy",
    input_size=n_symbols + 2,
    output_size=n_symbols + 1,
    max_length=length,
    output_activation="softmax",
    loss="xent",
    sample=sample,
    test_sample=sample,
    correct=correct,
    error=_common.cross_entropy,
  )
