"""Standard recurrent cells: Elman RNN, GRU, minimal gated unit and LSTM.

Every factory returns a :class:`jaxrnn.Cell`. Layouts follow PyTorch's gate
order (LSTM ``i, f, g, o``; GRU ``r, z, n``) with kernels stored as
``(in_features, gates * H)`` so a step is ``x @ w_x + h @ w_h + b``; see the
README's conventions table for the mapping onto flax, Haiku and Keras.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._src import base
from jaxrnn._src import initializers as inits

Array = jax.Array


def _bcast(v: Array, like: Array) -> Array:
  """Reshapes a ``(F,)`` vector to broadcast against ``(*batch, F)`` without rank promotion."""
  return v.reshape((1,) * (like.ndim - v.ndim) + v.shape)


def _with_fast_path(apply_fn: Any, kind: str, **options: Any) -> Any:
  """``apply_fn``, marked so that :func:`jaxrnn.unroll` runs its whole-sequence kernel (``jaxrnn/_src/fused.py``)."""
  apply_fn._jaxrnn_fused = (kind, options)
  return apply_fn


RECURRENT_MASK_MARK = "_jaxrnn_recurrent_mask"  # on an apply that takes recurrent_mask=


def _with_recurrent_mask(apply_fn: Any) -> Any:
  """``apply_fn``, marked as taking ``recurrent_mask=`` (see :func:`jaxrnn.with_recurrent_mask`)."""
  setattr(apply_fn, RECURRENT_MASK_MARK, True)
  return apply_fn


def takes_recurrent_mask(cell: base.Cell) -> bool:
  """Whether ``cell.apply`` takes ``recurrent_mask=``."""
  return bool(getattr(cell.apply, RECURRENT_MASK_MARK, False))


def _recurrent_source(h: Array, recurrent_mask: Array | None) -> Array:
  """``h`` as the recurrent products read it: times ``recurrent_mask`` (recurrent dropout) when given."""
  if recurrent_mask is None:
    return h
  m = recurrent_mask
  if not hasattr(m, "shape") or not jnp.issubdtype(jnp.result_type(m), jnp.floating):
    raise base.InputTypeError(f"recurrent_mask must be a floating array, got {getattr(m, 'dtype', type(m).__name__)}")
  try:
    fits = jnp.broadcast_shapes(tuple(m.shape), tuple(h.shape)) == tuple(h.shape)
  except ValueError:
    fits = False
  if not fits:
    raise base.InputError(
      f"recurrent_mask has shape {tuple(m.shape)}, expected one that broadcasts to the hidden state's "
      f"{tuple(h.shape)}: (*batch, H) or (H,)"
    )
  return h * _bcast(m.astype(h.dtype), h)


def _zeros_carry(hidden_size: int, batch_shape: Any, dtype: Any) -> Array:
  batch_shape = base.check_batch_shape(batch_shape)
  dtype = base.check_floating_dtype("dtype", dtype)
  return jnp.zeros((*batch_shape, hidden_size), dtype)


# ----------------------------------------------------------------------------
# Elman RNN


class ElmanParams(NamedTuple):
  """Parameters of :func:`elman`."""

  w_x: Array  # shape=(input_size, H)
  w_h: Array  # shape=(H, H)
  b: Array | None  # shape=(H,); None when bias=False


_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def elman(
  hidden_size: int,
  *,
  nonlinearity: str = "tanh",
  bias: bool = True,
  kernel_init: inits.Initializer = inits.lecun_normal(),
  recurrent_init: inits.Initializer = inits.orthogonal(),
  bias_init: inits.Initializer = inits.zeros,
  param_dtype: Any = jnp.float32,
) -> base.Cell:
  r"""The Elman RNN (``torch.nn.RNN``, flax ``SimpleCell``).

  .. math::

    h' = \phi(x W_x + h W_h + b), \qquad y = h'

  with :math:`\phi` ``tanh`` or ``relu``. PyTorch's two biases
  ``b_ih + b_hh`` fold into the single ``b``.

  Args:
    hidden_size: ``H``, the number of hidden units.
    nonlinearity: ``"tanh"`` or ``"relu"``.
    bias: whether ``b`` exists.
    kernel_init: initialiser of ``w_x``, shape ``(input_size, H)``.
    recurrent_init: initialiser of ``w_h``, shape ``(H, H)``.
    bias_init: initialiser of ``b``, shape ``(H,)``.
    param_dtype: dtype of every parameter.

  Returns:
    A :class:`jaxrnn.Cell` with params :class:`ElmanParams`, carry ``h: (*batch, H)``
    and output ``y = h: (*batch, H)``.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> cell = jaxrnn.elman(4)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> h, y = cell.apply(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
    >>> y.shape
    (2, 4)

  References:
    Elman, "Finding structure in time", Cognitive Science, 1990.
  """
  base.check_positive_int("hidden_size", hidden_size)
  base.check_choice("nonlinearity", nonlinearity, tuple(_ACTIVATIONS))
  act = _ACTIVATIONS[nonlinearity]
  param_dtype = base.check_floating_dtype("param_dtype", param_dtype)

  def init_fn(key: Array, input_size: int) -> ElmanParams:
    base.check_positive_int("input_size", input_size)
    kx, kh, kb = jax.random.split(key, 3)
    return ElmanParams(
      w_x=inits.per_gate(kx, kernel_init, (input_size, hidden_size), 1, param_dtype),
      w_h=inits.per_gate(kh, recurrent_init, (hidden_size, hidden_size), 1, param_dtype),
      b=bias_init(kb, (hidden_size,), param_dtype) if bias else None,
    )

  params_spec = base.params_spec(init_fn)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> Array:
    return _zeros_carry(hidden_size, batch_shape, dtype)

  def apply_fn(
    params: ElmanParams, carry: Array, x: Array, *, recurrent_mask: Array | None = None
  ) -> tuple[Array, Array]:
    base.check_step(params, carry, x, params_type=ElmanParams, spec=params_spec, initial_carry=initial_carry_fn)
    z = x @ params.w_x + _recurrent_source(carry, recurrent_mask) @ params.w_h
    if params.b is not None:
      z = z + _bcast(params.b, z)
    h = act(z)
    return h, h

  return base.Cell(
    init_fn,
    initial_carry_fn,
    _with_fast_path(_with_recurrent_mask(apply_fn), "elman", hidden_size=hidden_size, nonlinearity=nonlinearity),
  )


# ----------------------------------------------------------------------------
# GRU


class GRUParams(NamedTuple):
  """Parameters of :func:`gru`; gate order ``r, z, n`` along the last axis."""

  w_x: Array  # shape=(input_size, 3H)
  w_h: Array  # shape=(H, 3H)
  b: Array | None  # shape=(3H,); input-side bias (PyTorch's b_ih + b_hh for r, z; b_in for n)
  b_hn: Array | None  # shape=(H,); recurrent candidate bias inside r * (...); None unless reset_after and bias


def gru(
  hidden_size: int,
  *,
  reset_after: bool = True,
  bias: bool = True,
  kernel_init: inits.Initializer = inits.lecun_normal(),
  recurrent_init: inits.Initializer = inits.orthogonal(),
  bias_init: inits.Initializer = inits.zeros,
  gate_bias: Mapping[str, Any] | None = None,
  param_dtype: Any = jnp.float32,
) -> base.Cell:
  r"""The gated recurrent unit.

  With ``reset_after=True`` (PyTorch, flax, cuDNN, Keras' default):

  .. math::

    r &= \sigma(x W_{xr} + h W_{hr} + b_r) \\
    z &= \sigma(x W_{xz} + h W_{hz} + b_z) \\
    n &= \tanh(x W_{xn} + b_n + r \odot (h W_{hn} + b_{hn})) \\
    h' &= (1 - z) \odot n + z \odot h, \qquad y = h'

  With ``reset_after=False`` (Cho et al. 2014; Haiku, Trax), the reset gate
  acts on ``h`` before the recurrent product and there is no ``b_hn``:
  :math:`n = \tanh(x W_{xn} + (r \odot h) W_{hn} + b_n)`.

  The other sign convention in the literature, :math:`h' = (1 - u) h + u n`
  (Haiku, Cho et al.), is this one with :math:`u = 1 - z`, i.e. negate the
  update gate's weights and bias: ``w_x[:, H:2H]``, ``w_h[:, H:2H]`` and
  ``b[H:2H]``.

  Args:
    hidden_size: ``H``.
    reset_after: where the reset gate applies (see above).
    bias: whether ``b`` (and ``b_hn``) exist.
    kernel_init: initialiser of each gate's ``(input_size, H)`` block of ``w_x``.
    recurrent_init: initialiser of each gate's ``(H, H)`` block of ``w_h``.
    bias_init: initialiser of each gate's bias.
    gate_bias: explicit bias values per gate, e.g. ``{"z": 1.0}``; a scalar or
      an ``(H,)`` array for any of ``"r"``, ``"z"``, ``"n"``.
    param_dtype: dtype of every parameter.

  Returns:
    A :class:`jaxrnn.Cell` with params :class:`GRUParams`, carry
    ``h: (*batch, H)`` and output ``y = h``.

  References:
    Cho et al., "Learning phrase representations using RNN encoder-decoder", 2014.
  """
  base.check_positive_int("hidden_size", hidden_size)
  param_dtype = base.check_floating_dtype("param_dtype", param_dtype)
  if not isinstance(reset_after, bool):
    raise TypeError(f"reset_after must be a bool, got {reset_after!r}")
  H = hidden_size

  def init_fn(key: Array, input_size: int) -> GRUParams:
    base.check_positive_int("input_size", input_size)
    kx, kh, kb, kn = jax.random.split(key, 4)
    b = b_hn = None
    if bias:
      b = inits.gate_biases(kb, H, ("r", "z", "n"), bias_init, gate_bias, param_dtype)
      if reset_after:
        b_hn = bias_init(kn, (H,), param_dtype)
    elif gate_bias:
      raise ValueError("gate_bias was given but bias=False")
    return GRUParams(
      w_x=inits.per_gate(kx, kernel_init, (input_size, 3 * H), 3, param_dtype),
      w_h=inits.per_gate(kh, recurrent_init, (H, 3 * H), 3, param_dtype),
      b=b,
      b_hn=b_hn,
    )

  params_spec = base.params_spec(init_fn)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> Array:
    return _zeros_carry(H, batch_shape, dtype)

  def apply_fn(
    params: GRUParams, carry: Array, x: Array, *, recurrent_mask: Array | None = None
  ) -> tuple[Array, Array]:
    base.check_step(params, carry, x, params_type=GRUParams, spec=params_spec, initial_carry=initial_carry_fn)
    h = carry
    hm = _recurrent_source(h, recurrent_mask)  # the products read it; the update below reads h
    gx = x @ params.w_x
    if params.b is not None:
      gx = gx + _bcast(params.b, gx)
    if reset_after:
      gh = hm @ params.w_h
      r = jax.nn.sigmoid(gx[..., :H] + gh[..., :H])
      z = jax.nn.sigmoid(gx[..., H : 2 * H] + gh[..., H : 2 * H])
      hn = gh[..., 2 * H :]
      if params.b_hn is not None:
        hn = hn + _bcast(params.b_hn, hn)
      n = jnp.tanh(gx[..., 2 * H :] + r * hn)
    else:
      gh = hm @ params.w_h[:, : 2 * H]
      r = jax.nn.sigmoid(gx[..., :H] + gh[..., :H])
      z = jax.nn.sigmoid(gx[..., H : 2 * H] + gh[..., H:])
      n = jnp.tanh(gx[..., 2 * H :] + (r * hm) @ params.w_h[:, 2 * H :])
    h = (1.0 - z) * n + z * h
    return h, h

  fast = _with_fast_path(_with_recurrent_mask(apply_fn), "gru", hidden_size=H, reset_after=reset_after)
  return base.Cell(init_fn, initial_carry_fn, fast)


# ----------------------------------------------------------------------------
# Minimal gated unit


class MGUParams(NamedTuple):
  """Parameters of :func:`mgu`; gate order ``f, n`` along the last axis."""

  w_x: Array  # shape=(input_size, 2H)
  w_h: Array  # shape=(H, 2H)
  b: Array | None  # shape=(2H,); input-side biases b_f, b_n
  b_hn: Array | None  # shape=(H,); recurrent candidate bias inside f * (...); None unless reset_gate and bias


def mgu(
  hidden_size: int,
  *,
  reset_gate: bool = True,
  bias: bool = True,
  kernel_init: inits.Initializer = inits.lecun_normal(),
  recurrent_init: inits.Initializer = inits.orthogonal(),
  bias_init: inits.Initializer = inits.zeros,
  forget_bias: float = 1.0,
  gate_bias: Mapping[str, Any] | None = None,
  param_dtype: Any = jnp.float32,
) -> base.Cell:
  r"""The minimal gated unit: a GRU whose single gate both forgets and resets.

  The equations of flax's ``MGUCell``:

  .. math::

    f &= \sigma(x W_{xf} + b_f + h W_{hf}) \\
    n &= \tanh(x W_{xn} + b_n + f \odot (h W_{hn} + b_{hn})) \\
    h' &= (1 - f) \odot n + f \odot h, \qquad y = h'

  With ``reset_gate=False`` the candidate is
  :math:`n = \tanh(x W_{xn} + b_n + h W_{hn})` and there is no ``b_hn``.

  Args:
    hidden_size: ``H``.
    reset_gate: whether ``f`` also gates the candidate's recurrent term.
    bias: whether the biases exist.
    kernel_init, recurrent_init, bias_init: per-gate initialisers.
    forget_bias: initial value of ``b_f`` (flax: ones, as Jozefowicz et al. 2015).
    gate_bias: explicit bias values per gate (``"f"``, ``"n"``); overrides
      ``forget_bias``.
    param_dtype: dtype of every parameter.

  References:
    Zhou, Wu, Zhang, Zhou, "Minimal gated unit for recurrent neural networks", 2016.
  """
  base.check_positive_int("hidden_size", hidden_size)
  param_dtype = base.check_floating_dtype("param_dtype", param_dtype)
  H = hidden_size
  overrides = {"f": forget_bias, **(gate_bias or {})}

  def init_fn(key: Array, input_size: int) -> MGUParams:
    base.check_positive_int("input_size", input_size)
    kx, kh, kb, kn = jax.random.split(key, 4)
    b = b_hn = None
    if bias:
      b = inits.gate_biases(kb, H, ("f", "n"), bias_init, overrides, param_dtype)
      if reset_gate:
        b_hn = bias_init(kn, (H,), param_dtype)
    elif gate_bias:
      raise base.InputError("gate_bias was given but bias=False")
    return MGUParams(
      w_x=inits.per_gate(kx, kernel_init, (input_size, 2 * H), 2, param_dtype),
      w_h=inits.per_gate(kh, recurrent_init, (H, 2 * H), 2, param_dtype),
      b=b,
      b_hn=b_hn,
    )

  params_spec = base.params_spec(init_fn)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> Array:
    return _zeros_carry(H, batch_shape, dtype)

  def apply_fn(
    params: MGUParams, carry: Array, x: Array, *, recurrent_mask: Array | None = None
  ) -> tuple[Array, Array]:
    base.check_step(params, carry, x, params_type=MGUParams, spec=params_spec, initial_carry=initial_carry_fn)
    h = carry
    gx = x @ params.w_x
    if params.b is not None:
      gx = gx + _bcast(params.b, gx)
    gh = _recurrent_source(h, recurrent_mask) @ params.w_h  # the update below reads h itself
    f = jax.nn.sigmoid(gx[..., :H] + gh[..., :H])
    hn = gh[..., H:]
    if reset_gate:
      if params.b_hn is not None:
        hn = hn + _bcast(params.b_hn, hn)
      hn = f * hn
    n = jnp.tanh(gx[..., H:] + hn)
    h = (1.0 - f) * n + f * h
    return h, h

  fast = _with_fast_path(_with_recurrent_mask(apply_fn), "mgu", hidden_size=H, reset_gate=reset_gate)
  return base.Cell(init_fn, initial_carry_fn, fast)


# ----------------------------------------------------------------------------
# LSTM


class LSTMParams(NamedTuple):
  """Parameters of :func:`lstm`; gate order ``i, f, g, o`` (``i, g, o`` without forget gate)."""

  w_x: Array  # shape=(input_size, G*H), G = 4 (3 with forget_gate=False)
  w_h: Array  # shape=(P, G*H); P = proj_size, or H without a projection
  b: Array | None  # shape=(G*H,); PyTorch's b_ih + b_hh
  w_peep: Array | None  # shape=(G-1, H): diagonal peepholes c -> i, (f,) o; None unless peepholes
  norm: LSTMNorm | None = None  # layer normalisation (Ba et al. 2016); None unless layer_norm
  w_proj: Array | None = None  # shape=(H, P): the output projection (Sak et al. 2014); None unless proj_size


class LayerNormParams(NamedTuple):
  """Gain and shift of one layer normalisation: ``scale * (v - mean(v)) / sqrt(var(v) + eps) + shift``."""

  scale: Array  # shape=(features,), starts at 1
  shift: Array  # shape=(features,), starts at 0


class LSTMNorm(NamedTuple):
  """The three layer normalisations of :func:`lstm` with ``layer_norm=True``."""

  x: LayerNormParams  # of x W_x, over all G*H gate pre-activations
  h: LayerNormParams  # of h W_h, over all G*H
  c: LayerNormParams  # of the cell state c' before the output's tanh, over H


def _normalize(v: Array, eps: float) -> tuple[Array, Array]:
  """``((v - mean) / sigma, 1 / sigma)`` over the last axis, ``sigma = sqrt(var + eps)``."""
  d = v - jnp.mean(v, axis=-1, keepdims=True)
  r = jax.lax.rsqrt(jnp.mean(d * d, axis=-1, keepdims=True) + eps)
  return d * r, r


def _affine(n: Array, p: LayerNormParams) -> Array:
  """A normalised ``n`` times the gain plus the shift."""
  return n * _bcast(p.scale, n) + _bcast(p.shift, n)


def _layer_norm(v: Array, p: LayerNormParams, eps: float) -> Array:
  return _affine(_normalize(v, eps)[0], p)


class LSTMCarry(NamedTuple):
  """Carry of :func:`lstm`."""

  h: Array  # shape=(*batch, P), the output; P = proj_size, or H without a projection
  c: Array  # shape=(*batch, H), the cell state


def lstm(
  hidden_size: int,
  *,
  forget_gate: bool = True,
  peepholes: bool = False,
  forget_bias: float = 1.0,
  bias: bool = True,
  kernel_init: inits.Initializer = inits.lecun_normal(),
  recurrent_init: inits.Initializer = inits.orthogonal(),
  bias_init: inits.Initializer = inits.zeros,
  peephole_init: inits.Initializer = inits.zeros,
  gate_bias: Mapping[str, Any] | None = None,
  layer_norm: bool = False,
  norm_eps: float = 1e-5,
  proj_size: int | None = None,
  proj_init: inits.Initializer = inits.lecun_normal(),
  param_dtype: Any = jnp.float32,
) -> base.Cell:
  r"""The long short-term memory cell.

  .. math::

    i &= \sigma(x W_{xi} + h W_{hi} + b_i + p_i \odot c) \\
    f &= \sigma(x W_{xf} + h W_{hf} + b_f + p_f \odot c) \\
    g &= \tanh(x W_{xg} + h W_{hg} + b_g) \\
    c' &= f \odot c + i \odot g \\
    o &= \sigma(x W_{xo} + h W_{ho} + b_o + p_o \odot c') \\
    h' &= o \odot \tanh(c'), \qquad y = h'

  The peephole terms ``p`` (Gers & Schmidhuber 2000) exist only with
  ``peepholes=True``. With ``forget_gate=False`` there is no ``f`` and the
  state is the constant error carousel :math:`c' = c + i \odot g` of the
  1997 LSTM (use :func:`jaxrnn.lstm1997` for that paper's full architecture).

  With ``layer_norm=True`` it is the layer-normalised LSTM of Ba, Kiros &
  Hinton (2016), their Eqs. 20-22: the two products are normalised apart,
  each over all its ``G H`` gate pre-activations,
  :math:`z = \mathrm{LN}(x W_x) + \mathrm{LN}(h W_h) + b` (gates from ``z``
  as above), and the output reads the normalised state,
  :math:`h' = o \odot \tanh(\mathrm{LN}(c'))`, while the carry keeps ``c'``
  itself (TensorFlow Addons' ``LayerNormLSTMCell`` carries
  :math:`\mathrm{LN}(c')` instead). Each LN has its own gain (init 1) and
  shift (init 0) in ``params.norm``. :func:`jaxrnn.unroll` runs them on its
  fast path too, except with peepholes (reference ``lax.scan`` path).

  With ``proj_size=P`` it is the LSTM with a recurrent projection layer of Sak,
  Senior & Beaufays (2014), PyTorch's ``nn.LSTM(proj_size=P)``: the output
  and the recurrent state are :math:`h' = (o \odot \tanh(c')) W_r` of size
  ``P`` (``params.w_proj = W_r: (H, P)``), so ``w_h`` is ``(P, G H)`` while the
  cell state keeps ``H`` units. Without layer norm and peepholes it runs on
  the fast path.

  Args:
    hidden_size: ``H``.
    forget_gate: whether the forget gate exists.
    peepholes: whether the diagonal cell-to-gate connections exist.
    forget_bias: initial forget-gate bias (Jozefowicz et al. 2015 and Keras
      use 1; PyTorch and flax 0).
    bias: whether ``b`` exists.
    kernel_init, recurrent_init, bias_init: per-gate initialisers.
    peephole_init: initialiser of ``w_peep``.
    gate_bias: explicit bias values per gate (``"i"``, ``"f"``, ``"g"``,
      ``"o"``), each a scalar or an ``(H,)`` array; overrides ``forget_bias``.
    layer_norm: whether the layer normalisations exist (``params.norm``).
    norm_eps: the variance floor of each normalisation.
    proj_size: ``P``, the size of the projected output and recurrent state
      (``0 < P < H`` in PyTorch; any positive size here); None: no projection.
    proj_init: initialiser of ``w_proj``.
    param_dtype: dtype of every parameter.

  Returns:
    A :class:`jaxrnn.Cell` with params :class:`LSTMParams`, carry
    :class:`LSTMCarry` (``h: (*batch, P)``, ``c: (*batch, H)``) and output
    ``y = h: (*batch, P)``, ``P = H`` without a projection.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> cell = jaxrnn.lstm(8, peepholes=True)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> carry, ys = jaxrnn.unroll(cell, params, jnp.ones((5, 2, 3)))
    >>> ys.shape, carry.c.shape
    ((5, 2, 8), (2, 8))
    >>> proj = jaxrnn.lstm(8, proj_size=3)                 # PyTorch's LSTM(3, 8, proj_size=3)
    >>> carry, ys = jaxrnn.unroll(proj, proj.init(jax.random.key(0), 3), jnp.ones((5, 2, 3)))
    >>> ys.shape, carry.h.shape, carry.c.shape
    ((5, 2, 3), (2, 3), (2, 8))

  References:
    Hochreiter & Schmidhuber, "Long short-term memory", 1997; Gers,
    Schmidhuber & Cummins, "Learning to forget", 2000; Gers & Schmidhuber,
    "Recurrent nets that time and count", 2000; Ba, Kiros & Hinton, "Layer
    normalization", 2016.
  """
  base.check_positive_int("hidden_size", hidden_size)
  if proj_size is not None:
    base.check_positive_int("proj_size", proj_size)
  if not isinstance(norm_eps, int | float) or isinstance(norm_eps, bool) or not norm_eps > 0:
    raise base.InputError(f"norm_eps must be a number > 0, got {norm_eps!r}")
  param_dtype = base.check_floating_dtype("param_dtype", param_dtype)
  H = hidden_size
  P = H if proj_size is None else proj_size
  gates = ("i", "f", "g", "o") if forget_gate else ("i", "g", "o")
  G = len(gates)
  overrides = dict(gate_bias or {})
  if forget_gate:
    overrides = {"f": forget_bias, **overrides}

  def init_fn(key: Array, input_size: int) -> LSTMParams:
    base.check_positive_int("input_size", input_size)
    kx, kh, kb, kp = jax.random.split(key, 4)
    if not bias and gate_bias:
      raise ValueError("gate_bias was given but bias=False")
    kr = jax.random.fold_in(key, 4)  # the projection's own key; the others are drawn as without one
    return LSTMParams(
      w_x=inits.per_gate(kx, kernel_init, (input_size, G * H), G, param_dtype),
      w_h=inits.per_gate(kh, recurrent_init, (P, G * H), G, param_dtype),
      b=inits.gate_biases(kb, H, gates, bias_init, overrides, param_dtype) if bias else None,
      w_peep=peephole_init(kp, (G - 1, H), param_dtype) if peepholes else None,
      norm=_lstm_norm(G * H, H, param_dtype) if layer_norm else None,
      w_proj=None if proj_size is None else proj_init(kr, (H, P), param_dtype),
    )

  params_spec = base.params_spec(init_fn)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> LSTMCarry:
    return LSTMCarry(_zeros_carry(P, batch_shape, dtype), _zeros_carry(H, batch_shape, dtype))

  def apply_fn(
    params: LSTMParams, carry: LSTMCarry, x: Array, *, recurrent_mask: Array | None = None
  ) -> tuple[LSTMCarry, Array]:
    base.check_step(params, carry, x, params_type=LSTMParams, spec=params_spec, initial_carry=initial_carry_fn)
    h, c = carry
    hm = _recurrent_source(h, recurrent_mask)
    n = params.norm
    if n is None:
      z = x @ params.w_x + hm @ params.w_h
    else:
      z = _layer_norm(x @ params.w_x, n.x, norm_eps) + _layer_norm(hm @ params.w_h, n.h, norm_eps)
    if params.b is not None:
      z = z + _bcast(params.b, z)
    parts = dict(zip(gates, jnp.split(z, G, axis=-1)))
    p = params.w_peep
    if p is not None:
      parts["i"] = parts["i"] + _bcast(p[0], c) * c
      if forget_gate:
        parts["f"] = parts["f"] + _bcast(p[1], c) * c
    i = jax.nn.sigmoid(parts["i"])
    g = jnp.tanh(parts["g"])
    c = jax.nn.sigmoid(parts["f"]) * c + i * g if forget_gate else c + i * g
    zo = parts["o"]
    if p is not None:
      zo = zo + _bcast(p[-1], c) * c
    h = jax.nn.sigmoid(zo) * jnp.tanh(c if n is None else _layer_norm(c, n.c, norm_eps))
    if params.w_proj is not None:
      h = h @ params.w_proj
    return LSTMCarry(h, c), h

  apply_fn = _with_recurrent_mask(apply_fn)
  if layer_norm and (peepholes or proj_size is not None):  # the fast path's normalised kernel has neither
    return base.Cell(init_fn, initial_carry_fn, apply_fn)
  if layer_norm:
    fast = _with_fast_path(apply_fn, "lstm_ln", hidden_size=H, forget_gate=forget_gate, eps=float(norm_eps))
  else:
    fast = _with_fast_path(apply_fn, "lstm", hidden_size=H, forget_gate=forget_gate, peepholes=peepholes)
  return base.Cell(init_fn, initial_carry_fn, fast)


def _lstm_norm(gates: int, H: int, dtype: Any) -> LSTMNorm:
  def ln(n: int) -> LayerNormParams:
    return LayerNormParams(jnp.ones((n,), dtype), jnp.zeros((n,), dtype))

  return LSTMNorm(ln(gates), ln(gates), ln(H))
