"""Exp 6: temporal order, Hochreiter & Schmidhuber (1997), Sect. 5.6.

8 one-hot symbols ``a b c d X Y B E``. A sequence starts with ``E``, ends with ``B`` and holds random
symbols from ``a .. d`` elsewhere, except at 2 (6a) or 3 (6b) positions, each drawn from its window,
that hold ``X`` or ``Y``. The class is the order of those symbols (6a: ``XX, XY, YX, YY``; 6b:
``XXX .. YYY``), one-hot over 4 / 8 outputs, scored at the last step only.

Choices:

* Choice: symbols are indexed ``a b c d X Y B E`` = 0..7.
* Choice: the paper's positions are 1-based (position 1 holds ``E``): ``t1`` in 10..20 and ``t2`` in
  50..60 (6a); ``t1`` in 10..20, ``t2`` in 33..43, ``t3`` in 66..76 (6b), each uniform; 0-based
  step ``t_i - 1``. Lengths are uniform over the integers ``length_min .. length_max`` (100..110).
* Choice: each relevant symbol is ``X`` or ``Y`` with probability 1/2, independently; the class index
  reads them as binary digits, first symbol most significant, ``X`` = 0 and ``Y`` = 1
  (6a: ``XX`` = 0, ``XY`` = 1, ``YX`` = 2, ``YY`` = 3).
* Choice: ``correct`` = every output's absolute error < 0.3 at the last step; ``error`` = the squared
  error summed over the outputs at the last step (what ST3(0.1) averages).
* Choice: ``length_min`` must leave ``B`` after the last window (``length_min >= 61`` for 6a, ``77``
  for 6b) and ``length_max >= length_min``; defaults 100 and 110.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.tasks import _common
from experiments.tasks.base import Example, Task

SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")
X_INDEX, B_INDEX, E_INDEX = 4, 6, 7
WINDOWS = {  # 1-based positions (first, last) of each X/Y symbol
  "order6a": ((10, 20), (50, 60)),
  "order6b": ((10, 20), (33, 43), (66, 76)),
}


def _make_order(name: str, length_min: int, length_max: int) -> Task:
  windows = WINDOWS[name]
  n = len(windows)
  last_window = windows[-1][1]
  length_min = _common.check_int(name, "length_min", length_min, minimum=last_window + 1)
  length_max = _common.check_int(name, "length_max", length_max, minimum=length_min)
  n_classes = 2**n

  def sample(key: jax.Array) -> Example:
    k_length, k_symbols, k_xy, *k_positions = jax.random.split(key, 3 + n)
    length = _common.randint(k_length, (), length_min, length_max + 1)
    t = _common.steps(length_max)
    symbols = _common.randint(k_symbols, (length_max,), 0, 4)
    xy = _common.coin(k_xy, (n,)).astype(jnp.int32)  # 0: X, 1: Y
    cls = jnp.int32(0)
    for i, ((first, last), k_pos) in enumerate(zip(windows, k_positions, strict=True)):
      pos = _common.randint(k_pos, (), first - 1, last)
      symbols = jnp.where(t == pos, X_INDEX + xy[i], symbols)
      cls = 2 * cls + xy[i]
    symbols = jnp.where(t == 0, E_INDEX, jnp.where(t == length - 1, B_INDEX, symbols))
    xs = _common.one_hot(symbols, len(SYMBOLS))
    scored = _common.last_step_mask(length_max, length)
    targets = jnp.where(scored[:, None], _common.one_hot(cls, n_classes)[None, :], 0.0)
    return _common.make_example(xs, targets, scored, length, ids=symbols)

  def correct(outputs: jax.Array, example: Example) -> jax.Array:
    return _common.max_abs_error(outputs, example) < 0.3

  return Task(
    name=name,
    input_size=len(SYMBOLS),
    output_size=n_classes,
    max_length=length_max,
    output_activation="sigmoid",
    loss="mse",
    sample=sample,
    test_sample=sample,
    correct=correct,
    error=_common.squared_error,
  )


def make_order6a(*, length_min: int = 100, length_max: int = 110) -> Task:
  """Exp 6a: the order of ``X``/``Y`` at steps ``t1`` in 10..20 and ``t2`` in 50..60; 4 classes.

  Args:
    length_min: the shortest sequence (the paper: 100).
    length_max: the longest sequence, the padded ``T`` (the paper: 110).

  Returns:
    The :class:`Task`: 8 inputs, 4 outputs.

  >>> import jax
  >>> ex = make_order6a().sample(jax.random.key(0))
  >>> ex.xs.shape, ex.targets.shape
  ((110, 8), (110, 4))
  """
  return _make_order("order6a", length_min, length_max)


def make_order6b(*, length_min: int = 100, length_max: int = 110) -> Task:
  """Exp 6b: the order of ``X``/``Y`` at three steps (10..20, 33..43, 66..76); 8 classes.

  Args:
    length_min: the shortest sequence (the paper: 100).
    length_max: the longest sequence, the padded ``T`` (the paper: 110).

  Returns:
    The :class:`Task`: 8 inputs, 8 outputs.
  """
  return _make_order("order6b", length_min, length_max)
