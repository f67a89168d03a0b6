"""Long sequences: a training step at T = 10,000 with and without rematerialisation, time and peak memory."""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing


def supports(option: str) -> bool:
  return option in inspect.signature(jaxrnn.unroll).parameters


def train_step(cell_name: str, B: int, T: int, I: int, H: int, **unroll_kwargs: Any) -> dict[str, float]:
  """Compiles one training step and returns its seconds and XLA's memory accounting in bytes."""
  cell = models.jaxrnn_cell(cell_name, H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32))

  def loss(p, xs):
    return jnp.mean(jaxrnn.unroll(cell, p, xs, **unroll_kwargs)[1] ** 2)

  compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
  mem = compiled.memory_analysis()
  if mem is None:
    raise RuntimeError(f"XLA reports no memory analysis on {jax.default_backend()}")
  secs = timing.measure({"step": lambda: jax.block_until_ready(compiled(params, xs))}, rounds=3, block_s=0.5)["step"]
  return {
    "seconds": secs,
    "temp_bytes": float(mem.temp_size_in_bytes),
    "peak_bytes": float(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes),
  }
