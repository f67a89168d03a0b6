"""Exp 3: noise and signal on the same channel (the two-sequence problem), Hochreiter & Schmidhuber (1997), Sect. 5.3.

One real input. The first ``N`` elements are +1.0 (class 1) or -1.0 (class 2), the rest Gaussian
noise with mean 0 and variance 0.2; the length is uniform in ``[T, T + T/10]``; the target at the
last step is 1.0 (class 1) or 0.0 (class 2). 3b adds the same noise to the first ``N`` elements;
3c uses targets 0.8 / 0.2 plus Gaussian target noise of variance 0.1.

Choices:

* Choice: ``T/10`` is ``T // 10``; the length is uniform over the integers ``T .. T + T // 10``
  (inclusive) and the padded ``T`` of the examples is ``T + T // 10``.
* Choice: the classes have probability 1/2 each; class 1 (+1.0 inputs) has target 1.0 (3c: 0.8).
* Choice: only the last valid step is scored; ``error`` is the absolute error there (the
  paper's ST2 reads the mean absolute error).
* Choice (3a): ``correct`` = absolute error < 0.2.
* Choice (3b): "the same Gaussian noise" = an independent draw from N(0, 0.2) added to each of the
  first ``N`` elements. Wrong means the same as in 3a (absolute error >= 0.2); a net is wrong on the
  sequences whose noisy prefix points to the other class, which is why the paper's ST1 allows
  a few wrong of 256.
* Choice (3c): the noisy target is ``0.8 / 0.2 + N(0, 0.1)``, drawn per sequence (test sequences
  too); it is not clipped. The inputs are noise-free +-1 in the first ``N`` steps, so ``correct`` and
  ``error`` recover the noise-free target from ``xs[0]``: ``correct`` = the output is within 0.1 of
  it (wrong if more than 0.1 away), ``error`` = the absolute deviation from it (what the paper's
  "mean absolute deviation < 0.015" reads). ``legal`` marks the noise-free class (output > 0.5).
* Choice: ``N`` must be 1 or 3 (the paper's values) and ``T > N``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from experiments.tasks import _common
from experiments.tasks.base import Example, Task

INPUT_VARIANCE = 0.2  # the input noise N(0, 0.2)
TARGET_VARIANCE = 0.1  # 3c's target noise N(0, 0.1)


def _make_noise(name: str, T: int, N: int) -> Task:
  T = _common.check_int(name, "T", T, minimum=2)
  N = _common.check_int(name, "N", N, choices=(1, 3))
  if T <= N:
    raise ValueError(f"task {name!r}: parameter 'T' must be larger than N = {N}, got {T}")
  T_max = T + T // 10
  noisy_signal = name == "noise3b"
  hi, lo = (0.8, 0.2) if name == "noise3c" else (1.0, 0.0)

  def sample(key: jax.Array) -> Example:
    k_class, k_length, k_noise, k_target = jax.random.split(key, 4)
    class1 = _common.coin(k_class)
    length = _common.randint(k_length, (), T, T_max + 1)
    t = _common.steps(T_max)
    noise = math.sqrt(INPUT_VARIANCE) * jax.random.normal(k_noise, (T_max,), jnp.float32)
    signal = jnp.where(class1, 1.0, -1.0)
    if noisy_signal:
      signal = signal + noise
    xs = jnp.where(t < N, signal, noise)[:, None]
    clean = jnp.where(class1, hi, lo)
    target = clean
    if name == "noise3c":
      target = clean + math.sqrt(TARGET_VARIANCE) * jax.random.normal(k_target, (), jnp.float32)
    scored = _common.last_step_mask(T_max, length)
    targets = jnp.where(scored, target, 0.0)[:, None]
    legal = (scored & class1)[:, None]
    return _common.make_example(xs, targets, scored, length, legal)

  if name == "noise3c":

    def error(outputs: jax.Array, example: Example) -> jax.Array:
      out = _common.last_value(jnp.asarray(outputs), example.length)[0]
      clean = jnp.where(example.xs[0, 0] > 0.0, hi, lo)
      return jnp.abs(out - clean)

    def correct(outputs: jax.Array, example: Example) -> jax.Array:
      return error(outputs, example) <= 0.1

  else:
    error = _common.max_abs_error

    def correct(outputs: jax.Array, example: Example) -> jax.Array:
      return error(outputs, example) < 0.2

  return Task(
    name=name,
    input_size=1,
    output_size=1,
    max_length=T_max,
    output_activation="sigmoid",
    loss="mse",
    sample=sample,
    test_sample=sample,
    correct=correct,
    error=error,
  )


def make_noise3a(*, T: int = 100, N: int = 3) -> Task:
  """Exp 3a: the class is in the first ``N`` noise-free elements; the rest is N(0, 0.2) noise.

  Args:
    T: the minimal sequence length (lengths are uniform in ``[T, T + T // 10]``).
    N: the number of informative elements, 1 or 3.

  Returns:
    The :class:`Task`: 1 input, 1 output, padded ``T + T // 10``.

  >>> import jax
  >>> ex = make_noise3a().sample(jax.random.key(0))
  >>> ex.xs.shape, ex.targets.shape
  ((110, 1), (110, 1))
  """
  return _make_noise("noise3a", T, N)


def make_noise3b(*, T: int = 100, N: int = 3) -> Task:
  """Exp 3b: as 3a, with N(0, 0.2) noise added to the first ``N`` elements too.

  Args:
    T: the minimal sequence length.
    N: the number of class-carrying elements, 1 or 3.

  Returns:
    The :class:`Task`.
  """
  return _make_noise("noise3b", T, N)


def make_noise3c(*, T: int = 100, N: int = 3) -> Task:
  """Exp 3c: as 3a, with targets 0.8 / 0.2 plus N(0, 0.1) target noise; scored against the clean target.

  Args:
    T: the minimal sequence length.
    N: the number of class-carrying elements, 1 or 3.

  Returns:
    The :class:`Task`.
  """
  return _make_noise("noise3c", T, N)
