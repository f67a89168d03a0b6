"""Exp 2: long time lags without (2a) and with (2b, 2c) distractors, Hochreiter & Schmidhuber (1997), Sect. 5.2.

2a / 2b: symbols ``a1 .. a(p-1), x, y`` (``p + 1`` one-hot inputs and outputs); the sequence is
``x a1 .. a(p-1) x`` or ``y a1 .. a(p-1) y`` with probability 1/2 each (2b: the middle ``p - 1``
symbols drawn i.i.d. uniformly from ``a1 .. a(p-1)``); the net predicts the next symbol at every step.

2c: inputs ``a1 .. ap, e, b, x, y`` (``p + 4``), 2 outputs (``x``, ``y``). The sequence is ``b``,
``x`` or ``y``, ``q`` distractors, then a distractor with probability 9/10 or ``e`` with probability
1/10 until ``e``; the symbol after ``e`` repeats the second one, and predicting it is the only
scored step.

Choices:

* Choice: 2a/2b index ``a1 .. a(p-1)`` as 0..p-2, ``x`` = p-1, ``y`` = p.
* Choice (2a/2b): the ``p + 1`` symbols give ``p`` steps: step ``t`` reads symbol ``t`` and its target
  is symbol ``t + 1``, so the last step reads ``a(p-1)`` and its target is the first symbol (``x`` or
  ``y``), the long-lag prediction. The final ``x`` / ``y`` is never read (nothing follows it).
* Choice (2a): every step is scored; ``error`` is the largest absolute error over all steps and
  outputs and ``correct`` is ``error < 0.25``. The "10,000 successive sequences" criterion holds
  when ``correct`` is true on each of 10,000 successive training sequences.
* Choice (2b): every step is trained (``scored`` is all steps: next-symbol prediction as in 2a, the
  targets of the random middle symbols are one-hot), but ``error`` and ``correct`` read the last step
  only, as the paper measures success there: ``error`` = the largest absolute output error at the
  last step, ``correct`` = ``error < 0.25``.
* Choice (2c): distractors (the ``q`` fixed ones and the random tail) are drawn i.i.d. uniformly
  from ``a1 .. ap``. Indices: ``a1 .. ap`` = 0..p-1, ``e`` = p, ``b`` = p+1, ``x`` = p+2, ``y`` = p+3;
  outputs: ``x`` = 0, ``y`` = 1.
* Choice (2c): steps are ``b``, ``x|y``, ``q + k`` distractors, ``e`` (length ``q + 3 + k``); the step
  reading ``e`` is the only scored one, with target ``x`` or ``y`` one-hot over the 2 outputs.
* Choice (2c): the paper's tail length ``k`` (distractors before ``e``; ``P(k) = 0.9^k 0.1``) has no
  upper bound; we condition it on ``k <= max_extra`` (inverse-CDF draw of the truncated geometric,
  no resampling and no pile-up at the cap). With the default ``max_extra = 100`` the cut mass is
  ``0.9^101 ~ 2.4e-5``; ``T = q + 3 + max_extra``.
* Choice (2c): ``error`` = the larger of the two outputs' absolute errors at the scored step;
  ``correct`` = ``error < 0.2`` ("both outputs' error < 0.2").
* Choice: defaults ``p = 100`` (2a/2b, as in the paper) and ``p = q = 100`` for 2c (its table's row
  that matches 2a/2b).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.tasks import _common
from experiments.tasks.base import Example, Task

P_END = 0.1  # 2c: the probability that the next tail symbol is `e`


def _lag_ab(name: str, p: int, random_middle: bool, last_only: bool = False) -> Task:
  K = p + 1
  X, Y = p - 1, p

  def sample(key: jax.Array) -> Example:
    k_first, k_middle = jax.random.split(key)
    first = jnp.where(_common.coin(k_first), X, Y).astype(jnp.int32)
    if random_middle:
      middle = _common.randint(k_middle, (p - 1,), 0, p - 1)
    else:
      middle = jnp.arange(p - 1, dtype=jnp.int32)
    symbols = jnp.concatenate([first[None], middle, first[None]])  # (p + 1,)
    xs = _common.one_hot(symbols[:-1], K)
    targets = _common.one_hot(symbols[1:], K)
    scored = (jnp.arange(p) == p - 1) if last_only else jnp.ones((p,), bool)
    return _common.make_example(xs, targets, scored, jnp.int32(p), ids=symbols[:-1])

  if random_middle:

    def error(outputs: jax.Array, example: Example) -> jax.Array:
      last = _common.last_value(_common.abs_errors(outputs, example), example.length)
      return jnp.max(last)

  else:
    error = _common.max_abs_error

  def correct(outputs: jax.Array, example: Example) -> jax.Array:
    return error(outputs, example) < 0.25

  return Task(
    name=name,
    input_size=K,
    output_size=K,
    max_length=p,
    output_activation="sigmoid",
    loss="mse",
    sample=sample,
    test_sample=sample,
    correct=correct,
    error=error,
  )


def make_lag2a(*, p: int = 100) -> Task:
  """Exp 2a: the two sequences ``x a1 .. a(p-1) x`` and ``y a1 .. a(p-1) y``, next-symbol prediction.

  Args:
    p: the number of symbols after the first, ``p - 1`` of them ``a_i`` (the paper: 100).

  Returns:
    The :class:`Task`: ``p + 1`` inputs and outputs, ``T = p``.

  >>> import jax
  >>> ex = make_lag2a(p=5).sample(jax.random.key(0))
  >>> ex.xs.shape, ex.targets.shape
  ((5, 6), (5, 6))
  """
  p = _common.check_int("lag2a", "p", p, minimum=2)
  return _lag_ab("lag2a", p, random_middle=False)


def make_lag2b(*, p: int = 100, last_only: int = 0) -> Task:
  """Exp 2b: as 2a with the ``p - 1`` middle symbols drawn i.i.d.; success read at the last step.

  Args:
    p: the number of symbols after the first (the paper: 100).
    last_only: 1 trains on the last step only (the one predictable symbol, where success is read); 0
      trains on every step's next symbol, as 2a (the random middle symbols' targets are then noise).

  Returns:
    The :class:`Task`: ``p + 1`` inputs and outputs, ``T = p``.
  """
  p = _common.check_int("lag2b", "p", p, minimum=2)
  last_only = _common.check_int("lag2b", "last_only", last_only, choices=(0, 1))
  return _lag_ab("lag2b", p, random_middle=True, last_only=bool(last_only))


def make_lag2c(*, p: int = 100, q: int = 100, max_extra: int = 100) -> Task:
  """Exp 2c: ``b``, ``x|y``, ``q`` distractors, a geometric tail ending in ``e``; predict ``x|y`` at ``e``.

  Args:
    p: the number of distractor symbols ``a1 .. ap``.
    q: the number of distractors that always follow the second symbol (the minimal lag is ``q + 1``).
    max_extra: the cap on the geometric number of extra distractors before ``e``.

  Returns:
    The :class:`Task`: ``p + 4`` inputs, 2 outputs, ``T = q + 3 + max_extra``, scored at the
    step reading ``e``.

  >>> import jax
  >>> task = make_lag2c(p=4, q=6, max_extra=5)
  >>> task.sample(jax.random.key(0)).xs.shape
  (14, 8)
  """
  p = _common.check_int("lag2c", "p", p, minimum=1)
  q = _common.check_int("lag2c", "q", q, minimum=0)
  max_extra = _common.check_int("lag2c", "max_extra", max_extra, minimum=0)
  E, B, X = p, p + 1, p + 2
  T = q + 3 + max_extra

  def sample(key: jax.Array) -> Example:
    k_class, k_tail, k_distractors = jax.random.split(key, 3)
    cls = _common.coin(k_class).astype(jnp.int32)  # 0: x, 1: y
    length = q + 3 + _common.truncated_geometric(k_tail, P_END, max_extra)
    t = _common.steps(T)
    distractors = _common.randint(k_distractors, (T,), 0, p)
    symbols = jnp.where(t == 0, B, jnp.where(t == 1, X + cls, jnp.where(t == length - 1, E, distractors)))
    xs = _common.one_hot(symbols, p + 4)
    scored = _common.last_step_mask(T, length)
    targets = jnp.where(scored[:, None], _common.one_hot(cls, 2)[None, :], 0.0)
    return _common.make_example(xs, targets, scored, length, ids=symbols)

  def correct(outputs: jax.Array, example: Example) -> jax.Array:
    return _common.max_abs_error(outputs, example) < 0.2

  return Task(
    name="lag2c",
    input_size=p + 4,
    output_size=2,
    max_length=T,
    output_activation="sigmoid",
    loss="mse",
    sample=sample,
    test_sample=sample,
    correct=correct,
    error=_common.max_abs_error,
  )
