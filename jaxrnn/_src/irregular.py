"""Cells for irregularly sampled time series: learned decay over time gaps, and GRU-D.

Both read the time gap as part of the step input, so they unroll with
:func:`jaxrnn.unroll` like every other cell and keep the one-array ``x``
contract of :class:`jaxrnn.Cell`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._src import base, fused
from jaxrnn._src import cells as cells_lib
from jaxrnn._src import initializers as inits

Array = jax.Array


def _bcast(v: Array, like: Array) -> Array:
  return v.reshape((1,) * (like.ndim - v.ndim) + v.shape)


class TimeDecayParams(NamedTuple):
  """Parameters of :func:`time_decay`."""

  cell: Any  # the wrapped cell's params
  rate: Any  # a pytree like the carry, each leaf (F,): pre-softplus decay rates per unit


def time_decay(cell: base.Cell, *, delta_as_input: bool = False, rate_init: float = 0.0) -> base.Cell:
  r"""Wraps ``cell`` so that its state decays over the time gap before each step.

  The step input is ``x = [features, dt]``: the last feature is the time
  since the previous observation, ``dt >= 0``. Every carry leaf ``c`` (of
  feature size ``F``) decays with its own learned rates before the step:

  .. math::

    c \leftarrow \exp(-\operatorname{softplus}(a) \, \Delta t) \odot c, \qquad
    (c', y) = \text{cell}(c, x_{features})

  so a long gap pulls the state towards zero (an exponential forgetting of
  stale information, as GRU-D's hidden-state decay with a scalar gap).
  With ``delta_as_input=True`` the wrapped cell also sees ``dt`` as a
  feature (the "GRU-dt" baseline of Che et al. 2018 when ``cell`` is a GRU).

  :func:`jaxrnn.unroll` runs it on the fast path of the wrapped cell where
  that has one (jaxrnn's ``elman``, ``gru``, ``mgu``, ``lstm``): the kernel
  multiplies the carry by the decay before each step, and its derivative
  reaches the rates and the time gaps.

  Args:
    cell: any :class:`jaxrnn.Cell`.
    delta_as_input: pass ``dt`` on to the wrapped cell as its last feature.
    rate_init: initial pre-softplus rate ``a`` (0 gives ``softplus(0) = ln 2``
      per unit of time).

  Returns:
    A :class:`jaxrnn.Cell` over inputs ``(*batch, features + 1)`` with params
    :class:`TimeDecayParams` and the wrapped cell's carry.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> cell = jaxrnn.time_decay(jaxrnn.gru(4))
    >>> params = cell.init(jax.random.key(0), 3)           # 2 features + dt
    >>> xs = jnp.concatenate([jnp.ones((5, 2, 2)), jnp.full((5, 2, 1), 0.5)], -1)
    >>> jaxrnn.unroll(cell, params, xs)[1].shape
    (5, 2, 4)
  """
  if not isinstance(cell, base.Cell):
    raise base.InputTypeError(f"cell must be a jaxrnn.Cell, got {type(cell).__name__}")

  def init_fn(key: Array, input_size: int) -> TimeDecayParams:
    base.check_positive_int("input_size", input_size)
    inner_size = input_size if delta_as_input else input_size - 1
    if inner_size < 1:
      raise base.InputError(f"input_size must be >= 2 (features plus the time gap), got {input_size}")
    params = cell.init(key, inner_size)
    dtype = jax.tree.leaves(params)[0].dtype
    carry = jax.eval_shape(lambda: cell.initial_carry((), dtype))
    rate = jax.tree.map(lambda c: jnp.full(c.shape[-1:], rate_init, dtype), carry)
    return TimeDecayParams(params, rate)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> Any:
    return cell.initial_carry(batch_shape, dtype)

  def apply_fn(
    params: TimeDecayParams, carry: Any, x: Array, *, recurrent_mask: Array | None = None
  ) -> tuple[Any, Array]:
    base.check_params_type(params, TimeDecayParams)
    if not hasattr(x, "ndim") or x.ndim < 1 or x.shape[-1] < 2:
      raise base.InputError(
        f"x must have shape (*batch, features + 1) with the time gap last, got {getattr(x, 'shape', x)}"
      )
    dt = x[..., -1:]
    inner_x = x if delta_as_input else x[..., :-1]
    carry = jax.tree.map(lambda c, a: jnp.exp(-jax.nn.softplus(_bcast(a, c)) * dt) * c, carry, params.rate)
    extra = {} if recurrent_mask is None else {"recurrent_mask": recurrent_mask}  # the decayed state, masked
    return cell.apply(params.cell, carry, inner_x, **extra)

  if cells_lib.takes_recurrent_mask(cell):
    apply_fn = cells_lib._with_recurrent_mask(apply_fn)
  # jaxrnn.unroll's fast path runs the wrapped cell's kernel (where it has one) with the decay.
  setattr(apply_fn, fused.DECAY_ATTR, (cell, delta_as_input))
  return base.Cell(init_fn, initial_carry_fn, apply_fn)


class GRUDParams(NamedTuple):
  """Parameters of :func:`grud`; ``D`` features, gate order ``r, z, n``."""

  w_x: Array  # shape=(D, 3H): imputed input -> gates
  w_m: Array  # shape=(D, 3H): missingness mask -> gates
  w_h: Array  # shape=(H, 3H)
  b: Array  # shape=(3H,)
  w_gx: Array  # shape=(D,): diagonal input-decay weights
  b_gx: Array  # shape=(D,)
  w_gh: Array  # shape=(D, H): hidden-decay weights
  b_gh: Array  # shape=(H,)


class GRUDCarry(NamedTuple):
  """Carry of :func:`grud`."""

  h: Array  # shape=(*batch, H)
  x_last: Array  # shape=(*batch, D): each feature's last observed value (x_mean before the first)
  seen: Array  # shape=(*batch, D): 1 once a feature has been observed, else 0


def grud(
  hidden_size: int,
  num_features: int,
  *,
  x_mean: Any = None,
  kernel_init: inits.Initializer = inits.lecun_normal(),
  recurrent_init: inits.Initializer = inits.orthogonal(),
  param_dtype: Any = jnp.float32,
) -> base.Cell:
  r"""GRU-D: a GRU with trainable decays for missing values (Che et al. 2018).

  The step input is ``x = [values, mask, delta]``, three blocks of ``D``
  features: ``mask`` is 1 where a value was observed, ``delta`` the time
  since each feature was last observed. With ``x_last`` the last observed
  values and ``x_mean`` the empirical means (a constant of the data):

  .. math::

    \gamma_x &= \exp(-\max(0, w_{\gamma x} \odot \delta + b_{\gamma x})), \quad
    \gamma_h = \exp(-\max(0, \delta W_{\gamma h} + b_{\gamma h})) \\
    \hat x &= m \odot x + (1 - m) \odot (\gamma_x \odot x_{last} + (1 - \gamma_x) \odot \bar x) \\
    \hat h &= \gamma_h \odot h \\
    r &= \sigma(\hat x W_{xr} + m W_{mr} + \hat h W_{hr} + b_r), \quad
    z = \sigma(\hat x W_{xz} + m W_{mz} + \hat h W_{hz} + b_z) \\
    n &= \tanh(\hat x W_{xn} + m W_{mn} + (r \odot \hat h) W_{hn} + b_n) \\
    h' &= (1 - z) \odot n + z \odot \hat h

  With ``recurrent_mask=`` (recurrent dropout, :func:`jaxrnn.with_recurrent_mask`)
  the recurrent products read ``\hat h`` times that mask; the update's
  ``z \odot \hat h`` reads it whole.

  The reset gate acts before the recurrent product, as in the paper. The
  paper writes the update as ``(1 - z) h + z n``; this is the same family
  with ``z -> 1 - z`` (jaxrnn's GRU convention, see :func:`jaxrnn.gru`).
  Before a feature's first observation ``x_last`` is ``x_mean``.

  :func:`jaxrnn.unroll` runs it on a fast path: the imputed inputs of every
  step are computed at once (each feature's last observed value is a
  running maximum of step indices and a gather, not a scan), then the GRU's
  kernel runs with ``gamma_h`` as a factor on ``h`` before each step
  (where ``x_mean`` is a traced value, the plain scan).

  Args:
    hidden_size: ``H``.
    num_features: ``D``, the number of observed variables (the input size is ``3 D``).
    x_mean: ``(D,)`` empirical means of the features (zeros if None, i.e.
      standardised data).
    kernel_init, recurrent_init: per-gate initialisers.
    param_dtype: dtype of every parameter.

  Returns:
    A :class:`jaxrnn.Cell` over inputs ``(*batch, 3 D)`` with params
    :class:`GRUDParams`, carry :class:`GRUDCarry` and output ``h``.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> cell = jaxrnn.grud(8, 2)
    >>> params = cell.init(jax.random.key(0), 6)
    >>> values = jnp.ones((5, 3, 2)); mask = jnp.ones((5, 3, 2)); delta = jnp.ones((5, 3, 2))
    >>> carry, ys = jaxrnn.unroll(cell, params, jnp.concatenate([values, mask, delta], -1))
    >>> ys.shape, carry.x_last.shape
    ((5, 3, 8), (3, 2))

  References:
    Che, Purushotham, Cho, Sontag, Liu, "Recurrent neural networks for
    multivariate time series with missing values", Scientific Reports, 2018.
  """
  base.check_positive_int("hidden_size", hidden_size)
  D = base.check_positive_int("num_features", num_features)
  param_dtype = base.check_floating_dtype("param_dtype", param_dtype)
  H = hidden_size
  if x_mean is not None and np.shape(x_mean) != (D,):
    raise base.InputError(f"x_mean must have shape ({D},) (one mean per feature), got {np.shape(x_mean)}")

  def _mean(dtype: Any) -> Array:
    return jnp.zeros((D,), dtype) if x_mean is None else jnp.asarray(x_mean, dtype)

  def init_fn(key: Array, input_size: int) -> GRUDParams:
    base.check_positive_int("input_size", input_size)
    if input_size != 3 * D:
      raise base.InputError(f"input_size must be 3 * num_features = {3 * D} ([values, mask, delta]), got {input_size}")
    kx, km, kh, kg = jax.random.split(key, 4)
    return GRUDParams(
      w_x=inits.per_gate(kx, kernel_init, (D, 3 * H), 3, param_dtype),
      w_m=inits.per_gate(km, kernel_init, (D, 3 * H), 3, param_dtype),
      w_h=inits.per_gate(kh, recurrent_init, (H, 3 * H), 3, param_dtype),
      b=jnp.zeros((3 * H,), param_dtype),
      w_gx=jnp.zeros((D,), param_dtype),
      b_gx=jnp.zeros((D,), param_dtype),
      w_gh=kernel_init(kg, (D, H), param_dtype),
      b_gh=jnp.zeros((H,), param_dtype),
    )

  params_spec = base.params_spec(init_fn)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> GRUDCarry:
    batch_shape = base.check_batch_shape(batch_shape)
    dtype = base.check_floating_dtype("dtype", dtype)
    return GRUDCarry(*(jnp.zeros((*batch_shape, n), dtype) for n in (H, D, D)))

  def apply_fn(
    params: GRUDParams, carry: GRUDCarry, x: Array, *, recurrent_mask: Array | None = None
  ) -> tuple[GRUDCarry, Array]:
    base.check_step(
      params, carry, x, params_type=GRUDParams, spec=params_spec, initial_carry=initial_carry_fn, input_size=3 * D
    )
    values, m, delta = x[..., :D], x[..., D : 2 * D], x[..., 2 * D :]
    mean = _bcast(_mean(x.dtype), values)
    x_last = jnp.where(carry.seen > 0, carry.x_last, mean)
    gx = jnp.exp(-jax.nn.relu(_bcast(params.w_gx, delta) * delta + _bcast(params.b_gx, delta)))
    gh = jnp.exp(-jax.nn.relu(delta @ params.w_gh + _bcast(params.b_gh, carry.h)))
    x_hat = m * values + (1.0 - m) * (gx * x_last + (1.0 - gx) * mean)
    h = gh * carry.h
    hm = cells_lib._recurrent_source(h, recurrent_mask)  # the products read it; the update below reads h
    a = x_hat @ params.w_x + m @ params.w_m
    a = a + _bcast(params.b, a)
    rz = a[..., : 2 * H] + hm @ params.w_h[:, : 2 * H]
    r = jax.nn.sigmoid(rz[..., :H])
    z = jax.nn.sigmoid(rz[..., H:])
    n = jnp.tanh(a[..., 2 * H :] + (r * hm) @ params.w_h[:, 2 * H :])
    h = (1.0 - z) * n + z * h
    observed = m > 0
    new = GRUDCarry(
      h=h,
      x_last=jnp.where(observed, values, x_last),
      seen=jnp.where(observed, jnp.ones_like(carry.seen), carry.seen),
    )
    return new, h

  apply_fn = cells_lib._with_recurrent_mask(apply_fn)
  try:  # jaxrnn.unroll's fast path (fused._grud) takes the means as a constant of the cell
    mean = None if x_mean is None else tuple(float(v) for v in np.asarray(x_mean, np.float64))
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return base.Cell(init_fn, initial_carry_fn, apply_fn)  # means traced inside a jit: the plain scan
  return base.Cell(
    init_fn, initial_carry_fn, cells_lib._with_fast_path(apply_fn, "grud", hidden_size=H, num_features=D, x_mean=mean)
  )
