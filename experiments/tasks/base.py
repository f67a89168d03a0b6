"""The contract every task generator follows.

A task is a pure, jittable, vmappable function of a PRNG key that returns one
padded sequence (:class:`Example`); a batch is ``jax.vmap(task.sample)(keys)``.
Data is made on device, inside the compiled training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax


class Example(NamedTuple):
  """One padded sequence of a task. ``T = Task.max_length``."""

  xs: jax.Array  # shape=(T, input_size), float32; zeros past `length`
  targets: jax.Array  # shape=(T, output_size), float32; zeros where not scored
  scored: jax.Array  # shape=(T,), bool; the steps whose outputs count (loss, errors, success)
  length: jax.Array  # shape=(), int32; valid steps, 1 <= length <= T
  legal: jax.Array  # shape=(T, output_size), bool; Exp 1: the legal next symbols; else targets > 0.5
  # shape=(T,), int32: for tasks whose inputs are one-hot symbols, each step's symbol index
  # (xs = one_hot(ids, input_size)), -1 past `length`; None for tasks with real-valued inputs.
  # `model.one_hot_inputs = "gather"` reads these instead of xs.
  ids: jax.Array | None = None


class Task(NamedTuple):
  """A task of the 1997 paper (or a modern benchmark) with its scoring rule."""

  name: str  # one of TASK_NAMES
  input_size: int
  output_size: int
  max_length: int  # T of Example
  output_activation: str  # "sigmoid" (the paper's logistic output units), "linear" or "softmax"
  loss: str  # "mse" (the paper's squared error) or "xent" (softmax cross-entropy, copy task)
  sample: Callable[[jax.Array], Example]  # a training sequence from a key
  test_sample: Callable[[jax.Array], Example]  # a test sequence (Exp 1: from the disjoint test set)
  # correct(outputs (T, K), example) -> () bool: the paper's per-sequence criterion for this task
  correct: Callable[[jax.Array, Example], jax.Array]
  # error(outputs (T, K), example) -> () float: the per-sequence error the stopping rule reads
  # (max absolute error over scored steps and outputs, unless the task says otherwise)
  error: Callable[[jax.Array, Example], jax.Array]
  # Exp 1 trains on a fixed set and tests on a disjoint one: batched Examples with a leading axis of
  # size n (256 each), from which `sample` / `test_sample` draw. None for tasks with fresh random data.
  train_set: Example | None = None
  test_set: Example | None = None


TASK_NAMES = (
  "reber",
  "lag2a",
  "lag2b",
  "lag2c",
  "noise3a",
  "noise3b",
  "noise3c",
  "adding",
  "multiplication",
  "order6a",
  "order6b",
  "adding_modern",
  "copy",
)
