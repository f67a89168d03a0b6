"""Task generators of the 1997 LSTM experiments (and two modern benchmarks), behind one factory.

``make_task(name, **params)`` returns a :class:`Task` whose ``sample(key)`` is a pure, jittable,
vmappable function of a PRNG key giving one padded :class:`Example`; a batch is
``jax.vmap(task.sample)(keys)``.

=================  =================================================  ==============================
name               parameters (defaults: the paper's main row)         module
=================  =================================================  ==============================
reber              data_seed=0, n_train/n_test=256, legal_targets=0,   :mod:`.reber` (Exp 1)
                   distinct=0
lag2a, lag2b       p=100                                               :mod:`.lags` (Exp 2)
lag2c              p=100, q=100, max_extra=100                         :mod:`.lags`
noise3a/3b/3c      T=100, N=3 (N in {1, 3})                            :mod:`.noise` (Exp 3)
adding             T=100                                               :mod:`.arithmetic` (Exp 4)
multiplication     T=100                                               :mod:`.arithmetic` (Exp 5)
order6a, order6b   length_min=100, length_max=110                      :mod:`.order` (Exp 6)
adding_modern      T=100                                               :mod:`.modern`
copy               T=100, n_symbols=8, copy_length=10                  :mod:`.modern`
=================  =================================================  ==============================

Each module's docstring lists the choices it makes where the paper is ambiguous ("Choice:").

>>> import jax
>>> task = make_task("adding", T=100)
>>> batch = jax.vmap(task.sample)(jax.random.split(jax.random.key(0), 4))
>>> batch.xs.shape, batch.length.dtype
((4, 110, 2), dtype('int32'))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from experiments.tasks import _common
from experiments.tasks.arithmetic import make_adding as make_adding
from experiments.tasks.arithmetic import make_multiplication as make_multiplication
from experiments.tasks.base import TASK_NAMES as TASK_NAMES
from experiments.tasks.base import Example as Example
from experiments.tasks.base import Task as Task
from experiments.tasks.baselines import BASELINES as BASELINES
from experiments.tasks.baselines import baselines as baselines
from experiments.tasks.lags import make_lag2a as make_lag2a
from experiments.tasks.lags import make_lag2b as make_lag2b
from experiments.tasks.lags import make_lag2c as make_lag2c
from experiments.tasks.modern import make_adding_modern as make_adding_modern
from experiments.tasks.modern import make_copy as make_copy
from experiments.tasks.noise import make_noise3a as make_noise3a
from experiments.tasks.noise import make_noise3b as make_noise3b
from experiments.tasks.noise import make_noise3c as make_noise3c
from experiments.tasks.order import make_order6a as make_order6a
from experiments.tasks.order import make_order6b as make_order6b
from experiments.tasks.reber import make_reber as make_reber

_FACTORIES: dict[str, Callable[..., Task]] = {
  "reber": make_reber,
  "lag2a": make_lag2a,
  "lag2b": make_lag2b,
  "lag2c": make_lag2c,
  "noise3a": make_noise3a,
  "noise3b": make_noise3b,
  "noise3c": make_noise3c,
  "adding": make_adding,
  "multiplication": make_multiplication,
  "order6a": make_order6a,
  "order6b": make_order6b,
  "adding_modern": make_adding_modern,
  "copy": make_copy,
}
assert tuple(_FACTORIES) == TASK_NAMES


def task_params(name: str) -> dict[str, object]:
  """The parameters task ``name`` accepts, with their defaults.

  >>> task_params("copy")
  {'T': 100, 'n_symbols': 8, 'copy_length': 10}
  """
  if name not in _FACTORIES:
    raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
  signature = inspect.signature(_FACTORIES[name])
  return {k: p.default for k, p in signature.parameters.items()}


def make_task(name: str, **params: int) -> Task:
  """The task ``name`` with ``params``; unknown names, parameters or impossible values raise ValueError.

  Args:
    name: one of :data:`TASK_NAMES`.
    **params: the task's parameters (see the table above); omitted ones take the paper's defaults.

  Returns:
    The :class:`Task`.

  Raises:
    ValueError: naming the task, the parameter and what is allowed.

  >>> make_task("lag2c", p=50, q=50).max_length
  153
  """
  defaults = task_params(name)
  _common.check_params(name, params, defaults)
  return _FACTORIES[name](**params)


__all__ = [
  "BASELINES",
  "TASK_NAMES",
  "Example",
  "Task",
  "baselines",
  "make_adding",
  "make_adding_modern",
  "make_copy",
  "make_lag2a",
  "make_lag2b",
  "make_lag2c",
  "make_multiplication",
  "make_noise3a",
  "make_noise3b",
  "make_noise3c",
  "make_order6a",
  "make_order6b",
  "make_reber",
  "make_task",
  "task_params",
]
