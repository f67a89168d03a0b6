"""Conversion between jaxrnn params and PyTorch, flax (linen, nnx), equinox, Haiku or Keras recurrent cells, both ways.

jaxrnn keeps PyTorch's gate order (LSTM ``i, f, g, o``; GRU ``r, z, n``) but
stores kernels transposed, ``w_x: (in, G*H)`` and ``w_h: (H, G*H)``, so a step
is ``x @ w_x + h @ w_h + b``. The converters below only move numbers:

* torch ``weight_ih_l{k}: (G*H, in)`` and ``weight_hh_l{k}: (G*H, H)`` become
  ``w_x`` and ``w_h`` transposed. PyTorch's two biases fold into one where
  only their sum matters (``b = bias_ih + bias_hh`` for RNN and LSTM); the
  GRU's recurrent candidate bias sits inside the reset product and stays
  apart (``b = bias_ih + [bias_hh_r, bias_hh_z, 0]``, ``b_hn = bias_hh_n``).
  Back to torch (:func:`to_torch`), ``b`` becomes ``bias_ih`` and ``bias_hh``
  is zero but for the GRU's ``b_hn``.
* flax.linen keeps one ``Dense`` per gate; their kernels are concatenated
  along the output axis in jaxrnn's gate order. flax's LSTM carry is
  ``(c, h)``; jaxrnn's :class:`jaxrnn.LSTMCarry` is ``(h, c)``.
* flax.nnx keeps one ``Linear`` per gate (``LSTMCell``) or one for all gates
  (``SimpleCell``, ``GRUCell``, ``OptimizedLSTMCell``) in ``nnx.Param``
  variables; its GRU has no recurrent bias (jaxrnn's ``b_hn`` is zero) and
  its LSTM carry is ``(c, h)`` as in linen.
* equinox keeps PyTorch's layout (``weight_ih``, ``weight_hh``), with one
  bias on the input side and the GRU's ``bias_n`` apart, as jaxrnn's ``b_hn``.
* Haiku's params are one flat mapping keyed by module path; its LSTM has one
  linear on ``[x, h]`` with gates ``i, g, f, o`` and adds 1 to the forget gate
  inside its step, and its GRU (gates ``z, r, a``) resets before the recurrent
  product with the update gate's sign flipped.
* Keras 3 keeps ``kernel``, ``recurrent_kernel`` and ``bias`` in jaxrnn's
  layout; its GRU's gates are ``z, r, h``, with a second, recurrent-side bias
  row when it resets after the product.

torch, equinox, Haiku and Keras are optional dependencies (the ``torch``,
``equinox``, ``haiku`` and ``keras`` extras), imported only inside the
functions that need them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._src import base
from jaxrnn._src import cells as cells_lib
from jaxrnn._src import layers as layers_lib

Array = jax.Array

_TORCH_MODULES = "torch.nn.RNN, torch.nn.GRU, torch.nn.LSTM, torch.nn.RNNCell, torch.nn.GRUCell or torch.nn.LSTMCell"
_FLAX_CELLS = "flax.linen.SimpleCell, GRUCell, MGUCell, LSTMCell or OptimizedLSTMCell"
# Gates per kind, in the order shared by torch and jaxrnn.
_NUM_GATES = {"elman": 1, "gru": 3, "lstm": 4}


def _type_name(obj: Any) -> str:
  t = type(obj)
  return f"{t.__module__}.{t.__qualname__}"


def _import_torch() -> Any:
  try:
    import torch
  except ImportError as e:  # pragma: no cover - torch is installed in CI
    raise ImportError("jaxrnn.interop.from_torch needs PyTorch: pip install 'jaxrnn[torch]'") from e
  return torch


def _is_torch_tensor(x: Any) -> bool:
  return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _tensor_to_numpy(t: Any) -> np.ndarray:
  """A numpy copy of a torch tensor (detached, on the CPU); bfloat16 goes through float32."""
  t = t.detach().cpu()
  if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16
    return np.asarray(t.float().numpy()).astype(jnp.bfloat16)
  return np.array(t.numpy(), copy=True)


def _as_jax(x: Any) -> Array:
  """A jax array from a torch tensor, a numpy array or a jax array (traceable for the latter)."""
  if _is_torch_tensor(x):
    return jnp.array(_tensor_to_numpy(x))
  return jnp.asarray(x)


# ----------------------------------------------------------------------------
# PyTorch


def _torch_kind(module: Any, torch: Any) -> tuple[str, str]:
  """``(kind, nonlinearity)`` of a torch recurrent module, kind in elman/gru/lstm."""
  if isinstance(module, torch.nn.RNNBase):
    modes = {"RNN_TANH": ("elman", "tanh"), "RNN_RELU": ("elman", "relu"), "GRU": ("gru", ""), "LSTM": ("lstm", "")}
    if module.mode not in modes:
      raise base.InputError(f"module has mode {module.mode!r}; supported modes are {tuple(modes)}")
    return modes[module.mode]
  if isinstance(module, torch.nn.RNNCell):
    base.check_choice("module.nonlinearity", module.nonlinearity, ("tanh", "relu"))
    return "elman", module.nonlinearity
  if isinstance(module, torch.nn.GRUCell):
    return "gru", ""
  if isinstance(module, torch.nn.LSTMCell):
    return "lstm", ""
  raise base.InputTypeError(f"module must be a {_TORCH_MODULES}, got {_type_name(module)}")


def _make_cell(
  kind: str, hidden_size: int, nonlinearity: str, bias: bool, dtype: Any, proj_size: int | None = None
) -> base.Cell:
  if kind == "elman":
    return cells_lib.elman(hidden_size, nonlinearity=nonlinearity, bias=bias, param_dtype=dtype)
  if kind == "gru":
    return cells_lib.gru(hidden_size, reset_after=True, bias=bias, param_dtype=dtype)
  return cells_lib.lstm(hidden_size, bias=bias, param_dtype=dtype, proj_size=proj_size)


def _torch_cell_params(
  kind: str,
  hidden_size: int,
  input_size: int,
  w_ih: np.ndarray,
  w_hh: np.ndarray,
  biases: tuple[np.ndarray, np.ndarray] | None,
  where: str,
  w_hr: np.ndarray | None = None,
) -> Any:
  """jaxrnn params of one torch layer and direction (numpy in, jax arrays out); ``biases``: ``(b_ih, b_hh)``;
  ``w_hr``: an LSTM's projection ``weight_hr`` (``proj_size > 0``) or None."""
  H = hidden_size
  G = _NUM_GATES[kind]
  P = H if w_hr is None else int(w_hr.shape[0])
  expected = {
    "weight_ih": (G * H, input_size),
    "weight_hh": (G * H, P),
    "bias_ih": (G * H,),
    "bias_hh": (G * H,),
    "weight_hr": (P, H),
  }
  named = [("weight_ih", w_ih), ("weight_hh", w_hh)]
  if w_hr is not None:
    named.append(("weight_hr", w_hr))
  if biases is not None:
    named += [("bias_ih", biases[0]), ("bias_hh", biases[1])]
  for name, value in named:
    if tuple(value.shape) != expected[name]:
      raise base.InputError(f"{name}{where} has shape {tuple(value.shape)}, expected {expected[name]}")
  w_x = jnp.array(w_ih.T)
  w_h = jnp.array(w_hh.T)
  if kind == "gru":
    b = b_hn = None
    if biases is not None:
      b_ih, b_hh = biases
      # bias_hh's candidate part is multiplied by the reset gate, so only its r and z parts fold into b.
      b = jnp.array(b_ih + np.concatenate([b_hh[: 2 * H], np.zeros_like(b_hh[2 * H :])]))
      b_hn = jnp.array(b_hh[2 * H :])
    return cells_lib.GRUParams(w_x=w_x, w_h=w_h, b=b, b_hn=b_hn)
  b = None if biases is None else jnp.array(biases[0] + biases[1])
  if kind == "elman":
    return cells_lib.ElmanParams(w_x=w_x, w_h=w_h, b=b)
  w_proj = None if w_hr is None else jnp.array(w_hr.T)
  return cells_lib.LSTMParams(w_x=w_x, w_h=w_h, b=b, w_peep=None, w_proj=w_proj)


def from_torch(module: Any) -> tuple[base.Cell | layers_lib.Layer, base.Params]:
  r"""A jaxrnn cell or layer, and its params, that compute what a PyTorch recurrent module computes.

  Supported: ``torch.nn.RNN`` (``tanh`` and ``relu``), ``torch.nn.GRU`` and
  ``torch.nn.LSTM`` with any ``num_layers``, ``bidirectional``, ``bias``,
  ``batch_first`` and ``dropout``; and the single-step ``torch.nn.RNNCell``,
  ``GRUCell`` and ``LSTMCell``. An LSTM with ``proj_size > 0`` gives
  ``lstm(hidden_size, proj_size=proj_size)`` cells (``w_proj = weight_hr.T``).

  * A one-layer, one-direction module (and every ``*Cell`` module) gives a
    :class:`jaxrnn.Cell`: ``jaxrnn.unroll(cell, params, xs)`` with
    ``xs: (T, *batch, input_size)`` returns ``(final_carry, ys)`` equal to the
    module's ``(h_n, output)`` (pass ``time_major=False`` for a
    ``batch_first`` module's ``(*batch, T, input_size)`` input).
  * Any other module gives a :class:`jaxrnn.Layer`,
    ``jaxrnn.stacked(l_0, ..., l_{L-1}, dropout=module.dropout,
    time_major=not module.batch_first)`` with each ``l_k`` a cell or
    ``jaxrnn.bidirectional(cell, cell)``. ``layer.apply(params, xs)`` takes
    and returns the module's layout; its params and carry are tuples over
    layers (of ``(forward, backward)`` pairs when bidirectional). Dropout acts
    only when ``apply`` gets a ``key``, as torch's only in training mode.

  :func:`to_torch_state` turns the final carry into torch's ``h_n`` (or
  ``(h_n, c_n)``) layout and :func:`from_torch_state` turns a torch
  ``h_0`` into an initial carry. Variable lengths (torch's
  ``pack_padded_sequence``) are ``lengths=`` of ``unroll`` or ``apply``.

  The params are copies (the module may change afterwards); their dtype is the
  module's. RNN and LSTM biases are folded, ``b = bias_ih + bias_hh``; the
  GRU keeps ``b_hn = bias_hh_n`` apart and folds the rest.

  Args:
    module: a torch recurrent module (see above).

  Returns:
    ``(layer, params)``: a :class:`jaxrnn.Cell` or :class:`jaxrnn.Layer`
    and its params (:class:`jaxrnn.ElmanParams`, :class:`jaxrnn.GRUParams`
    or :class:`jaxrnn.LSTMParams`, or tuples of them).

  Raises:
    TypeError: ``module`` is not one of the supported torch modules.
    ValueError: an unsupported option (``dropout == 1``) or a parameter of an unexpected shape.

  Example:
    >>> import torch, jax.numpy as jnp, jaxrnn
    >>> module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    >>> layer, params = jaxrnn.interop.from_torch(module)
    >>> x = torch.randn(2, 5, 3)                  # (B, T, input_size)
    >>> out, h_n = module(x)
    >>> carry, ys = layer.apply(params, jnp.asarray(x.numpy()))
    >>> ys.shape, jaxrnn.interop.to_torch_state(carry).shape
    ((2, 5, 8), (4, 2, 4))
    >>> bool(jnp.allclose(ys, out.detach().numpy(), atol=1e-5))
    True
  """
  torch = _import_torch()
  kind, nonlinearity = _torch_kind(module, torch)
  H = int(module.hidden_size)
  bias = bool(module.bias)

  def get(name: str) -> np.ndarray:
    t = getattr(module, name, None)
    if t is None:
      raise base.InputError(f"module has no parameter {name!r}")
    return _tensor_to_numpy(t)

  def biases(suffix: str) -> tuple[np.ndarray, np.ndarray] | None:
    return (get("bias_ih" + suffix), get("bias_hh" + suffix)) if bias else None

  if isinstance(module, torch.nn.RNNCellBase):
    params = _torch_cell_params(kind, H, int(module.input_size), get("weight_ih"), get("weight_hh"), biases(""), "")
    return _make_cell(kind, H, nonlinearity, bias, params.w_x.dtype), params

  proj_size = int(getattr(module, "proj_size", 0)) or None
  num_layers = int(module.num_layers)
  directions = ("", "_reverse") if module.bidirectional else ("",)
  dropout = float(module.dropout)
  if not 0.0 <= dropout < 1.0:
    raise base.InputError(f"module has dropout={dropout}; jaxrnn.stacked supports dropout in [0, 1)")

  params = []
  for k in range(num_layers):
    in_size = int(module.input_size) if k == 0 else (proj_size or H) * len(directions)
    per_dir = []
    for suffix in directions:
      tail = f"_l{k}{suffix}"
      per_dir.append(
        _torch_cell_params(
          kind,
          H,
          in_size,
          get("weight_ih" + tail),
          get("weight_hh" + tail),
          biases(tail),
          tail,
          None if proj_size is None else get("weight_hr" + tail),
        )
      )
    params.append(tuple(per_dir) if module.bidirectional else per_dir[0])

  # The dtype jax gives the weights (float64 becomes float32 unless jax_enable_x64 is on).
  cell = _make_cell(kind, H, nonlinearity, bias, jax.tree.leaves(params)[0].dtype, proj_size)
  if num_layers == 1 and not module.bidirectional:
    return cell, params[0]
  children = [layers_lib.bidirectional(cell, cell) if module.bidirectional else cell for _ in range(num_layers)]
  layer = layers_lib.stacked(*children, dropout=dropout, time_major=not module.batch_first)
  return layer, tuple(params)


_TORCH_CLASSES = {"elman": ("RNN", "RNNCell"), "gru": ("GRU", "GRUCell"), "lstm": ("LSTM", "LSTMCell")}


def _cell_kind_for_torch(params: Any, where: str) -> str:
  """``elman``, ``gru`` or ``lstm`` for one cell's params, or an error naming what torch cannot express."""
  if isinstance(params, cells_lib.ElmanParams):
    return "elman"
  if isinstance(params, cells_lib.GRUParams):
    if params.b is not None and params.b_hn is None:
      raise base.InputError(
        f"params{where} have b but no b_hn: a gru(reset_after=False), which torch's GRU cannot express "
        "(it applies the reset gate after the recurrent product)"
      )
    return "gru"
  if isinstance(params, cells_lib.LSTMParams):
    GH = int(jnp.shape(params.w_h)[1])
    H = _lstm_cells(params)
    if GH != 4 * H:
      raise base.InputError(
        f"params{where}.w_h has shape {tuple(jnp.shape(params.w_h))}: {GH // H} gates of {H} cells, an "
        "lstm(forget_gate=False); torch's LSTM needs 4"
      )
    if params.w_peep is not None:
      raise base.InputError(f"params{where}.w_peep is set: an lstm(peepholes=True); torch's LSTM has no peepholes")
    if params.norm is not None:
      raise base.InputError(f"params{where}.norm is set: an lstm(layer_norm=True); torch's LSTM has no layer norm")
    return "lstm"
  raise base.InputTypeError(
    f"params{where} must be jaxrnn.ElmanParams, GRUParams or LSTMParams (the cells torch.nn.RNN, GRU and LSTM "
    f"compute), got {type(params).__name__}"
  )


def _lstm_cells(params: Any) -> int:
  """The number of cells of an LSTM's params: ``w_proj``'s rows with a projection, else ``w_h``'s."""
  return int(jnp.shape(params.w_h if params.w_proj is None else params.w_proj)[0])


def _torch_tensors(params: Any, kind: str, torch: Any, dtype: Any) -> dict[str, Any]:
  """``weight_ih, weight_hh, bias_ih, bias_hh`` of one torch layer and direction from one cell's params."""

  def tensor(a: Any) -> Any:
    a = np.asarray(jnp.asarray(a, jnp.float32) if jnp.asarray(a).dtype == jnp.bfloat16 else a)
    return torch.tensor(np.array(a, copy=True)).to(dtype)

  w_x, w_h = jnp.asarray(params.w_x), jnp.asarray(params.w_h)
  out = {"weight_ih": tensor(w_x.T), "weight_hh": tensor(w_h.T)}
  GH = int(w_h.shape[1])
  b = jnp.zeros((GH,), w_x.dtype) if params.b is None else jnp.asarray(params.b)
  b_hh = jnp.zeros((GH,), w_x.dtype)
  if kind == "gru" and params.b_hn is not None:
    # Only the candidate's recurrent bias sits inside the reset product; the rest of b goes to bias_ih.
    b_hh = b_hh.at[2 * (GH // 3) :].set(jnp.asarray(params.b_hn))
  out["bias_ih"], out["bias_hh"] = tensor(b), tensor(b_hh)
  if kind == "lstm" and params.w_proj is not None:
    out["weight_hr"] = tensor(jnp.asarray(params.w_proj).T)
  return out


def _is_sequence(x: Any) -> bool:
  """A plain tuple or list (of layers or directions), not a cell's params (a NamedTuple)."""
  return isinstance(x, (tuple, list)) and not hasattr(x, "_fields")


def to_torch(
  params: base.Params,
  *,
  nonlinearity: str = "tanh",
  batch_first: bool = False,
  dropout: float = 0.0,
  cell_module: bool = False,
) -> Any:
  r"""A PyTorch module that computes what jaxrnn ``params`` compute (inverse of :func:`from_torch`).

  For running or fine-tuning in PyTorch a net trained with jaxrnn. The
  module's class follows the params' type: :class:`jaxrnn.ElmanParams` ->
  ``torch.nn.RNN``, :class:`jaxrnn.GRUParams` (of ``gru(reset_after=True)``)
  -> ``torch.nn.GRU``, :class:`jaxrnn.LSTMParams` (with forget gate, without
  peepholes or layer norm) -> ``torch.nn.LSTM`` (with ``proj_size`` for
  ``lstm(H, proj_size=P)``'s params). The params may be

  * one cell's: a one-layer module (with ``cell_module=True``, the
    single-step ``RNNCell``, ``GRUCell`` or ``LSTMCell`` instead);
  * a :func:`jaxrnn.stacked` layer's, a tuple over layers of cell params or
    of :func:`jaxrnn.bidirectional` ``(forward, backward)`` pairs (the
    directions concatenated, ``merge="concat"``): a module with
    ``num_layers`` layers, ``bidirectional`` if the layers are pairs. These
    are the params :func:`from_torch` returns.

  jaxrnn's single bias ``b`` becomes ``bias_ih`` and ``bias_hh`` is zero,
  except the GRU's ``b_hn``, torch's ``bias_hh`` candidate part. Params
  without biases (``bias=False``) give ``bias=False``; in a stack where only
  some layers have them the others get zeros. The module's dtype is the
  params'; its weights are copies. Carries convert with
  :func:`to_torch_state` and :func:`from_torch_state`.

  Args:
    params: see above.
    nonlinearity: the Elman cell's ``"tanh"`` or ``"relu"`` (params do not
      record it).
    batch_first: the module's ``batch_first``: inputs ``(B, T, I)``, as
      ``time_major=False``.
    dropout: the module's ``dropout`` between layers (active in torch's
      training mode only).
    cell_module: give a ``torch.nn.*Cell`` for one cell's params.

  Returns:
    A ``torch.nn.RNN``, ``GRU`` or ``LSTM`` (or ``*Cell``) module.

  Raises:
    TypeError: params of another cell (MGU, lstm1997, GRU-D, ...) or of no cell.
    ValueError: what torch cannot express: an LSTM without forget gate, with
      peepholes or layer norm, a GRU with ``reset_after=False``; layers of
      different kinds, sizes or projections, a stack mixing one- and
      two-direction layers, directions merged by ``"sum"``; a projection with
      ``cell_module=True``.

  Example:
    >>> import jax, jax.numpy as jnp, torch, jaxrnn
    >>> layer = jaxrnn.stacked(jaxrnn.lstm(4), jaxrnn.lstm(4))
    >>> params = layer.init(jax.random.key(0), 3)
    >>> module = jaxrnn.interop.to_torch(params)
    >>> module
    LSTM(3, 4, num_layers=2)
    >>> xs = jax.random.normal(jax.random.key(1), (5, 2, 3))           # (T, B, I)
    >>> _, ys = layer.apply(params, xs)
    >>> out, (h_n, c_n) = module(torch.tensor(jax.device_get(xs)))
    >>> bool(jnp.allclose(ys, out.detach().numpy(), atol=1e-5))
    True
  """
  torch = _import_torch()
  base.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
  if not 0.0 <= float(dropout) < 1.0:
    raise base.InputError(f"dropout must be in [0, 1), got {dropout}")

  single = not _is_sequence(params)
  layers = [params] if single else list(params)
  if not layers:
    raise base.InputError("params is an empty sequence; expected one cell's params or a tuple over layers")
  if cell_module and not single:
    raise base.InputError(f"cell_module=True needs one cell's params, got a tuple over {len(layers)} layers")
  directions = []
  for k, layer in enumerate(layers):
    if _is_sequence(layer):
      if len(layer) != 2:
        raise base.InputError(
          f"params[{k}] is a sequence of {len(layer)}; a layer is one cell's params or a (forward, backward) pair"
        )
      directions.append(tuple(layer))
    else:
      directions.append((layer,))
  D = len(directions[0])
  if any(len(d) != D for d in directions):
    raise base.InputError(
      "params mix one-direction and bidirectional layers (numbers of directions per layer: "
      f"{[len(d) for d in directions]}); a torch module's layers are all one or all bidirectional"
    )

  def where(k: int, d: int) -> str:
    if single:
      return ""
    return f"[{k}]" + (f"[{d}]" if D == 2 else "")

  kinds = {
    where(k, d): _cell_kind_for_torch(p, where(k, d)) for k, ps in enumerate(directions) for d, p in enumerate(ps)
  }
  if len(set(kinds.values())) > 1:
    raise base.InputError(f"params mix cell kinds ({kinds}); a torch module has one kind")
  kind = next(iter(kinds.values()))
  first = directions[0][0]

  def sizes(p: Any) -> tuple[int, int | None]:
    """(cells, proj_size or None) of one cell's params."""
    if kind == "lstm" and p.w_proj is not None:
      return _lstm_cells(p), int(jnp.shape(p.w_proj)[1])
    return int(jnp.shape(p.w_h)[0]), None

  H, proj_size = sizes(first)
  out_size = proj_size or H
  input_size = int(jnp.shape(first.w_x)[0])
  jax_dtype = jnp.asarray(first.w_x).dtype
  if cell_module and proj_size is not None:
    raise base.InputError("params.w_proj is set: an lstm(proj_size=...); torch's LSTMCell has no projection")
  for k, ps in enumerate(directions):
    expected_in = input_size if k == 0 else D * out_size
    for d, p in enumerate(ps):
      (got_h, got_proj), got_in = sizes(p), int(jnp.shape(p.w_x)[0])
      if got_h != H:
        raise base.InputError(f"params{where(k, d)} have hidden size {got_h}, the first layer's {H}; torch needs one")
      if got_proj != proj_size:
        raise base.InputError(
          f"params{where(k, d)} have proj_size {got_proj}, the first layer's {proj_size}; torch needs one"
        )
      if got_in != expected_in:
        raise base.InputError(
          f"params{where(k, d)}.w_x has input size {got_in}, expected {expected_in}"
          + ("" if D == 1 else f" (layer {k - 1}'s two directions concatenated, merge='concat')")
        )
  bias = any(p.b is not None or getattr(p, "b_hn", None) is not None for ps in directions for p in ps)
  dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}.get(
    jnp.dtype(jax_dtype).name, torch.float32
  )

  cls_name = _TORCH_CLASSES[kind][1 if cell_module else 0]
  kwargs: dict[str, Any] = {"bias": bias}
  if kind == "elman":
    kwargs["nonlinearity"] = nonlinearity
  if not cell_module:
    kwargs.update(num_layers=len(directions), bidirectional=D == 2, batch_first=batch_first, dropout=float(dropout))
  if proj_size is not None:
    kwargs["proj_size"] = proj_size
  module = getattr(torch.nn, cls_name)(input_size, H, dtype=dtype, **kwargs)
  with torch.no_grad():
    for k, ps in enumerate(directions):
      for d, p in enumerate(ps):
        tail = "" if cell_module else f"_l{k}" + ("_reverse" if d == 1 else "")
        for name, value in _torch_tensors(p, kind, torch, dtype).items():
          if name.startswith("bias") and not bias:
            continue
          getattr(module, name + tail).copy_(value)
  return module


def _is_leaf_carry(c: Any) -> bool:
  return isinstance(c, cells_lib.LSTMCarry) or hasattr(c, "shape")


def to_torch_state(carry: base.Carry) -> Array | tuple[Array, Array]:
  """The final carry of a :func:`from_torch` cell or layer in torch's ``h_n`` (``(h_n, c_n)``) layout.

  The carry's per-direction states are stacked in torch's order
  ``[layer 0, layer 0 reverse, layer 1, ...]``. Accepted carries: one
  cell's (``h`` or :class:`jaxrnn.LSTMCarry`), a
  :func:`jaxrnn.bidirectional` pair ``(forward, backward)``, and a
  :func:`jaxrnn.stacked` tuple of either.

  Args:
    carry: leaves ``h: (*batch, H)``, or :class:`jaxrnn.LSTMCarry` leaves.

  Returns:
    ``h_n: (num_layers * num_directions, *batch, H)`` for RNN and GRU
    carries, ``(h_n, c_n)`` for LSTM carries.

  Example:
    >>> import jax.numpy as jnp, jaxrnn
    >>> carry = ((jnp.zeros((3, 6)), jnp.ones((3, 6))), (jnp.zeros((3, 6)), jnp.ones((3, 6))))
    >>> jaxrnn.interop.to_torch_state(carry).shape   # 2 bidirectional layers
    (4, 3, 6)
  """
  if _is_leaf_carry(carry):
    states = [carry]
  elif isinstance(carry, (tuple, list)) and carry:
    states = []
    for n, layer_carry in enumerate(carry):
      if _is_leaf_carry(layer_carry):
        states.append(layer_carry)
      elif isinstance(layer_carry, (tuple, list)) and len(layer_carry) == 2 and all(map(_is_leaf_carry, layer_carry)):
        states.extend(layer_carry)
      else:
        raise base.InputError(
          f"carry[{n}] must be an array, a jaxrnn.LSTMCarry or a (forward, backward) pair of them, "
          f"got {jax.tree.structure(layer_carry)}"
        )
  else:
    raise base.InputError(
      "carry must be an array, a jaxrnn.LSTMCarry, or a tuple over layers of them or of (forward, backward) pairs, "
      f"got {type(carry).__name__}"
    )
  lstm = [isinstance(s, cells_lib.LSTMCarry) for s in states]
  if any(lstm) and not all(lstm):
    raise base.InputError("carry mixes jaxrnn.LSTMCarry and plain-array states; torch modules have one kind")
  if all(lstm):
    return jnp.stack([s.h for s in states]), jnp.stack([s.c for s in states])
  return jnp.stack(states)


def from_torch_state(state: Any, *, num_layers: int = 1, bidirectional: bool = False) -> base.Carry:
  """An initial carry for a :func:`from_torch` cell or layer from torch's ``h_0`` (``(h_0, c_0)``).

  The inverse of :func:`to_torch_state`.

  Args:
    state: ``h_0: (num_layers * num_directions, *batch, H)``, or the pair
      ``(h_0, c_0)`` of an LSTM (``h_0``'s last axis is ``proj_size`` with
      a projection); torch tensors, numpy or jax arrays.
    num_layers: the module's ``num_layers``.
    bidirectional: the module's ``bidirectional``.

  Returns:
    For one layer and one direction, a cell's carry (``h: (*batch, H)`` or
    :class:`jaxrnn.LSTMCarry`); otherwise a tuple over layers of those (of
    ``(forward, backward)`` pairs when bidirectional), as the layer's
    ``apply`` takes it.
  """
  base.check_positive_int("num_layers", num_layers)
  lstm = isinstance(state, (tuple, list))
  if lstm:
    if len(state) != 2:
      raise base.InputError(f"state must be h_0 or the pair (h_0, c_0), got a sequence of {len(state)}")
    h, c = (_as_jax(s) for s in state)
    if h.shape[:-1] != c.shape[:-1]:  # the last axes differ with a projection (proj_size)
      raise base.InputError(
        f"h_0 and c_0 must have the same shape but for the last axis, got {tuple(h.shape)} and {tuple(c.shape)}"
      )
  else:
    h = c = _as_jax(state)
  D = 2 if bidirectional else 1
  if h.ndim < 2 or h.shape[0] != num_layers * D:
    raise base.InputError(
      f"state has shape {tuple(h.shape)}, expected (num_layers * num_directions = {num_layers * D}, *batch, H)"
    )

  def at(i: int) -> Any:
    return cells_lib.LSTMCarry(h[i], c[i]) if lstm else h[i]

  if num_layers == 1 and not bidirectional:
    return at(0)
  return tuple((at(2 * k), at(2 * k + 1)) if bidirectional else at(k) for k in range(num_layers))


def _check_reset_after_gru(params: cells_lib.GRUParams, peer: str) -> None:
  """Raises for the params of a ``gru(reset_after=False)`` (``b`` without ``b_hn``), which ``peer``'s GRU cannot
  express."""
  if params.b is not None and params.b_hn is None:
    raise base.InputError(f"params have b but no b_hn: a gru(reset_after=False), which {peer}'s GRUCell cannot express")


def _check_plain_lstm(params: cells_lib.LSTMParams, peer: str) -> None:
  """Raises unless LSTM params are those of a plain ``lstm(H)``, the only LSTM ``peer``'s ``LSTMCell`` computes."""
  H = int(params.w_h.shape[0])
  G = int(params.w_h.shape[1]) // H
  if params.norm is not None:
    raise base.InputError(f"LSTM params have layer norms (norm): an lstm(layer_norm=True); {peer}'s LSTMCell has none")
  if params.w_proj is not None:
    raise base.InputError(f"LSTM params have a projection (w_proj): an lstm(proj_size=...); {peer}'s LSTMCell has none")
  if G != 4:
    raise base.InputError(
      f"LSTM params have {G} gates (w_h shape {tuple(params.w_h.shape)}); {peer}'s LSTMCell needs 4"
    )
  if params.w_peep is not None:
    raise base.InputError(f"LSTM params have peepholes (w_peep); {peer}'s LSTMCell has none")


# ----------------------------------------------------------------------------
# flax.linen


def _flax_params(variables: Any) -> Mapping[str, Any]:
  if not isinstance(variables, Mapping):
    raise base.InputTypeError(
      f"variables must be a mapping such as {{'params': {{...}}}}, got {type(variables).__name__}"
    )
  params = variables["params"] if "params" in variables else variables
  if not isinstance(params, Mapping):
    raise base.InputTypeError(f"variables['params'] must be a mapping, got {type(params).__name__}")
  return params


def _check_fn(module: Any, attr: str, allowed: Sequence[Any], names: str) -> None:
  fn = getattr(module, attr)
  if not any(fn is a for a in allowed):
    raise base.InputError(
      f"{type(module).__name__}.{attr} is {getattr(fn, '__name__', fn)!r}; jaxrnn's cell supports only {names}"
    )


def _check_flax_options(module: Any, kind: str) -> None:
  """Raises for the options of a flax cell (linen or nnx, which share them) that jaxrnn's cells do not have."""
  if kind == "elman":
    _check_fn(module, "activation_fn", (jnp.tanh, jax.nn.relu), "tanh or relu")
    if module.residual:
      raise base.InputError("SimpleCell.residual is True; jaxrnn's elman has no residual connection")
  else:
    _check_fn(module, "gate_fn", (jax.nn.sigmoid,), "sigmoid")
    _check_fn(module, "activation_fn", (jnp.tanh,), "tanh")
  if module.dtype is not None and jnp.dtype(module.dtype) != jnp.dtype(module.param_dtype):
    raise base.InputError(
      f"{type(module).__name__}.dtype is {jnp.dtype(module.dtype)} but param_dtype is "
      f"{jnp.dtype(module.param_dtype)}; jaxrnn computes in the params' dtype, so only dtype=None "
      "(or equal to param_dtype) is supported"
    )


def _flax_kind(module: Any) -> str:
  import flax.linen as nn

  kinds = {
    nn.OptimizedLSTMCell: "lstm",
    nn.LSTMCell: "lstm",
    nn.GRUCell: "gru",
    nn.MGUCell: "mgu",
    nn.SimpleCell: "elman",
  }
  kind = next((k for cls, k in kinds.items() if isinstance(module, cls)), None)
  if kind is None:
    from flax import nnx

    hint = ""
    if isinstance(module, nn.RNN):
      hint = " (pass module.cell and variables['params']['cell'])"
    elif isinstance(module, nnx.Module):
      hint = " (a flax.nnx module: use jaxrnn.interop.from_nnx)"
    raise base.InputTypeError(f"module must be a {_FLAX_CELLS}{hint}, got {_type_name(module)}")
  _check_flax_options(module, kind)
  return kind


def from_flax(module: Any, variables: Any) -> tuple[base.Cell, base.Params]:
  r"""A jaxrnn cell, and its params, that compute what a flax.linen recurrent cell computes.

  * ``SimpleCell`` (tanh or relu) -> ``elman(H, nonlinearity=...)``:
    ``w_x = i.kernel``, ``w_h = h.kernel``, ``b = i.bias``.
  * ``GRUCell`` -> ``gru(H, reset_after=True)``: ``w_x = [ir, iz, in]``,
    ``w_h = [hr, hz, hn]``, ``b = [ir, iz, in].bias``, ``b_hn = hn.bias``.
  * ``MGUCell`` -> ``mgu(H, reset_gate=...)``: ``w_x = [if, in]``,
    ``w_h = [hf, hn]``, ``b = [if, in].bias``, ``b_hn = hn.bias`` (None
    without ``reset_gate``).
  * ``LSTMCell`` and ``OptimizedLSTMCell`` -> ``lstm(H)``:
    ``w_x = [ii, if, ig, io]``, ``w_h = [hi, hf, hg, ho]``,
    ``b = [hi, hf, hg, ho].bias`` (flax's input-side Dense layers have none).

  Kernels are concatenated along their output axis (``jnp.concatenate``,
  so the conversion is traceable and differentiable: applied to flax
  gradients it gives jaxrnn gradients). Initialisers do not matter since
  values are copied. flax's LSTM carry is ``(c, h)``, jaxrnn's
  :class:`jaxrnn.LSTMCarry` is ``(h, c)``: see :func:`from_flax_carry`.

  Args:
    module: a flax.linen cell (see above) with the default ``gate_fn``
      (sigmoid) and ``activation_fn`` (tanh; ``SimpleCell`` also relu), no
      ``residual`` and ``dtype`` None or equal to ``param_dtype``.
    variables: ``{"params": {...}}`` as returned by ``module.init``, or the
      ``params`` mapping itself.

  Returns:
    ``(cell, params)`` with a :class:`jaxrnn.Cell` and its params.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxrnn
    >>> module = nn.LSTMCell(4)
    >>> x = jnp.ones((2, 3))
    >>> variables = module.init(jax.random.key(0), module.initialize_carry(jax.random.key(1), x.shape), x)
    >>> cell, params = jaxrnn.interop.from_flax(module, variables)
    >>> params.w_x.shape, params.w_h.shape
    ((3, 16), (4, 16))
  """
  kind = _flax_kind(module)
  params = _flax_params(variables)
  H = int(module.features)
  cls = type(module).__name__

  def get(name: str, leaf: str) -> Array:
    if name not in params or not isinstance(params[name], Mapping) or leaf not in params[name]:
      raise base.InputError(
        f"variables of flax {cls} must hold params[{name!r}][{leaf!r}]; got params with keys {sorted(params)}"
      )
    return jnp.asarray(params[name][leaf])

  names = {
    "elman": (("i",), ("h",)),
    "gru": (("ir", "iz", "in"), ("hr", "hz", "hn")),
    "mgu": (("if", "in"), ("hf", "hn")),
    "lstm": (("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho")),
  }[kind]
  kx = [get(n, "kernel") for n in names[0]]
  kh = [get(n, "kernel") for n in names[1]]
  dtype = kx[0].dtype
  input_size = int(kx[0].shape[0]) if kx[0].ndim == 2 else -1
  expected = [(n, a, (input_size, H)) for n, a in zip(names[0], kx, strict=True)]
  expected += [(n, a, (H, H)) for n, a in zip(names[1], kh, strict=True)]
  for name, k, shape in expected:
    if tuple(k.shape) != shape:
      raise base.InputError(f"params[{name!r}]['kernel'] has shape {tuple(k.shape)}, expected {shape} (features={H})")
    if k.dtype != dtype:
      raise base.InputTypeError(f"params[{name!r}]['kernel'] has dtype {k.dtype}, expected {dtype} like the others")
  w_x = jnp.concatenate(kx, axis=-1)
  w_h = jnp.concatenate(kh, axis=-1)

  def bias(name: str) -> Array:
    b = get(name, "bias")
    if tuple(b.shape) != (H,) or b.dtype != dtype:
      raise base.InputError(
        f"params[{name!r}]['bias'] has shape {tuple(b.shape)} and dtype {b.dtype}, expected ({H},) and {dtype}"
      )
    return b

  if kind == "elman":
    nonlinearity = "tanh" if module.activation_fn is jnp.tanh else "relu"
    cell = cells_lib.elman(H, nonlinearity=nonlinearity, param_dtype=dtype)
    return cell, cells_lib.ElmanParams(w_x=w_x, w_h=w_h, b=bias("i"))
  if kind == "gru":
    b = jnp.concatenate([bias(n) for n in names[0]])
    return cells_lib.gru(H, reset_after=True, param_dtype=dtype), cells_lib.GRUParams(w_x, w_h, b, bias("hn"))
  if kind == "mgu":
    b = jnp.concatenate([bias(n) for n in names[0]])
    b_hn = bias("hn") if module.reset_gate else None
    cell = cells_lib.mgu(H, reset_gate=bool(module.reset_gate), param_dtype=dtype)
    return cell, cells_lib.MGUParams(w_x, w_h, b, b_hn)
  # Only the hidden-side Dense layers of flax's LSTM have biases (the two are summed).
  b = jnp.concatenate([bias(n) for n in names[1]])
  return cells_lib.lstm(H, param_dtype=dtype), cells_lib.LSTMParams(w_x, w_h, b, None)


def to_flax(params: base.Params, *, nonlinearity: str = "tanh", optimized: bool = False) -> tuple[Any, dict]:
  r"""The flax.linen cell and variables that compute what jaxrnn ``params`` compute (inverse of :func:`from_flax`).

  The cell is chosen by the params' type: :class:`jaxrnn.ElmanParams` ->
  ``SimpleCell``, :class:`jaxrnn.GRUParams` -> ``GRUCell`` (the params of
  ``gru(reset_after=True)``), :class:`jaxrnn.MGUParams` -> ``MGUCell``
  (``reset_gate`` is ``b_hn is not None``), :class:`jaxrnn.LSTMParams` ->
  ``LSTMCell`` (or ``OptimizedLSTMCell``). Missing biases (``bias=False``)
  become zeros, which computes the same.

  Args:
    params: the params of a jaxrnn elman, gru, mgu or lstm cell.
    nonlinearity: the elman cell's ``"tanh"`` or ``"relu"`` (params do not
      record it).
    optimized: give ``OptimizedLSTMCell`` instead of ``LSTMCell``.

  Returns:
    ``(module, {"params": {...}})``.

  Raises:
    TypeError: params of another cell.
    ValueError: what flax cannot express: an LSTM without forget gate or with
      peepholes, layer norm or a projection, a GRU with ``reset_after=False`` (detected when ``b`` is set
      but ``b_hn`` is not), an MGU without bias and without ``b_hn``.

  Example:
    >>> import jax, jaxrnn
    >>> params = jaxrnn.gru(4).init(jax.random.key(0), 3)
    >>> module, variables = jaxrnn.interop.to_flax(params)
    >>> type(module).__name__, sorted(variables["params"])
    ('GRUCell', ['hn', 'hr', 'hz', 'in', 'ir', 'iz'])
  """
  import flax.linen as nn

  if not isinstance(params, (cells_lib.ElmanParams, cells_lib.GRUParams, cells_lib.MGUParams, cells_lib.LSTMParams)):
    raise base.InputTypeError(
      "params must be jaxrnn.ElmanParams, GRUParams, MGUParams or LSTMParams, got " + type(params).__name__
    )
  w_x, w_h = jnp.asarray(params.w_x), jnp.asarray(params.w_h)
  H = int(w_h.shape[0])
  dtype = w_x.dtype

  def split(a: Array, n: int) -> list[Array]:
    return jnp.split(a, n, axis=-1)

  def b_or_zeros(b: Array | None, n: int) -> Array:
    return jnp.zeros((n * H,), dtype) if b is None else jnp.asarray(b)

  if isinstance(params, cells_lib.ElmanParams):
    base.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    act = jnp.tanh if nonlinearity == "tanh" else jax.nn.relu
    module = nn.SimpleCell(H, activation_fn=act, param_dtype=dtype)
    out = {"i": {"kernel": w_x, "bias": b_or_zeros(params.b, 1)}, "h": {"kernel": w_h}}
    return module, {"params": out}
  if isinstance(params, cells_lib.GRUParams):
    _check_reset_after_gru(params, "flax")
    b, b_hn = b_or_zeros(params.b, 3), b_or_zeros(params.b_hn, 1)
    out = {}
    for n, kx, kh, bx in zip("rzn", split(w_x, 3), split(w_h, 3), split(b, 3), strict=True):
      out["i" + n] = {"kernel": kx, "bias": bx}
      out["h" + n] = {"kernel": kh}
    out["hn"]["bias"] = b_hn
    return nn.GRUCell(H, param_dtype=dtype), {"params": out}
  if isinstance(params, cells_lib.MGUParams):
    if params.b is None and params.b_hn is None:
      raise base.InputError("MGU params without bias do not say whether reset_gate is on; flax's MGUCell needs biases")
    reset_gate = params.b_hn is not None
    b = b_or_zeros(params.b, 2)
    out = {}
    for n, kx, kh, bx in zip("fn", split(w_x, 2), split(w_h, 2), split(b, 2), strict=True):
      out["i" + n] = {"kernel": kx, "bias": bx}
      out["h" + n] = {"kernel": kh}
    if reset_gate:
      out["hn"]["bias"] = jnp.asarray(params.b_hn)
    return nn.MGUCell(H, reset_gate=reset_gate, param_dtype=dtype), {"params": out}
  _check_plain_lstm(params, "flax")
  b = b_or_zeros(params.b, 4)
  out = {}
  for n, kx, kh, bh in zip("ifgo", split(w_x, 4), split(w_h, 4), split(b, 4), strict=True):
    out["i" + n] = {"kernel": kx}
    out["h" + n] = {"kernel": kh, "bias": bh}
  cls = nn.OptimizedLSTMCell if optimized else nn.LSTMCell
  return cls(H, param_dtype=dtype), {"params": out}


def from_flax_carry(carry: Any) -> base.Carry:
  """A flax cell's carry as a jaxrnn carry: an LSTM's ``(c, h)`` becomes :class:`jaxrnn.LSTMCarry` ``(h, c)``.

  Other carries (``h: (*batch, H)``) are returned unchanged.
  """
  if isinstance(carry, (tuple, list)):
    if len(carry) != 2:
      raise base.InputError(f"carry must be h or flax's LSTM pair (c, h), got a sequence of {len(carry)}")
    c, h = carry
    return cells_lib.LSTMCarry(h=h, c=c)
  return carry


def to_flax_carry(carry: base.Carry) -> Any:
  """A jaxrnn carry as a flax cell's: :class:`jaxrnn.LSTMCarry` ``(h, c)`` becomes ``(c, h)``.

  Other carries (``h: (*batch, H)``) are returned unchanged.
  """
  if isinstance(carry, cells_lib.LSTMCarry):
    return (carry.c, carry.h)
  return carry


def _checked(a: Array, where: str, shape: tuple[int, ...], dtypes: list[Any], like: str) -> Array:
  """``a`` after checking its shape and that its dtype is ``dtypes[0]`` (the first array checked: ``like``)."""
  if tuple(a.shape) != shape:
    raise base.InputError(f"{where} has shape {tuple(a.shape)}, expected {shape}")
  dtypes.append(a.dtype)
  if a.dtype != dtypes[0]:
    raise base.InputTypeError(f"{where} has dtype {a.dtype}, expected {dtypes[0]} like {like}")
  return a


# ----------------------------------------------------------------------------
# flax.nnx

_NNX_CELLS = "flax.nnx.SimpleCell, GRUCell, LSTMCell or OptimizedLSTMCell"
# The Linear layers of each nnx cell, input side then hidden side, in jaxrnn's gate order.
_NNX_LINEARS = {
  "elman": (("dense_i",), ("dense_h",)),
  "gru": (("dense_i",), ("dense_h",)),
  "lstm": (("ii", "if_", "ig", "io"), ("hi", "hf", "hg", "ho")),
  "optimized_lstm": (("dense_i",), ("dense_h",)),
}


def _nnx_kind(module: Any) -> str:
  """``elman``, ``gru``, ``lstm`` or ``optimized_lstm`` for a supported flax.nnx cell; raises otherwise."""
  import flax.linen as nn
  from flax import nnx

  kinds = {
    nnx.OptimizedLSTMCell: "optimized_lstm",
    nnx.LSTMCell: "lstm",
    nnx.GRUCell: "gru",
    nnx.SimpleCell: "elman",
  }
  kind = next((k for cls, k in kinds.items() if isinstance(module, cls)), None)
  if kind is None:
    hint = ""
    if isinstance(module, nnx.RNN):
      hint = " (pass module.cell)"
    elif isinstance(module, nn.Module):
      hint = " (a flax.linen module: use jaxrnn.interop.from_flax)"
    raise base.InputTypeError(f"module must be a {_NNX_CELLS}{hint}, got {_type_name(module)}")
  _check_flax_options(module, kind)
  return kind


def from_nnx(module: Any) -> tuple[base.Cell, base.Params]:
  r"""A jaxrnn cell, and its params, that compute what a flax.nnx recurrent cell computes.

  * ``SimpleCell`` (tanh or relu) -> ``elman(H, nonlinearity=...)``:
    ``w_x = dense_i.kernel``, ``w_h = dense_h.kernel``, ``b = dense_i.bias``.
  * ``GRUCell`` -> ``gru(H, reset_after=True)``: ``w_x = dense_i.kernel``,
    ``w_h = dense_h.kernel``, ``b = dense_i.bias``, and ``b_hn`` zeros:
    nnx's GRU has no recurrent bias, so the candidate's bias inside the reset
    product is zero (keep it at zero, e.g. with ``optax.masked``, to convert
    trained params back with :func:`to_nnx`).
  * ``LSTMCell`` -> ``lstm(H)``: ``w_x = [ii, if_, ig, io]``,
    ``w_h = [hi, hf, hg, ho]``, ``b = [hi, hf, hg, ho].bias`` (the
    input-side layers have none).
  * ``OptimizedLSTMCell`` -> ``lstm(H)``: ``w_x = dense_i.kernel``,
    ``w_h = dense_h.kernel``, ``b = dense_h.bias``.

  The params are read from the module's ``nnx.Param`` variables and
  concatenated with ``jnp.concatenate``, so the conversion is traceable and
  differentiable: called inside an ``nnx.jit``/``nnx.grad`` function it lets
  a model keep its parameters in an nnx cell and run them with
  :func:`jaxrnn.unroll`, the gradients reaching the nnx params. An LSTM's
  carry is ``(c, h)`` in nnx as in flax.linen: see :func:`from_flax_carry`.

  Args:
    module: a flax.nnx cell (see above) with the default ``gate_fn``
      (sigmoid) and ``activation_fn`` (tanh; ``SimpleCell`` also relu), no
      ``residual`` and ``dtype`` None or equal to ``param_dtype``.

  Returns:
    ``(cell, params)`` with a :class:`jaxrnn.Cell` and its params.

  Raises:
    TypeError: ``module`` is not one of the cells above.
    ValueError: an unsupported option, or a parameter of an unexpected
      shape or dtype.

  Example:
    >>> import jax, jax.numpy as jnp, flax.nnx as nnx, jaxrnn
    >>> module = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
    >>> cell, params = jaxrnn.interop.from_nnx(module)
    >>> params.w_x.shape, params.w_h.shape, params.b.shape
    ((3, 16), (4, 16), (16,))
    >>> x = jnp.ones((2, 3))
    >>> carry = module.initialize_carry(x.shape, rngs=nnx.Rngs(1))
    >>> (c, h), y = module(carry, x)
    >>> _, y_jaxrnn = cell.apply(params, jaxrnn.interop.from_flax_carry(carry), x)
    >>> bool(jnp.allclose(y, y_jaxrnn, atol=1e-6))
    True
  """
  kind = _nnx_kind(module)
  H, I = int(module.hidden_features), int(module.in_features)
  G = _NUM_GATES[kind.removeprefix("optimized_")]
  cls = type(module).__name__
  linears = _NNX_LINEARS[kind]
  per_linear = 1 if kind == "lstm" else G  # LSTMCell has one Linear per gate
  dtypes: list[Any] = []  # the first parameter's dtype; every other must match it

  def read(linear: str, leaf: str, shape: tuple[int, ...]) -> Array:
    var = getattr(getattr(module, linear, None), leaf, None)
    if var is None:
      raise base.InputError(f"{cls}.{linear}.{leaf} is missing; expected an nnx.Param of shape {shape}")
    return _checked(jnp.asarray(var[...]), f"{cls}.{linear}.{leaf}", shape, dtypes, "the others")

  w_x = jnp.concatenate([read(n, "kernel", (I, per_linear * H)) for n in linears[0]], axis=-1)
  w_h = jnp.concatenate([read(n, "kernel", (H, per_linear * H)) for n in linears[1]], axis=-1)
  dtype = dtypes[0]
  if kind == "elman":
    nonlinearity = "tanh" if module.activation_fn is jnp.tanh else "relu"
    cell = cells_lib.elman(H, nonlinearity=nonlinearity, param_dtype=dtype)
    return cell, cells_lib.ElmanParams(w_x=w_x, w_h=w_h, b=read("dense_i", "bias", (H,)))
  if kind == "gru":
    b = read("dense_i", "bias", (G * H,))
    return cells_lib.gru(H, reset_after=True, param_dtype=dtype), cells_lib.GRUParams(
      w_x, w_h, b, jnp.zeros((H,), dtype)
    )
  # Only the hidden-side layers of nnx's LSTMs have biases (the two sides are summed).
  b = jnp.concatenate([read(n, "bias", (per_linear * H,)) for n in linears[1]])
  return cells_lib.lstm(H, param_dtype=dtype), cells_lib.LSTMParams(w_x, w_h, b, None)


def to_nnx(params: base.Params, *, nonlinearity: str = "tanh", optimized: bool = False) -> Any:
  r"""The flax.nnx cell that computes what jaxrnn ``params`` compute (inverse of :func:`from_nnx`).

  The cell is chosen by the params' type: :class:`jaxrnn.ElmanParams` ->
  ``SimpleCell``, :class:`jaxrnn.GRUParams` -> ``GRUCell`` (the params of
  ``gru(reset_after=True)`` with ``b_hn`` zero: nnx's GRU has no recurrent
  bias), :class:`jaxrnn.LSTMParams` -> ``LSTMCell`` (or
  ``OptimizedLSTMCell``). Missing biases (``bias=False``) become zeros, which
  computes the same. The module is built without running its initialisers
  (``nnx.eval_shape``) and then given the params' arrays; flax.nnx has no MGU
  cell.

  Args:
    params: concrete (not traced) params of a jaxrnn elman, gru or lstm cell.
    nonlinearity: the elman cell's ``"tanh"`` or ``"relu"`` (params do not
      record it).
    optimized: give ``OptimizedLSTMCell`` instead of ``LSTMCell``.

  Returns:
    The nnx module, holding the params in its ``nnx.Param`` variables.

  Raises:
    TypeError: params of another cell.
    ValueError: what nnx cannot express: a GRU whose ``b_hn`` is not zero or
      with ``reset_after=False`` (detected when ``b`` is set but ``b_hn`` is
      not), an LSTM without forget gate or with peepholes, layer norm or a
      projection; or traced params.

  Example:
    >>> import jax, jaxrnn
    >>> params = jaxrnn.lstm(4).init(jax.random.key(0), 3)
    >>> module = jaxrnn.interop.to_nnx(params, optimized=True)
    >>> type(module).__name__, module.dense_h.kernel.shape
    ('OptimizedLSTMCell', (4, 16))
  """
  from flax import nnx

  if not isinstance(params, (cells_lib.ElmanParams, cells_lib.GRUParams, cells_lib.LSTMParams)):
    hint = " (flax.nnx has no MGU cell)" if isinstance(params, cells_lib.MGUParams) else ""
    raise base.InputTypeError(
      f"params must be jaxrnn.ElmanParams, GRUParams or LSTMParams{hint}, got {type(params).__name__}"
    )
  traced = [
    jax.tree_util.keystr(k) for k, a in jax.tree_util.tree_leaves_with_path(params) if isinstance(a, jax.core.Tracer)
  ]
  if traced:
    raise base.InputError(
      f"to_nnx builds a stateful nnx module from concrete arrays, but params{traced[0]} is traced: call it outside "
      "jit, grad and vmap"
    )
  w_x, w_h = jnp.asarray(params.w_x), jnp.asarray(params.w_h)
  I, H = int(w_x.shape[0]), int(w_h.shape[0])
  dtype = w_x.dtype

  def b_or_zeros(b: Array | None, n: int) -> Array:
    return jnp.zeros((n * H,), dtype) if b is None else jnp.asarray(b)

  if isinstance(params, cells_lib.ElmanParams):
    base.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    act = jnp.tanh if nonlinearity == "tanh" else jax.nn.relu
    module: Any = nnx.eval_shape(lambda: nnx.SimpleCell(I, H, activation_fn=act, param_dtype=dtype, rngs=nnx.Rngs(0)))
    values = {("dense_i", "kernel"): w_x, ("dense_i", "bias"): b_or_zeros(params.b, 1), ("dense_h", "kernel"): w_h}
  elif isinstance(params, cells_lib.GRUParams):
    _check_reset_after_gru(params, "flax.nnx")
    if params.b_hn is not None:
      if np.any(np.asarray(params.b_hn) != 0):
        raise base.InputError(
          "params.b_hn is not zero; flax.nnx's GRUCell has no recurrent bias, so it cannot express the candidate's "
          "bias inside the reset product (flax.linen's GRUCell can: jaxrnn.interop.to_flax)"
        )
    module = nnx.eval_shape(lambda: nnx.GRUCell(I, H, param_dtype=dtype, rngs=nnx.Rngs(0)))
    values = {("dense_i", "kernel"): w_x, ("dense_i", "bias"): b_or_zeros(params.b, 3), ("dense_h", "kernel"): w_h}
  else:
    _check_plain_lstm(params, "flax.nnx")
    b = b_or_zeros(params.b, 4)
    cls = nnx.OptimizedLSTMCell if optimized else nnx.LSTMCell
    module = nnx.eval_shape(lambda: cls(I, H, param_dtype=dtype, rngs=nnx.Rngs(0)))
    if optimized:
      values = {("dense_i", "kernel"): w_x, ("dense_h", "kernel"): w_h, ("dense_h", "bias"): b}
    else:
      values = {}
      pairs = zip(*_NNX_LINEARS["lstm"], strict=True)  # (ii, hi), (if_, hf), (ig, hg), (io, ho)
      gates = zip(jnp.split(w_x, 4, axis=-1), jnp.split(w_h, 4, axis=-1), jnp.split(b, 4), strict=True)
      for (nx, nh), (kx, kh, bh) in zip(pairs, gates, strict=True):
        values[(nx, "kernel")], values[(nh, "kernel")], values[(nh, "bias")] = kx, kh, bh
  for (linear, leaf), value in values.items():
    getattr(getattr(module, linear), leaf).set_value(value)
  unset = [
    path for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(module)) if not isinstance(leaf, jax.Array)
  ]
  assert not unset, f"to_nnx left variables without values: {unset}"
  return module


# ----------------------------------------------------------------------------
# equinox

_EQX_CELLS = "equinox.nn.GRUCell or equinox.nn.LSTMCell"


def _import_equinox() -> Any:
  try:
    import equinox as eqx
  except ImportError as e:  # pragma: no cover - equinox is installed in CI
    raise ImportError("jaxrnn.interop's equinox converters need equinox: pip install 'jaxrnn[equinox]'") from e
  return eqx


def from_equinox(module: Any) -> tuple[base.Cell, base.Params]:
  r"""A jaxrnn cell, and its params, that compute what an equinox recurrent cell computes.

  equinox keeps PyTorch's layout: ``weight_ih: (G*H, in)`` and
  ``weight_hh: (G*H, H)`` in the gate order jaxrnn shares (LSTM ``i, f, g,
  o``; GRU ``r, z, n``), one bias on the input side, and the GRU's
  ``bias_n`` inside the reset product.

  * ``GRUCell`` -> ``gru(H, reset_after=True)``: ``w_x = weight_ih.T``,
    ``w_h = weight_hh.T``, ``b = bias``, ``b_hn = bias_n``.
  * ``LSTMCell`` -> ``lstm(H)``: ``w_x = weight_ih.T``, ``w_h = weight_hh.T``,
    ``b = bias``. Its carry ``(h, c)`` is in :class:`jaxrnn.LSTMCarry`'s order.

  ``use_bias=False`` gives a cell with ``bias=False``. The conversion only
  transposes, so it is traceable and differentiable: called inside an
  ``eqx.filter_grad`` function it lets a model keep its parameters in an
  equinox cell and run them with :func:`jaxrnn.unroll` (equinox cells take
  one unbatched step; jaxrnn's take any batch shape), the gradients reaching
  the equinox params.

  Args:
    module: an ``equinox.nn.GRUCell`` or ``equinox.nn.LSTMCell``.

  Returns:
    ``(cell, params)`` with a :class:`jaxrnn.Cell` and its params.

  Raises:
    TypeError: ``module`` is not one of the cells above.
    ValueError: a parameter of an unexpected shape or dtype.

  Example:
    >>> import jax, jax.numpy as jnp, equinox as eqx, jaxrnn
    >>> module = eqx.nn.GRUCell(3, 4, key=jax.random.key(0))
    >>> cell, params = jaxrnn.interop.from_equinox(module)
    >>> params.w_x.shape, params.b_hn.shape
    ((3, 12), (4,))
    >>> x, h = jnp.ones(3), jnp.zeros(4)
    >>> _, y = cell.apply(params, h, x)
    >>> bool(jnp.allclose(module(x, h), y, atol=1e-6))
    True
  """
  eqx = _import_equinox()
  kinds = {eqx.nn.GRUCell: "gru", eqx.nn.LSTMCell: "lstm"}
  kind = next((k for cls, k in kinds.items() if isinstance(module, cls)), None)
  if kind is None:
    raise base.InputTypeError(f"module must be an {_EQX_CELLS}, got {_type_name(module)}")
  H, I, G = int(module.hidden_size), int(module.input_size), _NUM_GATES[kind]
  cls = type(module).__name__
  dtypes: list[Any] = []  # the first parameter's dtype; every other must match it

  def read(name: str, shape: tuple[int, ...]) -> Array:
    return _checked(jnp.asarray(getattr(module, name)), f"{cls}.{name}", shape, dtypes, "weight_ih")

  w_x = read("weight_ih", (G * H, I)).T
  w_h = read("weight_hh", (G * H, H)).T
  bias = bool(module.use_bias)
  b = read("bias", (G * H,)) if bias else None
  dtype = dtypes[0]
  if kind == "gru":
    b_hn = read("bias_n", (H,)) if bias else None
    return cells_lib.gru(H, reset_after=True, bias=bias, param_dtype=dtype), cells_lib.GRUParams(w_x, w_h, b, b_hn)
  return cells_lib.lstm(H, bias=bias, param_dtype=dtype), cells_lib.LSTMParams(w_x, w_h, b, None)


def to_equinox(params: base.Params) -> Any:
  r"""The equinox cell that computes what jaxrnn ``params`` compute (inverse of :func:`from_equinox`).

  :class:`jaxrnn.GRUParams` (of ``gru(reset_after=True)``) give
  ``equinox.nn.GRUCell``, :class:`jaxrnn.LSTMParams` ``equinox.nn.LSTMCell``;
  params without biases (``bias=False``) give ``use_bias=False``. The module
  is built without running its initialisers (``eqx.filter_eval_shape``) and
  given the params' arrays with ``eqx.tree_at``; this only transposes, so it
  is traceable. equinox has no Elman or MGU cell.

  Args:
    params: the params of a jaxrnn gru or lstm cell.

  Returns:
    The equinox module.

  Raises:
    TypeError: params of another cell.
    ValueError: what equinox cannot express: a GRU with ``reset_after=False``
      (detected when ``b`` is set but ``b_hn`` is not), an LSTM without
      forget gate or with peepholes, layer norm or a projection.

  Example:
    >>> import jax, jaxrnn
    >>> params = jaxrnn.lstm(4).init(jax.random.key(0), 3)
    >>> module = jaxrnn.interop.to_equinox(params)
    >>> type(module).__name__, module.weight_hh.shape
    ('LSTMCell', (16, 4))
  """
  eqx = _import_equinox()
  if not isinstance(params, (cells_lib.GRUParams, cells_lib.LSTMParams)):
    hint = (
      " (equinox has no Elman or MGU cell)" if isinstance(params, (cells_lib.ElmanParams, cells_lib.MGUParams)) else ""
    )
    raise base.InputTypeError(f"params must be jaxrnn.GRUParams or LSTMParams{hint}, got {type(params).__name__}")
  w_x, w_h = jnp.asarray(params.w_x), jnp.asarray(params.w_h)
  I, H = int(w_x.shape[0]), int(w_h.shape[0])
  use_bias = params.b is not None
  if isinstance(params, cells_lib.GRUParams):
    _check_reset_after_gru(params, "equinox")
    if params.b is None and params.b_hn is not None:
      raise base.InputError("params have b_hn but no b; equinox's GRUCell has both biases or neither")
    cls = eqx.nn.GRUCell
    names, values = ["weight_ih", "weight_hh"], [w_x.T, w_h.T]
    if use_bias:
      names += ["bias", "bias_n"]
      values += [jnp.asarray(params.b), jnp.asarray(params.b_hn)]
  else:
    _check_plain_lstm(params, "equinox")
    cls = eqx.nn.LSTMCell
    names, values = ["weight_ih", "weight_hh"], [w_x.T, w_h.T]
    if use_bias:
      names.append("bias")
      values.append(jnp.asarray(params.b))
  shapes = eqx.filter_eval_shape(lambda: cls(I, H, use_bias=use_bias, dtype=w_x.dtype, key=jax.random.key(0)))
  return eqx.tree_at(lambda m: [getattr(m, n) for n in names], shapes, values)


# ----------------------------------------------------------------------------
# Haiku

_HAIKU_CORES = "haiku.VanillaRNN, haiku.GRU or haiku.LSTM"
# Haiku's gate orders: LSTM i, g, f, o (jaxrnn i, f, g, o); GRU z, r, a (jaxrnn r, z, n).


def _swap_haiku_lstm_gates(a: Array) -> Array:
  """Haiku's LSTM gates ``i, g, f, o`` along the last axis as jaxrnn's ``i, f, g, o``, and back (the swap of the
  middle two is its own inverse)."""
  i, g, f, o = jnp.split(a, 4, axis=-1)
  return jnp.concatenate([i, f, g, o], axis=-1)


def _haiku_entry(params: Mapping[str, Any], key: str, leaves: Sequence[str]) -> dict[str, Array] | None:
  """``params[key]``'s leaves as arrays, or None without ``key``; raises if a leaf is missing."""
  if key not in params:
    return None
  entry = params[key]
  missing = [leaf for leaf in leaves if not isinstance(entry, Mapping) or leaf not in entry]
  if missing:
    have = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
    raise base.InputError(f"haiku params[{key!r}] has no {missing}; it holds {have}")
  return {leaf: jnp.asarray(entry[leaf]) for leaf in entry}


def from_haiku(params: Any, name: str) -> tuple[base.Cell, base.Params]:
  r"""A jaxrnn cell, and its params, that compute what a Haiku recurrent core computes.

  Haiku's params are one flat mapping for the whole transformed function, keyed
  by module path; ``name`` is the core's path (``"lstm"``, ``"gru"``,
  ``"vanilla_rnn"`` by default, ``"encoder/lstm"`` inside a module
  ``encoder``). The core's kind is read from the keys under it:

  * ``haiku.LSTM`` (``{name}/linear``: ``w: (in + H, 4H)``, ``b``) ->
    ``lstm(H)``: ``w_x, w_h = w[:in], w[in:]`` with the gates reordered from
    Haiku's ``i, g, f, o`` to ``i, f, g, o``, and ``b`` likewise, plus the 1
    Haiku adds to the forget gate inside its step.
  * ``haiku.GRU`` (``{name}``: ``w_i, w_h, b``) -> ``gru(H,
    reset_after=False)`` (Haiku resets before the recurrent product, as Cho et
    al. 2014): gates reordered from ``z, r, a`` to ``r, z, n``, and the update
    gate negated, since Haiku's ``h' = (1 - z) h + z a`` is jaxrnn's with
    ``z' = 1 - z = sigmoid(-(...))``.
  * ``haiku.VanillaRNN`` (``{name}/linear`` and ``{name}/linear_1``) ->
    ``elman(H, nonlinearity="relu")`` (Haiku's is relu): ``w_x = linear.w``,
    ``w_h = linear_1.w``, ``b`` the sum of the two biases (``double_bias``)
    or ``linear.b``.

  The conversion slices, concatenates and negates, so it is traceable and
  differentiable: applied inside a function differentiated with respect to the
  Haiku params, the gradients come back in Haiku's layout. Haiku's LSTM state
  ``LSTMState(hidden, cell)`` is :class:`jaxrnn.LSTMCarry` ``(h, c)``.

  Args:
    params: the Haiku params (``transformed.init(...)``'s result).
    name: the module path of the recurrent core in ``params``.

  Returns:
    ``(cell, params)`` with a :class:`jaxrnn.Cell` and its params.

  Raises:
    TypeError: ``params`` is not a mapping.
    ValueError: no core under ``name``, or parameters of unexpected shapes.

  Example:
    >>> import jax, jax.numpy as jnp, haiku as hk, jaxrnn
    >>> def forward(xs):
    ...   core = hk.LSTM(4)
    ...   return hk.dynamic_unroll(core, xs, core.initial_state(2))[0]   # (T, batch, H) outputs
    >>> model = hk.without_apply_rng(hk.transform(forward))
    >>> xs = jnp.ones((5, 2, 3))
    >>> hk_params = model.init(jax.random.key(0), xs)
    >>> cell, params = jaxrnn.interop.from_haiku(hk_params, "lstm")
    >>> _, ys = jaxrnn.unroll(cell, params, xs)
    >>> bool(jnp.allclose(ys, model.apply(hk_params, xs), atol=1e-6))
    True
  """
  if not isinstance(params, Mapping):
    raise base.InputTypeError(f"params must be Haiku's params mapping, got {type(params).__name__}")
  gru_entry = _haiku_entry(params, name, ("w_i", "w_h", "b"))
  linear = _haiku_entry(params, f"{name}/linear", ("w", "b"))
  linear_1 = _haiku_entry(params, f"{name}/linear_1", ("w",))
  if gru_entry is not None:
    w_i, w_h, b = gru_entry["w_i"], gru_entry["w_h"], gru_entry["b"]
    H = int(w_h.shape[0])
    for what, a, shape in [("w_i", w_i, (int(w_i.shape[0]), 3 * H)), ("w_h", w_h, (H, 3 * H)), ("b", b, (3 * H,))]:
      if tuple(a.shape) != shape:
        raise base.InputError(f"haiku params[{name!r}][{what!r}] has shape {tuple(a.shape)}, expected {shape}")

    def r_z_n(a: Array) -> Array:  # Haiku's z, r, a -> jaxrnn's r, z, n, with z negated
      z, r, n = jnp.split(a, 3, axis=-1)
      return jnp.concatenate([r, -z, n], axis=-1)

    cell = cells_lib.gru(H, reset_after=False, param_dtype=w_h.dtype)
    return cell, cells_lib.GRUParams(r_z_n(w_i), r_z_n(w_h), r_z_n(b), None)
  if linear is None:
    near = sorted(k for k in params if k == name or k.startswith(name + "/"))
    raise base.InputError(
      f"haiku params hold no {_HAIKU_CORES} under {name!r} (a GRU's params[{name!r}], or an LSTM's or VanillaRNN's "
      f"params['{name}/linear']); keys under it: {near}, all keys: {sorted(params)}"
    )
  w, b = linear["w"], linear["b"]
  if linear_1 is not None:  # VanillaRNN
    H = int(w.shape[1])
    w_h = linear_1["w"]
    if tuple(w_h.shape) != (H, H) or tuple(b.shape) != (H,):
      raise base.InputError(
        f"haiku VanillaRNN {name!r}: linear w {tuple(w.shape)}, b {tuple(b.shape)} and linear_1 w "
        f"{tuple(w_h.shape)} do not fit one hidden size"
      )
    if "b" in linear_1:
      b = b + linear_1["b"]
    return cells_lib.elman(H, nonlinearity="relu", param_dtype=w.dtype), cells_lib.ElmanParams(w, w_h, b)
  H = int(w.shape[1]) // 4
  I = int(w.shape[0]) - H
  if int(w.shape[1]) != 4 * H or I < 1 or tuple(b.shape) != (4 * H,):
    raise base.InputError(
      f"haiku params['{name}/linear'] has w {tuple(w.shape)} and b {tuple(b.shape)}; an LSTM's are (in + H, 4H) "
      "and (4H,)"
    )

  forget_one = jnp.zeros((4 * H,), b.dtype).at[H : 2 * H].set(1)  # Haiku's sigmoid(f + 1)
  w_x, w_h = _swap_haiku_lstm_gates(w[:I]), _swap_haiku_lstm_gates(w[I:])
  lstm_params = cells_lib.LSTMParams(w_x, w_h, _swap_haiku_lstm_gates(b) + forget_one, None)
  return cells_lib.lstm(H, param_dtype=w.dtype), lstm_params


def to_haiku(params: base.Params, name: str | None = None, *, nonlinearity: str = "tanh") -> dict[str, Any]:
  r"""Haiku params that make a Haiku core compute what jaxrnn ``params`` compute (inverse of :func:`from_haiku`).

  :class:`jaxrnn.LSTMParams` give ``haiku.LSTM``'s, :class:`jaxrnn.GRUParams`
  (of ``gru(reset_after=False)``) ``haiku.GRU``'s and
  :class:`jaxrnn.ElmanParams` (of ``elman(H, nonlinearity="relu")``)
  ``haiku.VanillaRNN``'s (with ``double_bias=False``: the bias in ``linear``).
  Missing LSTM biases become zeros (less the 1 Haiku adds to the forget gate).

  Args:
    params: the params of a jaxrnn lstm, gru or elman cell (see above).
    name: the core's module path, the keys' prefix (default ``"lstm"``,
      ``"gru"`` or ``"vanilla_rnn"``, Haiku's default names).
    nonlinearity: the elman cell's nonlinearity, which params do not record;
      Haiku's VanillaRNN is relu, so only ``"relu"`` converts.

  Returns:
    A params mapping, to merge into the Haiku params of the function that
    holds the core (``{**hk_params, **to_haiku(params)}``).

  Raises:
    TypeError: params of another cell.
    ValueError: what Haiku cannot express: a GRU with ``reset_after=True``
      (``b_hn`` set) or without biases (whose params do not say which GRU
      they are), an elman that is not relu, an LSTM without forget gate or
      with peepholes, layer norm or a projection.

  Example:
    >>> import jax, jaxrnn
    >>> params = jaxrnn.gru(4, reset_after=False).init(jax.random.key(0), 3)
    >>> hk_params = jaxrnn.interop.to_haiku(params)
    >>> {k: sorted(v) for k, v in hk_params.items()}
    {'gru': ['b', 'w_h', 'w_i']}
  """
  if not isinstance(params, (cells_lib.ElmanParams, cells_lib.GRUParams, cells_lib.LSTMParams)):
    raise base.InputTypeError(
      f"params must be jaxrnn.ElmanParams, GRUParams or LSTMParams ({_HAIKU_CORES}), got {type(params).__name__}"
    )
  w_x, w_h = jnp.asarray(params.w_x), jnp.asarray(params.w_h)
  H = int(w_h.shape[0])
  if isinstance(params, cells_lib.ElmanParams):
    base.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    if nonlinearity != "relu":
      raise base.InputError(
        "haiku's VanillaRNN computes relu; an elman with nonlinearity='tanh' cannot be expressed (pass "
        "nonlinearity='relu' for the params of elman(H, nonlinearity='relu'))"
      )
    b = jnp.zeros((H,), w_x.dtype) if params.b is None else jnp.asarray(params.b)
    name = name or "vanilla_rnn"
    return {f"{name}/linear": {"w": w_x, "b": b}, f"{name}/linear_1": {"w": w_h}}
  if isinstance(params, cells_lib.GRUParams):
    if params.b_hn is not None:
      raise base.InputError(
        "params have b_hn: a gru(reset_after=True), which haiku's GRU (reset before the recurrent product) "
        "cannot express"
      )
    if params.b is None:
      raise base.InputError(
        "GRU params without biases do not say whether they are a gru(reset_after=False), the only GRU haiku "
        "computes; convert the params of gru(H, reset_after=False) (with biases)"
      )

    def z_r_a(a: Array) -> Array:  # jaxrnn's r, z, n -> Haiku's z, r, a, with z negated back
      r, z, n = jnp.split(a, 3, axis=-1)
      return jnp.concatenate([-z, r, n], axis=-1)

    return {name or "gru": {"w_i": z_r_a(w_x), "w_h": z_r_a(w_h), "b": z_r_a(jnp.asarray(params.b))}}
  _check_plain_lstm(params, "haiku")
  b = jnp.zeros((4 * H,), w_x.dtype) if params.b is None else jnp.asarray(params.b)
  b = b - jnp.zeros((4 * H,), b.dtype).at[H : 2 * H].set(1)  # Haiku adds the 1 back inside its step

  w = jnp.concatenate([_swap_haiku_lstm_gates(w_x), _swap_haiku_lstm_gates(w_h)], axis=0)
  return {f"{name or 'lstm'}/linear": {"w": w, "b": _swap_haiku_lstm_gates(b)}}


# ----------------------------------------------------------------------------
# Keras 3

_KERAS_LAYERS = "keras.layers.SimpleRNN, GRU or LSTM (or their cells)"


def _swap_first_two_gates(a: Array) -> Array:
  """Keras's GRU gates ``z, r, h`` along the last axis as jaxrnn's ``r, z, n``, and back (its own inverse)."""
  z, r, n = jnp.split(a, 3, axis=-1)
  return jnp.concatenate([r, z, n], axis=-1)


def _keras_cell_of(layer: Any) -> tuple[Any, str]:
  """``(cell, kind)`` of a Keras recurrent layer or cell; raises for other objects and unsupported options."""
  import keras

  cell = getattr(layer, "cell", layer)
  kinds = {keras.layers.SimpleRNNCell: "elman", keras.layers.GRUCell: "gru", keras.layers.LSTMCell: "lstm"}
  kind = next((k for cls, k in kinds.items() if isinstance(cell, cls)), None)
  if kind is None:
    raise base.InputTypeError(f"layer must be a {_KERAS_LAYERS}, got {_type_name(layer)}")
  name = type(cell).__name__
  allowed = {"elman": (keras.activations.tanh, keras.activations.relu)}.get(kind, (keras.activations.tanh,))
  if not any(cell.activation is a for a in allowed):
    names = "tanh or relu" if kind == "elman" else "tanh"
    raise base.InputError(f"{name}.activation is {cell.activation.__name__!r}; jaxrnn's cell supports only {names}")
  if kind != "elman" and cell.recurrent_activation is not keras.activations.sigmoid:
    raise base.InputError(
      f"{name}.recurrent_activation is {cell.recurrent_activation.__name__!r}; jaxrnn's gates are sigmoid"
    )
  return cell, kind


def from_keras(layer: Any, weights: Sequence[Any] | None = None) -> tuple[base.Cell, base.Params]:
  r"""A jaxrnn cell, and its params, that compute what a Keras 3 recurrent layer's cell computes.

  Keras keeps ``kernel: (in, G*H)``, ``recurrent_kernel: (H, G*H)`` and
  ``bias`` as jaxrnn does, in its own gate orders:

  * ``SimpleRNN`` (tanh or relu) -> ``elman(H, nonlinearity=...)``:
    ``w_x = kernel``, ``w_h = recurrent_kernel``, ``b = bias``.
  * ``LSTM`` (gates ``i, f, c, o``, jaxrnn's ``i, f, g, o``) -> ``lstm(H)``:
    the three arrays as they are (``unit_forget_bias`` only sets the
    initial ``b``).
  * ``GRU`` (gates ``z, r, h``; ``h' = z h + (1 - z) hh``, jaxrnn's update)
    -> ``gru(H, reset_after=...)``, the gates reordered to ``r, z, n``. With
    ``reset_after=True`` (the default) ``bias: (2, 3H)`` holds an input-side
    and a recurrent-side row: ``b`` is their sum but for the candidate's
    recurrent bias, which becomes ``b_hn``.

  ``use_bias=False`` gives a cell with ``bias=False``. The layer's own options
  (``return_sequences``, ``go_backwards``, ``stateful``, dropout) are not part
  of the cell: Keras's input is batch-major, so run the cell with
  ``jaxrnn.unroll(cell, params, xs, time_major=False)``, and with
  ``reverse=True`` for ``go_backwards`` (whose outputs Keras returns in
  reverse order, jaxrnn in the input's).

  Args:
    layer: a built Keras ``SimpleRNN``, ``GRU`` or ``LSTM`` layer, or its
      cell, with the default activations (``SimpleRNN`` also relu).
    weights: arrays to use instead of the layer's current values, in the
      order of ``layer.trainable_weights`` (``kernel, recurrent_kernel[,
      bias]``): e.g. the trainable variables of Keras's stateless JAX API
      (``layer.stateless_call``). They are converted with ``jnp`` operations,
      so jax can trace and differentiate through them.

  Returns:
    ``(cell, params)`` with a :class:`jaxrnn.Cell` and its params.

  Raises:
    TypeError: ``layer`` is not one of the layers above.
    ValueError: an unbuilt layer, an unsupported activation, or weights of
      unexpected shapes.

  Example:
    >>> import os; os.environ.setdefault("KERAS_BACKEND", "jax")
    'jax'
    >>> import keras, numpy as np, jax.numpy as jnp, jaxrnn
    >>> layer = keras.layers.GRU(4, return_sequences=True)
    >>> xs = np.ones((2, 5, 3), np.float32)                  # (batch, time, features)
    >>> ys_keras = layer(xs)
    >>> cell, params = jaxrnn.interop.from_keras(layer)
    >>> _, ys = jaxrnn.unroll(cell, params, jnp.asarray(xs), time_major=False)
    >>> bool(jnp.allclose(ys, np.asarray(ys_keras), atol=1e-6))
    True
  """
  import keras

  cell, kind = _keras_cell_of(layer)
  name = type(cell).__name__
  if not cell.built:
    raise base.InputError(f"{name} is not built; call the layer on an input (or build it) before converting it")
  names = [v.path.split("/")[-1] for v in cell.trainable_weights]
  if weights is None:
    if keras.backend.backend() == "jax":  # the variables hold jax arrays
      arrays = [jnp.array(v.value) for v in cell.trainable_weights]
    else:
      arrays = [jnp.asarray(keras.ops.convert_to_numpy(v)) for v in cell.trainable_weights]
  else:
    if len(weights) != len(names):
      raise base.InputError(f"weights holds {len(weights)} arrays; {name}'s trainable weights are {names}")
    arrays = [jnp.asarray(w) for w in weights]
  H = int(cell.units)
  G = _NUM_GATES[kind]
  got = dict(zip(names, arrays, strict=True))
  w_x, w_h, bias = got["kernel"], got["recurrent_kernel"], got.get("bias")
  I = int(w_x.shape[0]) if w_x.ndim == 2 else -1
  reset_after = kind == "gru" and bool(cell.reset_after)
  expected = {"kernel": (I, G * H), "recurrent_kernel": (H, G * H), "bias": (2, G * H) if reset_after else (G * H,)}
  for key, a in got.items():
    if tuple(a.shape) != expected[key]:
      raise base.InputError(f"{name}.{key} has shape {tuple(a.shape)}, expected {expected[key]} (units={H})")
  dtype = w_x.dtype
  use_bias = bias is not None
  if kind == "elman":
    nonlinearity = "tanh" if cell.activation is keras.activations.tanh else "relu"
    return cells_lib.elman(H, nonlinearity=nonlinearity, bias=use_bias, param_dtype=dtype), cells_lib.ElmanParams(
      w_x, w_h, bias
    )
  if kind == "lstm":
    return cells_lib.lstm(H, bias=use_bias, param_dtype=dtype), cells_lib.LSTMParams(w_x, w_h, bias, None)
  w_x, w_h = _swap_first_two_gates(w_x), _swap_first_two_gates(w_h)
  b = b_hn = None
  if bias is not None and reset_after:
    b_in, b_rec = _swap_first_two_gates(bias[0]), _swap_first_two_gates(bias[1])
    b = b_in + jnp.concatenate([b_rec[: 2 * H], jnp.zeros((H,), b_rec.dtype)])
    b_hn = b_rec[2 * H :]
  elif bias is not None:
    b = _swap_first_two_gates(bias)
  cell_j = cells_lib.gru(H, reset_after=reset_after, bias=use_bias, param_dtype=dtype)
  return cell_j, cells_lib.GRUParams(w_x, w_h, b, b_hn)


def to_keras(params: base.Params, *, nonlinearity: str = "tanh", **layer_kwargs: Any) -> Any:
  r"""A built Keras 3 layer that computes what jaxrnn ``params`` compute (inverse of :func:`from_keras`).

  :class:`jaxrnn.ElmanParams` give ``keras.layers.SimpleRNN``,
  :class:`jaxrnn.GRUParams` ``keras.layers.GRU`` (``reset_after=True`` for
  the params of ``gru(reset_after=True)``, ``False`` for those with ``b`` but
  no ``b_hn``), :class:`jaxrnn.LSTMParams` ``keras.layers.LSTM``; params
  without biases give ``use_bias=False``. The layer is built for the params'
  input size and given their values with ``set_weights``.

  Args:
    params: the params of a jaxrnn elman, gru or lstm cell.
    nonlinearity: the elman cell's ``"tanh"`` or ``"relu"`` (params do not
      record it).
    **layer_kwargs: passed to the layer's constructor (``return_sequences``,
      ``return_state``, ...); not ``units``, ``activation``,
      ``recurrent_activation``, ``use_bias`` or ``reset_after``, which the
      params decide.

  Returns:
    The Keras layer.

  Raises:
    TypeError: params of another cell.
    ValueError: what Keras cannot express: a GRU without biases (whose params
      do not say which GRU they are), an LSTM without forget gate or with
      peepholes, layer norm or a projection; or a layer option the params
      decide.

  Example:
    >>> import os; os.environ.setdefault("KERAS_BACKEND", "jax")
    'jax'
    >>> import jax, jaxrnn
    >>> params = jaxrnn.lstm(4).init(jax.random.key(0), 3)
    >>> layer = jaxrnn.interop.to_keras(params, return_sequences=True)
    >>> type(layer).__name__, [tuple(w.shape) for w in layer.weights]
    ('LSTM', [(3, 16), (4, 16), (16,)])
  """
  import keras

  if not isinstance(params, (cells_lib.ElmanParams, cells_lib.GRUParams, cells_lib.LSTMParams)):
    raise base.InputTypeError(
      f"params must be jaxrnn.ElmanParams, GRUParams or LSTMParams ({_KERAS_LAYERS}), got {type(params).__name__}"
    )
  decided = sorted(set(layer_kwargs) & {"units", "activation", "recurrent_activation", "use_bias", "reset_after"})
  if decided:
    raise base.InputError(f"to_keras takes {decided} from the params; pass only the layer's other options")
  w_x, w_h = np.asarray(params.w_x), np.asarray(params.w_h)
  I, H = int(w_x.shape[0]), int(w_h.shape[0])
  use_bias = params.b is not None
  options: dict[str, Any] = {"use_bias": use_bias, "dtype": str(w_x.dtype), **layer_kwargs}
  if isinstance(params, cells_lib.ElmanParams):
    base.check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    layer = keras.layers.SimpleRNN(H, activation=nonlinearity, **options)
    values = [w_x, w_h] + ([np.asarray(params.b)] if use_bias else [])
  elif isinstance(params, cells_lib.GRUParams):
    if not use_bias:
      raise base.InputError(
        "GRU params without biases do not say whether they are a gru(reset_after=True) or (False); convert "
        "params with biases"
      )
    reset_after = params.b_hn is not None
    layer = keras.layers.GRU(H, reset_after=reset_after, **options)
    values = [np.asarray(_swap_first_two_gates(jnp.asarray(a))) for a in (w_x, w_h)]
    b = jnp.asarray(params.b)
    if reset_after:
      # Keras's recurrent-side row holds the candidate's bias; the r and z biases stay on the input side.
      b_rec = jnp.concatenate([jnp.zeros((2 * H,), b.dtype), jnp.asarray(params.b_hn)])
      values.append(np.stack([np.asarray(_swap_first_two_gates(b)), np.asarray(_swap_first_two_gates(b_rec))]))
    else:
      values.append(np.asarray(_swap_first_two_gates(b)))
  else:
    _check_plain_lstm(params, "Keras")
    layer = keras.layers.LSTM(H, **options)
    values = [w_x, w_h] + ([np.asarray(params.b)] if use_bias else [])
  layer.build((None, None, I))
  layer.set_weights(values)
  return layer
