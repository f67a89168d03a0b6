"""The original LSTM of Hochreiter & Schmidhuber (1997), with memory blocks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._src import base
from jaxrnn._src import cells as cells_lib
from jaxrnn._src import initializers as inits

Array = jax.Array


def _g_paper(x: Array) -> Array:
  """Cell input squash of the paper, ``4 sigmoid(x) - 2`` in ``[-2, 2]``."""
  return 4.0 * jax.nn.sigmoid(x) - 2.0


def _h_paper(x: Array) -> Array:
  """Cell output squash of the paper, ``2 sigmoid(x) - 1`` in ``[-1, 1]``."""
  return 2.0 * jax.nn.sigmoid(x) - 1.0


def _identity(x: Array) -> Array:
  return x


CELL_INPUT_SQUASH: dict[str, Callable[[Array], Array]] = {
  "paper": _g_paper,  # [-2, 2]
  "logistic": jax.nn.sigmoid,  # [0, 1], Exp 2a/2b
}
CELL_OUTPUT_SQUASH: dict[str, Callable[[Array], Array]] = {
  "paper": _h_paper,  # [-1, 1]
  "identity": _identity,  # Exp 2a/2b
}
BIAS_CHOICES = ("all", "gates", "none")


class LSTM1997Params(NamedTuple):
  """Parameters of :func:`lstm1997`.

  Hidden units are laid out as ``[cells (C*S, block-major), input gates (C),
  output gates (C, only with output_gate)]``; ``U`` is their number.
  """

  w_x: Array  # shape=(input_size, U): input -> every hidden unit
  w_h: Array  # shape=(U, U): every hidden activation at t-1 -> every hidden unit
  b_cell: Array | None  # shape=(C*S,); only with bias="all"
  b_in: Array | None  # shape=(C,); input-gate biases, None with bias="none"
  b_out: Array | None  # shape=(C,); output-gate biases, None with bias="none" or no output gate


class LSTM1997Carry(NamedTuple):
  """Carry of :func:`lstm1997`."""

  s: Array  # shape=(*batch, C*S): the cell states (constant error carousels)
  y: Array  # shape=(*batch, U): every hidden unit's activation at t-1 (cells, then gates)


def lstm1997(
  num_blocks: int,
  block_size: int,
  *,
  output_gate: bool = True,
  bias: str = "all",
  init_scale: float = 0.1,
  input_gate_bias: Sequence[float] | None = None,
  output_gate_bias: Sequence[float] | None = None,
  cell_input_squash: str | Callable[[Array], Array] = "paper",
  cell_output_squash: str | Callable[[Array], Array] = "paper",
  truncated_gradient: bool = False,
  param_dtype: Any = jnp.float32,
) -> base.Cell:
  r"""The LSTM of 1997: memory blocks of cells sharing input and output gates, no forget gate.

  For block ``j`` with cells ``v = 1..S`` (``sigma`` the logistic sigmoid):

  .. math::

    y^{in_j}(t) &= \sigma(net_{in_j}(t)), \qquad y^{out_j}(t) = \sigma(net_{out_j}(t)) \\
    s_{c_j^v}(t) &= s_{c_j^v}(t-1) + y^{in_j}(t)\, g(net_{c_j^v}(t)) \\
    y^{c_j^v}(t) &= y^{out_j}(t)\, h(s_{c_j^v}(t))

  with ``g(x) = 4 sigma(x) - 2`` in [-2, 2] and ``h(x) = 2 sigma(x) - 1`` in
  [-1, 1]. Every net input sees the external input at ``t`` and **every**
  hidden activation at ``t-1`` (cell outputs and gate activations):
  ``net(t) = x(t) w_x + y(t-1) w_h + b``. The cell outputs ``y^c(t)`` are the
  step's output; the experiments put a sigmoid output layer on top of them
  (:func:`jaxrnn.dense`).

  With ``truncated_gradient=True`` the derivative of every net input with
  respect to the activations of ``t-1`` is zero, so error flows back in time
  only through the cell states ``s`` (the paper's truncated backprop,
  Appendix A.1). It is implemented as ``stop_gradient`` on ``y(t-1)``.

  With ``recurrent_mask=`` ``(*batch, C*S)`` (recurrent dropout, see
  :func:`jaxrnn.with_recurrent_mask`; not in the paper) the cell outputs of
  ``t-1`` enter the net inputs times the mask; the gate activations of
  ``t-1`` and the states ``s`` are not masked.

  :func:`jaxrnn.unroll` runs it on its fast path (one sigmoid over every
  unit; the weight gradients as one product per chunk of steps; with the
  truncated gradient the backward steps need no recurrent product), except
  with a callable squash (the plain scan). ``python -m benchmarks.lstm1997``:
  training 1.2x to 2.6x faster than the plain scan.

  Weight count with every hidden unit biased (``bias="all"``), ``I`` inputs
  and ``U = C (S + 2)`` hidden units: ``U (I + U + 1)``. With the
  experiments' ``K`` output units fed by the ``C S`` cells (and biased):
  ``+ K (C S + 1)``; e.g. 2 blocks of 2 cells on 2 inputs: 88 + 5 = 93.

  Args:
    num_blocks: ``C``, the number of memory blocks.
    block_size: ``S``, cells per block.
    output_gate: whether blocks have output gates (Exp 2a/2b have none: then
      ``y^c = h(s)``).
    bias: ``"all"`` (every hidden unit, Exp 3-6), ``"gates"`` (only gates,
      Exp 1) or ``"none"`` (Exp 2c).
    init_scale: every weight and bias starts uniform in
      ``[-init_scale, init_scale]`` (0.2 in Exp 1-2, 0.1 in Exp 3-6).
    input_gate_bias: per-block values that overwrite the input-gate biases
      (e.g. ``(-3, -6)`` in Exp 4), or None to keep the random ones.
    output_gate_bias: per-block values for the output-gate biases.
    cell_input_squash: ``"paper"`` (``g`` above), ``"logistic"`` or a callable.
    cell_output_squash: ``"paper"`` (``h`` above), ``"identity"`` or a callable.
    truncated_gradient: the paper's truncated gradient (see above).
    param_dtype: dtype of every parameter.

  Returns:
    A :class:`jaxrnn.Cell` with params :class:`LSTM1997Params`, carry
    :class:`LSTM1997Carry` and output ``y^c: (*batch, C*S)``.

  Example:
    >>> import jax, jaxrnn
    >>> cell = jaxrnn.lstm1997(2, 2, input_gate_bias=(-3.0, -6.0))
    >>> params = cell.init(jax.random.key(0), 2)
    >>> sum(p.size for p in jax.tree.leaves(params))  # 88 + a 5-weight output unit = 93
    88

  References:
    Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 9(8), 1997.
  """
  C = base.check_positive_int("num_blocks", num_blocks)
  S = base.check_positive_int("block_size", block_size)
  base.check_choice("bias", bias, BIAS_CHOICES)
  param_dtype = base.check_floating_dtype("param_dtype", param_dtype)
  if init_scale < 0:
    raise base.InputError(f"init_scale must be >= 0, got {init_scale}")
  g = _squash("cell_input_squash", cell_input_squash, CELL_INPUT_SQUASH)
  h = _squash("cell_output_squash", cell_output_squash, CELL_OUTPUT_SQUASH)
  for name, values in (("input_gate_bias", input_gate_bias), ("output_gate_bias", output_gate_bias)):
    if values is not None:
      if len(values) != C:
        raise base.InputError(f"{name} must have one value per block ({C}), got {len(values)}: {values!r}")
      if bias == "none":
        raise base.InputError(f"{name} was given but bias='none'")
  if output_gate_bias is not None and not output_gate:
    raise base.InputError("output_gate_bias was given but output_gate=False")
  CS = C * S
  U = CS + C + (C if output_gate else 0)
  uniform = inits.uniform(init_scale)

  def init_fn(key: Array, input_size: int) -> LSTM1997Params:
    base.check_positive_int("input_size", input_size)
    kx, kh, kc, ki, ko = jax.random.split(key, 5)

    def gate_b(k: Array, values: Sequence[float] | None) -> Array:
      if values is None:
        return uniform(k, (C,), param_dtype)
      return jnp.asarray(values, param_dtype)

    return LSTM1997Params(
      w_x=uniform(kx, (input_size, U), param_dtype),
      w_h=uniform(kh, (U, U), param_dtype),
      b_cell=uniform(kc, (CS,), param_dtype) if bias == "all" else None,
      b_in=gate_b(ki, input_gate_bias) if bias != "none" else None,
      b_out=gate_b(ko, output_gate_bias) if bias != "none" and output_gate else None,
    )

  params_spec = base.params_spec(init_fn)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> LSTM1997Carry:
    batch_shape = base.check_batch_shape(batch_shape)
    dtype = base.check_floating_dtype("dtype", dtype)
    return LSTM1997Carry(jnp.zeros((*batch_shape, CS), dtype), jnp.zeros((*batch_shape, U), dtype))

  def apply_fn(
    params: LSTM1997Params, carry: LSTM1997Carry, x: Array, *, recurrent_mask: Array | None = None
  ) -> tuple[LSTM1997Carry, Array]:
    base.check_step(params, carry, x, params_type=LSTM1997Params, spec=params_spec, initial_carry=initial_carry_fn)
    s, y_prev = carry
    if truncated_gradient:
      # Error reaching a net input stops there: no flow back in time except through s.
      y_prev = jax.lax.stop_gradient(y_prev)
    if recurrent_mask is not None:  # recurrent dropout on the cell outputs; the gate activations enter whole
      y_prev = jnp.concatenate([cells_lib._recurrent_source(y_prev[..., :CS], recurrent_mask), y_prev[..., CS:]], -1)
    net = x @ params.w_x + y_prev @ params.w_h
    biases = [b for b in (params.b_cell, params.b_in, params.b_out) if b is not None]
    if biases:
      b = jnp.concatenate(biases) if len(biases) > 1 else biases[0]
      if params.b_cell is None:  # gate-only biases: cells get zero
        b = jnp.concatenate([jnp.zeros((CS,), b.dtype), b])
      net = net + b.reshape((1,) * (net.ndim - 1) + b.shape)
    net_c = net[..., :CS]
    y_in = jax.nn.sigmoid(net[..., CS : CS + C])
    s = s + jnp.repeat(y_in, S, axis=-1) * g(net_c)
    if output_gate:
      y_out = jax.nn.sigmoid(net[..., CS + C :])
      y_c = jnp.repeat(y_out, S, axis=-1) * h(s)
      y = jnp.concatenate([y_c, y_in, y_out], axis=-1)
    else:
      y_c = h(s)
      y = jnp.concatenate([y_c, y_in], axis=-1)
    return LSTM1997Carry(s, y), y_c

  apply_fn = cells_lib._with_recurrent_mask(apply_fn)
  if isinstance(cell_input_squash, str) and isinstance(cell_output_squash, str):  # a callable: the plain scan
    apply_fn = cells_lib._with_fast_path(
      apply_fn,
      "lstm1997",
      num_blocks=C,
      block_size=S,
      output_gate=output_gate,
      cell_input_squash=cell_input_squash,
      cell_output_squash=cell_output_squash,
      truncated_gradient=truncated_gradient,
    )
  return base.Cell(init_fn, initial_carry_fn, apply_fn)


def _squash(name: str, value: Any, table: dict[str, Callable[[Array], Array]]) -> Callable[[Array], Array]:
  if callable(value):
    return value
  base.check_choice(name, value, tuple(table))
  return table[value]
