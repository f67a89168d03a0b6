"""Initialisers for recurrent cells.

Every initialiser has the ``jax.nn.initializers`` signature
``init(key, shape, dtype) -> array``, so the ones jax already ships are
re-exported unchanged and new ones follow the same contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]

# Re-exported from jax: the usual choices for input and recurrent kernels.
lecun_normal = jax.nn.initializers.lecun_normal
glorot_uniform = jax.nn.initializers.glorot_uniform
glorot_normal = jax.nn.initializers.glorot_normal
zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones
constant = jax.nn.initializers.constant


def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: Any = None) -> Initializer:
  """``jax.nn.initializers.orthogonal``, the same matrices, but safe to ``vmap`` on the CPU.

  Its QR decomposition is a LAPACK call. jaxlib 0.10's CPU LAPACK kernels split a batch of matrices over XLA's
  thread pool and wait for the parts, so two batched decompositions that XLA runs side by side can each hold a
  pool thread while the parts wait behind the other's: the program never finishes. A cell's init has one
  decomposition per gate, each batched over the keys under ``vmap``: ``jax.jit(jax.vmap(lambda k: jaxrnn.lstm(32,
  recurrent_init=jax.nn.initializers.orthogonal()).init(k, 2)))`` over 10 keys hung in 5 of 12 fresh processes on
  this project's 2-core machine (``python scripts/lapack_deadlock.py``); with it as the default, ``python -m
  experiments run configs/modern_lstm_adding_t100.toml`` hung at its vmapped init in 2 of 8 runs. Here, under
  ``vmap`` on the CPU, each example's matrix is drawn in a loop (``jax.custom_batching.sequential_vmap``), so
  every decomposition is of a single matrix, which the kernels do without the pool: ``jaxrnn.lstm(32)``'s init
  hung in none of 12. The matrices are those of ``jax.nn.initializers.orthogonal``, bit for bit. On other platforms
  it is ``vmap``-ed as usual (``jax.lax.platform_dependent``: the platform the program is lowered for decides).

  >>> w = orthogonal()(jax.random.key(0), (4, 4))
  >>> bool(jnp.allclose(w @ w.T, jnp.eye(4), atol=1e-5))
  True
  """
  unit = jax.nn.initializers.orthogonal(1.0, column_axis, dtype)

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = dtype) -> jax.Array:
    def draw(k: jax.Array) -> jax.Array:
      return unit(k, shape, dtype)

    # Chosen per platform when the program is lowered (not by JAX's default backend), so a program placed on
    # the CPU of a machine with a GPU takes the loop too, and one exported for several platforms takes it on the
    # CPU only.
    q = jax.lax.platform_dependent(key, cpu=jax.custom_batching.sequential_vmap(draw), default=draw)
    # The scale outside the loop, so that it can be differentiated (a custom_vmap cannot be, in reverse mode);
    # jax multiplies the same way, so the bits agree.
    return jnp.array(scale, q.dtype) * q

  return init


def uniform(scale: float) -> Initializer:
  """Uniform in ``[-scale, scale]`` (symmetric, unlike ``jax.nn.initializers.uniform``).

  The 1997 LSTM paper draws every weight from ``[-0.2, 0.2]`` or
  ``[-0.1, 0.1]``; PyTorch and equinox draw every weight from
  ``[-1/sqrt(H), 1/sqrt(H)]`` (see :func:`torch_default`).

  >>> w = uniform(0.1)(jax.random.key(0), (3, 4))
  >>> bool(jnp.all(jnp.abs(w) <= 0.1))
  True
  """
  if scale < 0:
    raise ValueError(f"scale must be >= 0, got {scale}")

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)

  return init


def torch_default(hidden_size: int) -> Initializer:
  """PyTorch's and equinox's default: uniform in ``[-1/sqrt(H), 1/sqrt(H)]``."""
  return uniform(1.0 / float(np.sqrt(hidden_size)))


def per_gate(
  key: jax.Array,
  init: Initializer,
  shape: tuple[int, int],
  num_gates: int,
  dtype: Any,
) -> jax.Array:
  """Initialises a fused ``(rows, num_gates * H)`` kernel one ``(rows, H)`` gate at a time.

  Orthogonal recurrent kernels are orthogonal per gate, as when each gate has
  its own dense layer (flax, keras); a fused orthogonal ``(H, 4H)`` matrix
  would not be.
  """
  rows, cols = shape
  keys = jax.random.split(key, num_gates)
  # Initialisers such as orthogonal need a QR decomposition, which has no half-precision kernel:
  # draw in float32 and cast.
  draw = jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype
  return jnp.concatenate([init(k, (rows, cols // num_gates), draw).astype(dtype) for k in keys], axis=-1)


def gate_biases(
  key: jax.Array,
  hidden_size: int,
  gates: Sequence[str],
  bias_init: Initializer,
  overrides: Mapping[str, Any] | None,
  dtype: Any,
) -> jax.Array:
  """A fused bias ``(len(gates) * H,)`` with explicit values for some gates.

  Args:
    key: PRNG key for ``bias_init``.
    hidden_size: ``H``.
    gates: gate names in layout order, e.g. ``("i", "f", "g", "o")``.
    bias_init: initialiser for gates without an override.
    overrides: gate name -> a scalar or an ``(H,)`` array of values.
    dtype: parameter dtype.
  """
  overrides = dict(overrides or {})
  unknown = sorted(set(overrides) - set(gates))
  if unknown:
    raise ValueError(f"gate_bias has unknown gate(s) {unknown}; this cell's gates are {tuple(gates)}")
  keys = jax.random.split(key, len(gates))
  parts = []
  for k, gate in zip(keys, gates):
    if gate in overrides:
      value = jnp.asarray(overrides[gate], dtype)
      if value.shape not in ((), (hidden_size,)):
        raise ValueError(
          f"gate_bias[{gate!r}] must be a scalar or have shape ({hidden_size},), got shape {value.shape}"
        )
      parts.append(jnp.broadcast_to(value, (hidden_size,)))
    else:
      parts.append(bias_init(k, (hidden_size,), dtype))
  return jnp.concatenate(parts)
