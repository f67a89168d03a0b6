"""Layers over whole sequences: a cell's unroll, stacks, bidirectional pairs, dropout and readouts.

A :class:`Layer` is to a sequence what a :class:`jaxrnn.Cell` is to one step:
three pure functions, with composite layers holding tuples of their
children's params and carries (as optax's ``chain`` holds its children's
states).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jaxrnn._src import base, fused
from jaxrnn._src import cells as cells_lib
from jaxrnn._src import initializers as inits
from jaxrnn._src import unroll as unroll_lib

Array = jax.Array


class LayerApplyFn(Protocol):
  def __call__(
    self,
    params: base.Params,
    xs: Array,
    carry: base.Carry | None = None,
    *,
    lengths: Array | None = None,
    mask: Array | None = None,
    resets: Array | None = None,
    reset_carry: base.Carry | None = None,
    key: Array | None = None,
    time_major: bool | None = None,
  ) -> tuple[base.Carry, Array]: ...


class Layer(NamedTuple):
  """A recurrent layer over whole sequences, as three pure functions.

  Attributes:
    init: ``init(key, input_size) -> params``.
    initial_carry: ``initial_carry(batch_shape=(), dtype=jnp.float32) -> carry``.
    apply: ``apply(params, xs, carry=None, *, lengths=None, mask=None,
      resets=None, reset_carry=None, key=None, time_major=None) -> (final_carry,
      ys)``. ``xs`` is ``(T, *batch, input_size)`` (or ``(*batch, T,
      input_size)`` when the layer was built with ``time_major=False`` or
      ``time_major=False`` is passed). ``lengths`` and ``mask`` mark the steps
      to run as in :func:`jaxrnn.unroll`; ``resets`` marks where new sequences
      start, as there, and every recurrence restarts there (in a bidirectional
      layer the backward one too, at the step before) from ``reset_carry``:
      a carry shaped like the layer's or broadcastable to it (e.g. a learned
      one without the batch axes), where a composite layer may give None for
      a child; None: each cell's initial carry. ``key`` turns dropout on
      (training); without it the layer is deterministic (inference).
  """

  init: base.InitFn
  initial_carry: base.InitialCarryFn
  apply: LayerApplyFn


LayerLike = Layer | base.Cell


def _time_major_wrapper(apply_tm: Callable[..., tuple[base.Carry, Array]], default_time_major: bool) -> LayerApplyFn:
  def apply_fn(
    params, xs, carry=None, *, lengths=None, mask=None, resets=None, reset_carry=None, key=None, time_major=None
  ):
    tm = default_time_major if time_major is None else time_major
    xs = unroll_lib.check_sequence(xs, time_major=tm)
    if not tm:
      xs = jnp.moveaxis(xs, -2, 0)
    if lengths is not None:
      lengths = unroll_lib.check_lengths(lengths, tuple(xs.shape[1:-1]), xs.shape[0])
    if mask is not None:
      mask = unroll_lib.check_mask(mask, tuple(xs.shape[1:-1]), xs.shape[0], time_major=tm)
    if resets is not None:
      resets = unroll_lib.check_mask(
        resets, tuple(xs.shape[1:-1]), xs.shape[0], time_major=tm, name="resets", meaning=unroll_lib.RESETS_MEANING
      )
    elif reset_carry is not None:
      raise base.InputError("reset_carry is given without resets: pass resets=, True where a new sequence starts")
    if key is not None and not isinstance(key, jax.Array):
      raise base.InputTypeError(f"key must be a PRNG key array (jax.random.key), got {type(key).__name__}")
    extra = {} if reset_carry is None else {"reset_carry": reset_carry}
    carry, ys = apply_tm(params, xs, carry, lengths=lengths, mask=mask, resets=resets, key=key, **extra)
    if not tm:
      ys = jnp.moveaxis(ys, 0, -2)
    return carry, ys

  return apply_fn


def _apply_child(
  layer: Layer, params, xs, carry, *, lengths, mask, resets, key, reset_carry=None
) -> tuple[base.Carry, Array]:
  """A composite layer's call of a child on time-major ``xs``; ``mask``, ``resets`` and ``reset_carry`` are
  passed only when given, so a hand-written Layer whose ``apply`` predates them still composes."""
  extra = {name: v for name, v in (("mask", mask), ("resets", resets), ("reset_carry", reset_carry)) if v is not None}
  return layer.apply(params, xs, carry, lengths=lengths, key=key, time_major=True, **extra)


def _child_reset_carries(reset_carry: Any, n: int) -> tuple[Any, ...]:
  """A composite layer's ``reset_carry`` split among its ``n`` children: None for all, or a tuple of ``n``
  (each a child's reset carry, or None for its initial carry)."""
  if reset_carry is None:
    return (None,) * n
  if not isinstance(reset_carry, tuple) or len(reset_carry) != n:
    raise base.InputError(
      f"reset_carry must be a tuple of {n} reset carries, one per child layer (None for a child's initial "
      f"carry), like the layer's carry; got {type(reset_carry).__name__}"
      + (f" of length {len(reset_carry)}" if isinstance(reset_carry, tuple) else "")
    )
  return reset_carry


def _check_recurrent_mask_support(cell: base.Cell) -> None:
  if not cells_lib.takes_recurrent_mask(cell):
    raise base.InputError(
      "recurrent dropout needs a cell whose apply takes recurrent_mask=, as every jaxrnn cell's does (elman, gru, "
      "mgu, lstm, lstm1997, time_decay of them, grud); got a cell whose apply is "
      f"{getattr(cell.apply, '__qualname__', cell.apply)!r}"
    )


def with_recurrent_mask(cell: base.Cell, mask: Array) -> base.Cell:
  """``cell`` with its recurrent products reading ``h * mask``: recurrent dropout with a given mask.

  Recurrent dropout (Gal & Ghahramani 2016; Keras's ``recurrent_dropout``)
  drops units of the hidden state ``h`` where it enters the recurrent
  products (``h @ w_h``, every gate), with one mask per sequence reused at
  every step. The state itself is not dropped: the GRU's and MGU's update
  ``z * h`` and the LSTM's cell state read it whole. In :func:`jaxrnn.grud`
  and :func:`jaxrnn.time_decay` the mask acts on the decayed state. Draw the mask with
  :func:`dropout`, e.g. ``dropout(key, jnp.ones((*batch, H)), rate)`` (zeros
  and ``1 / (1 - rate)``); :func:`rnn`'s ``recurrent_dropout`` does this
  when its ``apply`` gets a ``key``.

  The returned cell keeps the fast path of :func:`jaxrnn.unroll`: the inner
  cell's kernel reads ``h * mask`` in every recurrent product and in its
  derivative (Keras, by contrast, leaves cuDNN for its generic loop when
  ``recurrent_dropout > 0``). The mask is a constant: no derivative flows to
  it.

  Args:
    cell: a jaxrnn ``elman``, ``gru``, ``mgu`` or ``lstm`` cell (any options),
      :func:`jaxrnn.time_decay` of one, :func:`jaxrnn.grud` or
      :func:`jaxrnn.lstm1997` (its cell outputs are masked, its gate
      activations not).
    mask: ``(*batch, H)`` or ``(H,)``, floating, broadcast against ``h``.

  Returns:
    A :class:`jaxrnn.Cell` with the same params and carry.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> cell = jaxrnn.lstm(8)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> mask = jaxrnn.dropout(jax.random.key(1), jnp.ones((4, 8)), 0.25)   # one mask per sequence
    >>> carry, ys = jaxrnn.unroll(jaxrnn.with_recurrent_mask(cell, mask), params, jnp.ones((10, 4, 3)))
    >>> ys.shape
    (10, 4, 8)
  """
  if not isinstance(cell, base.Cell):
    raise base.InputTypeError(f"cell must be a jaxrnn.Cell, got {type(cell).__name__}")
  _check_recurrent_mask_support(cell)

  inner: Any = cell.apply  # the Cell protocol's apply has no recurrent_mask; these cells' do (checked above)
  mask = jax.lax.stop_gradient(mask)  # a constant of the step, as a dropout mask is

  def apply_fn(params: base.Params, carry: base.Carry, x: Array) -> tuple[base.Carry, Array]:
    return inner(params, carry, x, recurrent_mask=mask)

  spec = fused.fused_spec(cell)
  decay = getattr(cell.apply, fused.DECAY_ATTR, None)  # a time_decay cell's: its kernel is its wrapped cell's
  if spec is not None or decay is not None:  # the fast path runs the inner cell's kernel with the mask
    if spec is not None:
      apply_fn._jaxrnn_fused = spec  # type: ignore[attr-defined]
    if decay is not None:
      setattr(apply_fn, fused.DECAY_ATTR, decay)
    setattr(apply_fn, fused.RECURRENT_MASK_ATTR, mask)
  return base.Cell(cell.init, cell.initial_carry, apply_fn)


def rnn(
  cell: base.Cell,
  *,
  reverse: bool = False,
  unroll: int | bool | None = None,
  time_major: bool = True,
  recurrent_dropout: float = 0.0,
) -> Layer:
  """The layer that unrolls ``cell`` over a sequence (see :func:`jaxrnn.unroll`).

  Args:
    cell: a :class:`jaxrnn.Cell`.
    reverse: process sequences from their last valid step to their first.
    unroll: steps per scan iteration (None: by backend, see :func:`jaxrnn.unroll`).
    time_major: the default layout of ``xs``.
    recurrent_dropout: drop probability of the hidden state's units where
      they enter the recurrent products, one mask per sequence
      (:func:`with_recurrent_mask`, Keras's ``recurrent_dropout``); used only
      when ``apply`` gets a ``key``.

  Returns:
    A :class:`Layer` whose params and carry are the cell's.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> layer = jaxrnn.rnn(jaxrnn.gru(8), recurrent_dropout=0.25)
    >>> params = layer.init(jax.random.key(0), 3)
    >>> carry, ys = layer.apply(params, jnp.ones((10, 4, 3)), key=jax.random.key(1))   # training
    >>> carry, ys = layer.apply(params, jnp.ones((10, 4, 3)))                           # inference
  """
  if not isinstance(cell, base.Cell):
    raise base.InputTypeError(f"cell must be a jaxrnn.Cell, got {type(cell).__name__}")
  if not 0.0 <= recurrent_dropout < 1.0:
    raise base.InputError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout}")
  if recurrent_dropout > 0.0:
    _check_recurrent_mask_support(cell)

  def apply_tm(params, xs, carry, *, lengths, mask, resets, key, reset_carry=None):
    run_cell = cell
    if key is not None and recurrent_dropout > 0.0:
      hidden = jax.tree.leaves(jax.eval_shape(cell.initial_carry, ()))[0].shape[-1]
      ones = jnp.ones(tuple(xs.shape[1:-1]) + (hidden,), xs.dtype)
      run_cell = with_recurrent_mask(cell, dropout(key, ones, recurrent_dropout))
    return unroll_lib.unroll(
      run_cell,
      params,
      xs,
      carry,
      lengths=lengths,
      mask=mask,
      resets=resets,
      reset_carry=reset_carry,
      reverse=reverse,
      unroll=unroll,
    )

  return Layer(cell.init, cell.initial_carry, _time_major_wrapper(apply_tm, time_major))


def _as_layer(layer: LayerLike, *, reverse: bool = False) -> Layer:
  if isinstance(layer, base.Cell):
    return rnn(layer, reverse=reverse)
  if isinstance(layer, Layer):
    return layer
  raise base.InputTypeError(f"expected a jaxrnn.Cell or jaxrnn.Layer, got {type(layer).__name__}")


def output_size(layer: LayerLike, params: base.Params, input_size: int) -> int:
  """The feature size of ``layer``'s outputs, found by shape evaluation (no FLOPs)."""
  layer = _as_layer(layer)
  leaves = jax.tree.leaves(params)
  dtype = leaves[0].dtype if leaves else jnp.float32  # a layer may have no params
  _, ys = jax.eval_shape(lambda p: layer.apply(p, jnp.zeros((1, 1, input_size), dtype), time_major=True), params)
  return int(ys.shape[-1])


def dropout(key: Array, x: Array, rate: float, *, broadcast_time: bool = False) -> Array:
  """Inverted dropout: zeroes each entry with probability ``rate``, scales the rest by ``1/(1-rate)``.

  Args:
    key: PRNG key.
    x: ``(T, *batch, F)``.
    rate: drop probability in ``[0, 1)``.
    broadcast_time: variational dropout (Gal & Ghahramani 2016): one mask per
      sequence, ``(*batch, F)``, reused at every time step.
  """
  if not 0.0 <= rate < 1.0:
    raise base.InputError(f"dropout rate must be in [0, 1), got {rate}")
  if rate == 0.0:
    return x
  shape = x.shape[1:] if broadcast_time else x.shape
  keep = jax.random.bernoulli(key, 1.0 - rate, shape)
  if broadcast_time:
    keep = keep[None]
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


_dropout = dropout  # `stacked` has an argument of the same name


def stacked(
  *layers: LayerLike,
  dropout: float = 0.0,
  variational: bool = False,
  time_major: bool = True,
) -> Layer:
  """Layers applied one after the other, with dropout between them (not after the last).

  This is PyTorch's ``num_layers`` with ``dropout``: each layer's output
  sequence is the next layer's input. With ``variational=True`` each dropout
  mask is drawn once per sequence and reused at every step.

  Args:
    *layers: :class:`jaxrnn.Cell` (unrolled forward) or :class:`Layer` objects.
    dropout: drop probability between layers, used only when ``apply`` gets a ``key``.
    variational: one dropout mask across time.
    time_major: the default layout of ``xs``.

  Returns:
    A :class:`Layer` whose params and carry are tuples of the layers' params
    and carries.

  Its training step keeps every layer's activations for the backward pass:
  two LSTM layers at (B, T, H) = (64, 100, 128) need 48 MiB of temporary
  memory, over glibc's 32 MiB mmap threshold, which costs fresh pages on every
  call. :func:`jaxrnn.tune_malloc` removes that cost (0.72x and 0.74x the
  time in ``python -m benchmarks.malloc``).

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> net = jaxrnn.stacked(jaxrnn.lstm(8), jaxrnn.gru(4), dropout=0.1)
    >>> params = net.init(jax.random.key(0), 3)
    >>> carry, ys = net.apply(params, jnp.ones((5, 2, 3)), key=jax.random.key(1))
    >>> ys.shape
    (5, 2, 4)
  """
  if not layers:
    raise base.InputError("stacked needs at least one layer")
  children = tuple(_as_layer(layer) for layer in layers)
  if not 0.0 <= dropout < 1.0:
    raise base.InputError(f"dropout must be in [0, 1), got {dropout}")

  def init_fn(key: Array, input_size: int) -> tuple[Any, ...]:
    base.check_positive_int("input_size", input_size)
    params = []
    size = input_size
    for k, child in zip(jax.random.split(key, len(children)), children):
      p = child.init(k, size)
      size = output_size(child, p, size)
      params.append(p)
    return tuple(params)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> tuple[Any, ...]:
    return tuple(child.initial_carry(batch_shape, dtype) for child in children)

  def apply_tm(params, xs, carry, *, lengths, mask, resets, key, reset_carry=None):
    if not isinstance(params, tuple) or len(params) != len(children):
      raise base.InputError(f"params must be a tuple of {len(children)} layers' params")
    if carry is None:
      carry = initial_carry_fn(xs.shape[1:-1], xs.dtype)
    rcs = _child_reset_carries(reset_carry, len(children))
    keys = jax.random.split(key, len(children)) if key is not None else [None] * len(children)
    carries = []
    for n, (child, p, c, k, rc) in enumerate(zip(children, params, carry, keys, rcs)):
      if n > 0 and k is not None and dropout > 0.0:
        xs = _dropout(jax.random.fold_in(k, 0), xs, dropout, broadcast_time=variational)
      c, xs = _apply_child(child, p, xs, c, lengths=lengths, mask=mask, resets=resets, key=k, reset_carry=rc)
      carries.append(c)
    return tuple(carries), xs

  return Layer(init_fn, initial_carry_fn, _time_major_wrapper(apply_tm, time_major))


MERGES = ("concat", "sum")


def bidirectional(
  forward: LayerLike,
  backward: LayerLike,
  *,
  merge: str = "concat",
  time_major: bool = True,
) -> Layer:
  """A forward and a length-aware backward layer over the same input, outputs merged.

  Args:
    forward: a Cell (unrolled forward) or a Layer.
    backward: a Cell (unrolled in reverse over each sequence's valid steps) or
      a Layer (used as given: build it with ``reverse=True``).
    merge: ``"concat"`` (features ``[forward, backward]``, PyTorch's layout) or ``"sum"``.
    time_major: the default layout of ``xs``.

  Returns:
    A :class:`Layer` with params ``(forward_params, backward_params)`` and
    carry ``(forward_carry, backward_carry)``. The backward carry is its state
    after reading each sequence's first step.

  Its training step keeps both directions' activations for the backward
  pass, about twice one layer's temporary memory: over glibc's 32 MiB mmap
  threshold, which costs fresh pages on every call, from (B, T, H) = (64,
  100, 128) for an LSTM. :func:`jaxrnn.tune_malloc` removes that cost
  (bidirectional LSTM and GRU training 0.69x to 0.73x the time in ``python -m
  benchmarks.malloc``).
  """
  base.check_choice("merge", merge, MERGES)
  fwd = _as_layer(forward)
  bwd = _as_layer(backward, reverse=True)

  def init_fn(key: Array, input_size: int) -> tuple[Any, Any]:
    base.check_positive_int("input_size", input_size)
    kf, kb = jax.random.split(key)
    return fwd.init(kf, input_size), bwd.init(kb, input_size)

  def initial_carry_fn(batch_shape: Any = (), dtype: Any = jnp.float32) -> tuple[Any, Any]:
    return fwd.initial_carry(batch_shape, dtype), bwd.initial_carry(batch_shape, dtype)

  def apply_tm(params, xs, carry, *, lengths, mask, resets, key, reset_carry=None):
    cf, cb = (None, None) if carry is None else carry
    rf, rb = _child_reset_carries(reset_carry, 2)
    kf, kb = jax.random.split(key) if key is not None else (None, None)
    cf, yf = _apply_child(fwd, params[0], xs, cf, lengths=lengths, mask=mask, resets=resets, key=kf, reset_carry=rf)
    cb, yb = _apply_child(bwd, params[1], xs, cb, lengths=lengths, mask=mask, resets=resets, key=kb, reset_carry=rb)
    if merge == "concat":
      ys = jnp.concatenate([yf, yb], axis=-1)
    else:
      if yf.shape != yb.shape:
        raise base.InputError(f"merge='sum' needs equal output sizes, got {yf.shape[-1]} and {yb.shape[-1]}")
      ys = yf + yb
    return (cf, cb), ys

  return Layer(init_fn, initial_carry_fn, _time_major_wrapper(apply_tm, time_major))


class DenseParams(NamedTuple):
  """Parameters of :func:`dense`."""

  w: Array  # shape=(input_size, output_size)
  b: Array | None  # shape=(output_size,); None when bias=False


def dense(
  output_size: int,
  *,
  activation: Callable[[Array], Array] | None = None,
  bias: bool = True,
  kernel_init: inits.Initializer = inits.lecun_normal(),
  bias_init: inits.Initializer = inits.zeros,
  param_dtype: Any = jnp.float32,
) -> base.Dense:
  """A dense readout ``y = activation(x w + b)``, per step or on :func:`last_step`'s output.

  Args:
    output_size: number of output units.
    activation: e.g. ``jax.nn.sigmoid`` (the 1997 output units); None for identity.
    bias: whether ``b`` exists.
    kernel_init, bias_init: initialisers.
    param_dtype: dtype of the params.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> out = jaxrnn.dense(1, activation=jax.nn.sigmoid)
    >>> p = out.init(jax.random.key(0), 4)
    >>> out.apply(p, jnp.ones((10, 2, 4))).shape
    (10, 2, 1)
  """
  base.check_positive_int("output_size", output_size)
  param_dtype = base.check_floating_dtype("param_dtype", param_dtype)

  def init_fn(key: Array, input_size: int) -> DenseParams:
    base.check_positive_int("input_size", input_size)
    kw, kb = jax.random.split(key)
    return DenseParams(
      w=kernel_init(kw, (input_size, output_size), param_dtype),
      b=bias_init(kb, (output_size,), param_dtype) if bias else None,
    )

  params_spec = base.params_spec(init_fn)

  def apply_fn(params: DenseParams, x: Array) -> Array:
    base.check_params_type(params, DenseParams, what="readout")
    base.check_step_input(x, int(params.w.shape[0]), params.w.dtype)
    base.check_params(params, params_spec(int(params.w.shape[0])), what="readout")
    y = x @ params.w
    if params.b is not None:
      y = y + params.b.reshape((1,) * (y.ndim - 1) + params.b.shape)
    return activation(y) if activation is not None else y

  return base.Dense(init_fn, apply_fn)


def broadcast_carry(carry: base.Carry, batch_shape: Any) -> base.Carry:
  """One carry for every sequence of a batch: each leaf broadcast to ``(*batch_shape, *leaf.shape)``.

  This is how to learn the initial state (Keras' and PyTorch's users ask for it): keep an unbatched carry,
  e.g. ``cell.initial_carry(())``, among the params, and start every sequence from it; its gradient is the sum
  over the batch.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> cell = jaxrnn.gru(4)
    >>> params = {"cell": cell.init(jax.random.key(0), 3), "h0": cell.initial_carry(())}
    >>> xs = jnp.ones((5, 2, 3))
    >>> def loss(p):
    ...   carry0 = jaxrnn.broadcast_carry(p["h0"], xs.shape[1:-1])
    ...   return jnp.sum(jaxrnn.unroll(cell, p["cell"], xs, carry0)[1] ** 2)
    >>> jax.grad(loss)(params)["h0"].shape
    (4,)
  """
  batch_shape = base.check_batch_shape(batch_shape)
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (*batch_shape, *jnp.shape(a))), carry)


def last_step(ys: Array, lengths: Array | None = None, *, mask: Array | None = None, time_major: bool = True) -> Array:
  """Each sequence's output at its last valid step.

  Args:
    ys: ``(T, *batch, F)`` (or ``(*batch, T, F)`` with ``time_major=False``).
    lengths: ``(*batch,)`` integer lengths in ``[0, T]``; None means every sequence has
      length ``T``. A length of 0 gives zeros.
    mask: optional boolean ``(T, *batch)`` (``(*batch, T)`` with ``time_major=False``), as given to
      :func:`jaxrnn.unroll`: the last step where it is True (and within ``lengths``) is read; a
      sequence without one gives zeros.

  Returns:
    ``(*batch, F)``.
  """
  ys = unroll_lib.check_sequence(ys, name="ys", time_major=time_major)
  if not time_major:
    ys = jnp.moveaxis(ys, -2, 0)
  T, batch_shape = ys.shape[0], tuple(ys.shape[1:-1])
  if lengths is None and mask is None:
    return ys[-1]
  if lengths is not None:
    lengths = unroll_lib.check_lengths(lengths, batch_shape, T)
  if mask is None:
    assert lengths is not None
    last, any_step = lengths - 1, lengths > 0
  else:
    mask = unroll_lib.within_lengths(unroll_lib.check_mask(mask, batch_shape, T, time_major=time_major), lengths)
    last = T - 1 - jnp.argmax(mask[::-1], axis=0)  # the last True of each sequence
    any_step = jnp.any(mask, axis=0)
  out = unroll_lib.take_steps(ys, jnp.clip(last, 0, T - 1)[None])[0]
  return jnp.where(any_step[..., None], out, jnp.zeros_like(out))
