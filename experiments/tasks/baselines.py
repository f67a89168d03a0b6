"""Reference baselines a results table quotes next to each task (lstm1997.md, last section).

``BASELINES[name]`` holds the default parameters' values; :func:`baselines` computes them for any
parameters (only the copy task's depends on them).

* ``constant_mse``: the MSE of the best constant output (the targets' variance) as usually quoted.
* ``constant_mse_exact``: the same under this package's generator. The 1997 adding and
  multiplication rule "X1 = 0 (adding) / 1.0 (multiplication) when X1 is the first pair" holds with
  probability 1/10 and lowers / raises the targets' variance:
  adding ``0.9 * 1/24 + 0.1 * 1/48 = 19/480``; multiplication, target ``X2`` with probability 0.1 and
  ``X1 X2`` otherwise: mean ``11/40``, second moment ``2/15``, variance ``277/4800``.
  Without the rule they are the quoted ``1/24`` and ``7/144``.
* ``chance_accuracy``: the fraction correct of a constant guess of the most frequent class.
* ``memoryless_xent``: the copy task's per-step cross-entropy of blanks followed by uniform guesses.
"""

from __future__ import annotations

import math

from experiments.tasks import _common


def copy_memoryless_xent(T: int = 100, n_symbols: int = 8, copy_length: int = 10) -> float:
  """``copy_length * ln(n_symbols) / (T + 2 copy_length)``: ``10 ln 8 / (T + 20)`` by default."""
  return copy_length * math.log(n_symbols) / (T + 2 * copy_length)


def baselines(name: str, **params: int) -> dict[str, float]:
  """The baselines of task ``name`` with ``params`` (see :func:`experiments.tasks.make_task`).

  Args:
    name: a task name; the tasks without a quoted baseline give ``{}``.
    **params: the task's parameters (only ``copy`` reads them).

  Returns:
    A dict from baseline name to value.

  >>> round(baselines("copy", T=100)["memoryless_xent"], 4)
  0.1733
  """
  if name == "copy":
    _common.check_params("copy", params, ("T", "n_symbols", "copy_length"))
    return {"memoryless_xent": copy_memoryless_xent(**params)}
  return dict(_FIXED.get(name, {}))


_FIXED: dict[str, dict[str, float]] = {
  "adding": {"constant_mse": 1 / 24, "constant_mse_exact": 19 / 480},
  "multiplication": {"constant_mse": 7 / 144, "constant_mse_exact": 277 / 4800},
  "order6a": {"chance_accuracy": 1 / 4},
  "order6b": {"chance_accuracy": 1 / 8},
  "noise3a": {"chance_accuracy": 1 / 2},
  "noise3b": {"chance_accuracy": 1 / 2},
  "noise3c": {"chance_accuracy": 1 / 2},
  "adding_modern": {"constant_mse": 1 / 6, "constant_mse_exact": 1 / 6},
}

BASELINES: dict[str, dict[str, float]] = {**{k: dict(v) for k, v in _FIXED.items()}, "copy": baselines("copy")}
