"""Unrolling a cell over a sequence with ``lax.scan``."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._src import base, fused

Array = jax.Array

IMPLS = ("auto", "reference", "fused")


def check_sequence(xs: Any, *, name: str = "xs", time_major: bool = True) -> Array:
  """Checks ``xs`` is a floating array with a time axis and a feature axis."""
  if not hasattr(xs, "shape") or not hasattr(xs, "dtype"):
    raise base.InputTypeError(f"{name} must be an array, got {type(xs).__name__}")
  layout = "(T, *batch, features)" if time_major else "(*batch, T, features)"
  if xs.ndim < 2:
    raise base.InputError(f"{name} must have rank >= 2 {layout}, got shape {tuple(xs.shape)}")
  if not jnp.issubdtype(xs.dtype, jnp.floating):
    raise base.InputTypeError(f"{name} must be a floating array, got dtype {xs.dtype}")
  return xs


def check_lengths(lengths: Any, batch_shape: tuple[int, ...], T: int, *, name: str = "lengths") -> Array:
  """Checks ``lengths`` is an integer array of shape ``batch_shape`` with values in ``[0, T]``.

  The values are checked where they are known (concrete arrays); under ``jit`` they are
  traced, and a length outside ``[0, T]`` acts as the nearest end of that range.
  """
  if not hasattr(lengths, "shape"):
    lengths = jnp.asarray(lengths)
  if not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise base.InputTypeError(f"{name} must be an integer array, got dtype {lengths.dtype}")
  if tuple(lengths.shape) != tuple(batch_shape):
    raise base.InputError(
      f"{name} must have the batch shape {tuple(batch_shape)} of xs, got shape {tuple(lengths.shape)}"
    )
  if not isinstance(lengths, jax.core.Tracer) and lengths.size:
    values = np.asarray(lengths)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > T:
      raise base.InputError(f"{name} must be in [0, {T}] (the number of time steps), got values from {lo} to {hi}")
  return lengths


def check_mask(
  mask: Any,
  batch_shape: tuple[int, ...],
  T: int,
  *,
  time_major: bool = True,
  name: str = "mask",
  meaning: str = "True: process the step",
) -> Array:
  """Checks ``mask`` is a boolean array of shape ``(T, *batch)`` (``(*batch, T)`` if not ``time_major``).

  Returns it time-major. ``name`` and ``meaning`` go into the error messages.
  """
  if not hasattr(mask, "shape"):
    mask = jnp.asarray(mask)
  expected = (T, *batch_shape) if time_major else (*batch_shape, T)
  layout = "(T, *batch)" if time_major else "(*batch, T)"
  if mask.dtype != jnp.bool_:
    raise base.InputTypeError(f"{name} must be a boolean array ({meaning}), got dtype {mask.dtype}")
  if tuple(mask.shape) != expected:
    raise base.InputError(f"{name} must have shape {layout} = {expected} to match xs, got shape {tuple(mask.shape)}")
  return mask if time_major else jnp.moveaxis(mask, -1, 0)


RESETS_MEANING = "True: a new sequence starts at the step"


def check_reset_carry(reset_carry: Any, carry: Any) -> Any:
  """Checks ``reset_carry`` has the structure of ``carry`` with leaves that broadcast to its leaves' shapes.

  Returns it broadcast to them, in their dtypes.
  """
  want: Any = jax.tree.structure(carry)
  got: Any = jax.tree.structure(reset_carry)
  if want != got:
    raise base.InputError(f"reset_carry must have the structure of the carry, {want}, got {got}")
  out = []
  for i, (r, c) in enumerate(zip(jax.tree.leaves(reset_carry), jax.tree.leaves(carry))):
    r_shape = tuple(getattr(r, "shape", ()))
    try:
      ok = len(r_shape) <= c.ndim and np.broadcast_shapes(r_shape, c.shape) == tuple(c.shape)
    except ValueError:
      ok = False
    if not ok:
      raise base.InputError(
        f"reset_carry leaf {i} has shape {r_shape}, which does not broadcast to the carry's {tuple(c.shape)}"
      )
    out.append(jnp.broadcast_to(jnp.asarray(r, c.dtype), c.shape))
  return jax.tree.unflatten(want, out)


def boundaries_at_kept(resets: Array, mask: Array) -> Array:
  """Where ``mask: (T, *batch)`` keeps a step, whether ``resets`` has a True at it or at a skipped step since the
  previous kept step: the sequence boundaries between consecutive kept steps, attached to the later one."""
  count = jnp.cumsum(resets, axis=0, dtype=jnp.int32)
  at_kept = jax.lax.cummax(jnp.where(mask, count, 0), axis=0)
  before = jnp.concatenate([jnp.zeros_like(at_kept[:1]), at_kept[:-1]])  # the count at the previous kept step
  return mask & (count > before)


def entering_resets(resets: Array, lengths: Array | None, reverse: bool) -> Array:
  """Turns ``resets`` (True at the first step of a new sequence) into the steps whose incoming carry is reset, in
  the order the scan gets its inputs: the same steps scanning forward; scanning in reverse, the step before each
  one (the carry from step t must not reach step t - 1), within each sequence's length, and with ``lengths``
  reordered as :func:`reverse_valid` reorders the inputs."""
  if not reverse:
    return resets
  before = jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])])
  if lengths is None:
    return before
  T = resets.shape[0]
  before = before & (jnp.arange(1, T + 1).reshape((T,) + (1,) * lengths.ndim) < lengths[None])
  return reverse_valid(before, lengths)


def within_lengths(mask: Array, lengths: Array | None) -> Array:
  """``mask: (T, *batch)`` and, where ``lengths`` is given, each step before its sequence's length."""
  if lengths is None:
    return mask
  T = mask.shape[0]
  return mask & (jnp.arange(T).reshape((T,) + (1,) * lengths.ndim) < lengths[None])


def take_steps(a: Array, idx: Array) -> Array:
  """``a[idx[t, b], b]`` for a time-major ``a: (T, *batch, ...)`` and ``idx: (T', *batch)``."""
  idx = jnp.broadcast_to(_expand(idx, a), idx.shape[:1] + a.shape[1 : idx.ndim] + (1,) * (a.ndim - idx.ndim))
  return jnp.take_along_axis(a, idx, axis=0)


@jax.custom_jvp
def permute_steps(a: Array, idx: Array, inv: Array) -> Array:
  """:func:`take_steps` ``(a, idx)`` where ``idx: (T, *batch)`` permutes each sequence's steps and ``inv`` is its
  inverse (``take_steps(take_steps(a, idx), inv) == a``), with a derivative whose transpose is the gather by
  ``inv``.

  A gather's own transpose is a scatter-add into a zeroed ``a``-sized buffer. In the mask's and the reversed
  lengths' gradients that buffer (``(T, B, H)`` for the outputs) lifted the GRU's training step at ``(16, 1000,
  8, 64)`` from 29.7 to 32.8 MiB of temporary memory, over glibc's 32 MiB mmap threshold, and made it 1.55x
  slower than with ``lengths`` (``python -m benchmarks.mask``, ``BENCHMARKS.md``). The tangent here is the
  same permutation written as a scatter with unique indices, ``out[inv[s, b], b] = t[s, b]``, which JAX
  transposes to the gather by ``inv``: reverse mode gathers both ways and needs no zeroed buffer. Forward mode
  (``jax.jvp``) runs that scatter.
  """
  return take_steps(a, idx)


@permute_steps.defjvp
def _permute_steps_jvp(primals, tangents):
  a, idx, inv = primals
  t = tangents[0]
  batch = jnp.indices(inv.shape[1:], sparse=True)  # each batch axis's index, broadcasting against inv
  where = (inv,) + tuple(b[None] for b in batch)
  dout = jnp.zeros_like(t).at[where].set(t, unique_indices=True, mode="promise_in_bounds")
  return take_steps(a, idx), dout


def _unroll_masked(cell, params, xs, carry, mask, lengths, resets, reset_carry, **options):
  """:func:`unroll` with a mask, on time-major ``xs``: the kept steps of each sequence are moved to its front
  (a stable sort keeps their order), which makes a right-padded sequence of ``mask.sum(0)`` steps; both paths
  run that, and the outputs go back to their steps (zeros at the skipped ones). A reset at a skipped step
  moves to the next kept step (:func:`boundaries_at_kept`)."""
  mask = within_lengths(mask, lengths)
  order = jnp.argsort(jnp.logical_not(mask).astype(jnp.int8), axis=0, stable=True)
  kept = jnp.sum(mask, axis=0, dtype=jnp.int32)
  if resets is not None:
    resets = take_steps(boundaries_at_kept(resets, mask), order)
  back = jnp.argsort(order, axis=0)
  carry, ys = unroll(
    cell, params, permute_steps(xs, order, back), carry, lengths=kept, resets=resets, reset_carry=reset_carry, **options
  )
  return carry, jax.tree.map(lambda v: permute_steps(v, back, order), ys)


def _expand(mask: Array, like: Array) -> Array:
  return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def reverse_valid(xs: Array, lengths: Array) -> Array:
  """Reverses the first ``lengths[b]`` steps of each sequence; padding stays in place.

  Args:
    xs: ``(T, *batch, F)``, time-major.
    lengths: ``(*batch,)`` integers in ``[0, T]`` (clipped to it).

  Returns:
    ``(T, *batch, F)`` with ``out[t, b] = xs[lengths[b] - 1 - t, b]`` for
    ``t < lengths[b]`` and ``xs[t, b]`` otherwise. It is its own inverse, and
    so is its derivative: reverse mode moves the cotangents back by the same
    gather, with no scatter (:func:`permute_steps`).
  """
  T = xs.shape[0]
  lengths = jnp.clip(lengths, 0, T)
  t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
  idx = jnp.where(t < lengths[None], lengths[None] - 1 - t, t)
  return permute_steps(xs, idx, idx)  # its own inverse


def default_unroll() -> int:
  """Steps per scan iteration that :func:`unroll` takes when given ``unroll=None``: 1 on the CPU, 8 elsewhere.

  On the CPU a loop iteration costs XLA next to nothing, and unrolling gained
  nothing in ``benchmarks.unroll``. On a GPU each iteration launches its
  kernels anew: 8 steps per iteration trained 1.6x to 2.8x faster than 1 on an
  H100 (``BENCHMARKS.md``). TPUs also run a loop iteration at a cost, so they
  get 8 too; that has not been measured.
  """
  return 1 if jax.default_backend() == "cpu" else 8


def unroll(
  cell: base.Cell,
  params: base.Params,
  xs: Array,
  carry: base.Carry | None = None,
  *,
  lengths: Array | None = None,
  mask: Array | None = None,
  resets: Array | None = None,
  reset_carry: base.Carry | None = None,
  reverse: bool = False,
  time_major: bool = True,
  unroll: int | bool | None = None,
  truncate: int | None = None,
  remat: bool | int = False,
  impl: str = "auto",
) -> tuple[base.Carry, Array]:
  """Runs ``cell`` over the time axis of ``xs`` with ``lax.scan``.

  Args:
    cell: a :class:`jaxrnn.Cell`.
    params: the cell's params.
    xs: ``(T, *batch, input_size)`` if ``time_major`` else ``(*batch, T, input_size)``.
    carry: the initial carry; None starts from ``cell.initial_carry(batch)``.
    lengths: optional ``(*batch,)`` integer lengths in ``[0, T]`` (right
      padding). Steps at or past a sequence's length leave its carry unchanged
      and output zeros, so ``final_carry`` is each sequence's carry after its
      own last step. Concrete lengths outside ``[0, T]`` are an error; traced
      ones (under ``jit``) are clipped to that range.
    mask: optional boolean ``(T, *batch)`` (``(*batch, T)`` if not
      ``time_major``): steps where it is False are skipped, anywhere in a
      sequence (gaps, not only padding): the carry passes through them
      unchanged and their outputs are zeros, as if the step were not in the
      sequence. With ``lengths`` too, a step runs where both allow it.
      ``truncate`` then counts the steps that run.
    resets: optional boolean ``(T, *batch)`` (``(*batch, T)`` if not
      ``time_major``), True where a new sequence starts (an episode boundary
      in reinforcement learning, Haiku's ``ResetCore``): nothing passes
      between step ``t - 1`` and step ``t``. Scanning forward, the carry that
      enters step ``t`` is replaced by ``reset_carry`` (at ``t = 0``, the given
      initial carry is); scanning in reverse, the carry that enters step
      ``t - 1`` is. A True at a step that does not run (``mask`` False or
      past the length) separates the steps that run around it. Gradients do
      not cross a reset.
    reset_carry: the carry a reset starts from, shaped like ``carry`` or
      broadcastable to it (e.g. one learned carry for every sequence); None:
      ``cell.initial_carry`` (zeros). Its gradient sums over the resets.
    reverse: run from the last valid step to the first. Outputs come back in
      input order; with ``lengths`` only the valid part is reversed (with
      ``mask``, the steps that run, in reverse order).
    time_major: the layout of ``xs`` and of the returned ``ys``.
    unroll: steps per scan iteration (``lax.scan``'s ``unroll``): an int >= 1,
      or ``True`` for all steps. None (the default) picks by JAX's default
      backend (:func:`default_unroll`): 1 on the CPU, 8 on a GPU or TPU.
    truncate: truncated BPTT: if set to ``k``, gradients flow back through
      the carry for at most ``k`` steps (the carry's gradient is cut before
      steps ``k, 2k, ...`` of each sequence, counted in processing order; the
      initial carry keeps its gradient). The forward pass is unchanged.
    remat: rematerialisation for long sequences: keep only the carry at the
      start of each segment of steps during the forward pass and recompute a
      segment's activations when its gradient is needed, so memory for the
      backward pass grows like ``T / k + k`` instead of ``T``. ``True`` uses
      segments of ``k = ceil(sqrt(T))`` steps; an int sets ``k``. Costs about
      one more forward pass; outputs and gradients are unchanged.
    impl: ``"auto"`` (default) runs the fast path for the cells made by
      jaxrnn's factories ``elman``, ``gru``, ``mgu``, ``lstm`` (but not
      an ``lstm`` with ``layer_norm`` and ``peepholes`` or ``proj_size``),
      ``lstm1997`` (but not with a callable squash) and ``grud``, also inside
      ``with_recurrent_mask`` and (but ``grud``) ``time_decay``: a plain scan
      when not differentiated, and a hand-written derivative that saves only
      the gate activations and computes the weight gradients as one matrix
      product per chunk of steps (see ``BENCHMARKS.md``); other cells run the
      reference ``lax.scan`` of ``cell.apply``. ``"reference"`` forces the
      ``lax.scan`` path, ``"fused"`` the fast path (an error where it does not
      apply). Both give the same outputs and derivatives (forward and reverse
      mode, any order) up to float rounding.

  Returns:
    ``(final_carry, ys)`` with ``ys`` shaped like ``xs`` but with the cell's
    output size as the last axis.

  Example:
    >>> import jax, jax.numpy as jnp, jaxrnn
    >>> cell = jaxrnn.gru(4)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> xs = jnp.ones((6, 2, 3))                      # (T, batch, input)
    >>> h, ys = jaxrnn.unroll(cell, params, xs, lengths=jnp.array([6, 2]))
    >>> bool(jnp.all(ys[2:, 1] == 0)), bool(jnp.allclose(h[1], ys[1, 1]))
    (True, True)
    >>> keep = jnp.array([True, False, False, True, True, True])[:, None].repeat(2, 1)
    >>> h_gap, ys_gap = jaxrnn.unroll(cell, params, xs, mask=keep)  # steps 1 and 2 skipped
    >>> h_cut, _ = jaxrnn.unroll(cell, params, xs[:4])              # the same 4 steps, back to back
    >>> bool(jnp.allclose(h_gap, h_cut)), bool(jnp.all(ys_gap[1:3] == 0))
    (True, True)
  """
  xs = check_sequence(xs, time_major=time_major)
  if truncate is not None:
    base.check_positive_int("truncate", truncate)
  base.check_choice("impl", impl, IMPLS)
  if not isinstance(remat, bool):
    base.check_positive_int("remat", remat)
  if unroll is None:
    unroll = default_unroll()
  elif not isinstance(unroll, bool):
    base.check_positive_int("unroll", unroll)
  if not time_major:
    xs = jnp.moveaxis(xs, -2, 0)
  T = xs.shape[0]
  batch_shape = tuple(xs.shape[1:-1])
  if carry is None:
    carry = cell.initial_carry(batch_shape, xs.dtype)
  if lengths is not None:
    lengths = check_lengths(lengths, batch_shape, T)
  if resets is not None:
    resets = check_mask(resets, batch_shape, T, time_major=time_major, name="resets", meaning=RESETS_MEANING)
    reset_carry = check_reset_carry(
      cell.initial_carry(batch_shape, xs.dtype) if reset_carry is None else reset_carry, carry
    )
  elif reset_carry is not None:
    raise base.InputError("reset_carry is given without resets: pass resets=, True where a new sequence starts")
  if mask is not None:
    mask = check_mask(mask, batch_shape, T, time_major=time_major)
    carry, ys = _unroll_masked(
      cell,
      params,
      xs,
      carry,
      mask,
      lengths,
      resets,
      reset_carry,
      reverse=reverse,
      unroll=unroll,
      truncate=truncate,
      remat=remat,
      impl=impl,
    )
    if not time_major:
      ys = jax.tree.map(lambda v: jnp.moveaxis(v, 0, -2), ys)
    return carry, ys

  if resets is not None:  # from here on: the steps whose incoming carry is reset, in the scan's input order
    resets = entering_resets(resets, lengths, reverse)
  if impl != "reference":
    # With lengths, reverse each sequence's valid steps, then scan forward.
    flip = lengths if reverse and lengths is not None else None
    out = fused.unroll(
      cell,
      params,
      xs if flip is None else reverse_valid(xs, flip),
      carry,
      lengths=lengths,
      reverse=reverse and flip is None,
      unroll=unroll,
      truncate=truncate,
      remat=remat,
      resets=resets,
      reset_carry=reset_carry,
    )
    if out is not None:
      carry, ys = out
      if flip is not None:
        ys = reverse_valid(ys, flip)
      if not time_major:
        ys = jnp.moveaxis(ys, 0, -2)
      return carry, ys
    if impl == "fused":
      raise base.InputError(
        "impl='fused' needs a cell with a fast-path kernel: jaxrnn's elman, gru, mgu, lstm, lstm1997 or grud as "
        "their factories make them (or with_recurrent_mask of one, or time_decay of one but grud; not wrapped "
        "otherwise; lstm with layer_norm and peepholes or proj_size has none, nor lstm1997 with a callable squash), "
        "and a non-empty batch and time"
      )

  apply = functools.partial(cell.apply, params)

  def step(carry: base.Carry, inp: tuple[Array, Array, Array | None]) -> tuple[base.Carry, Array]:
    x, t, r = inp
    carry_in = carry
    if truncate is not None:
      # Cut before processed steps k, 2k, ...; not before the first, so the initial carry keeps its
      # gradient (truncate >= T is full BPTT).
      cut = (t > 0) & (t % truncate == 0)
      carry_in = jax.tree.map(lambda c: jnp.where(cut, jax.lax.stop_gradient(c), c), carry)
    if r is not None:
      carry_in = jax.tree.map(lambda c, rc: jnp.where(_expand(r, c), rc, c), carry_in, reset_carry)
    new_carry, y = apply(carry_in, x)
    if lengths is not None:
      valid = t < lengths
      # Padding steps pass the uncut carry through, so the final carry's gradient is the unpadded sequence's.
      new_carry = jax.tree.map(lambda n, o: jnp.where(_expand(valid, n), n, o), new_carry, carry)
      y = jax.tree.map(lambda v: jnp.where(_expand(valid, v), v, jnp.zeros_like(v)), y)
    return new_carry, y

  def scan(carry, inputs, reverse):
    if remat:
      return _remat_scan(step, carry, inputs, T, reverse=reverse, unroll=unroll, segment=remat)
    return jax.lax.scan(step, carry, inputs, reverse=reverse, unroll=unroll)

  if lengths is None:
    # Processing-order step index, so `truncate` counts from the first processed step.
    ts = jnp.arange(T)[::-1] if reverse else jnp.arange(T)
    carry, ys = scan(carry, (xs, ts, resets), reverse)
  else:
    if reverse:
      xs = reverse_valid(xs, lengths)
    carry, ys = scan(carry, (xs, jnp.arange(T), resets), False)
    if reverse:
      ys = jax.tree.map(lambda v: reverse_valid(v, lengths), ys)
  if not time_major:
    ys = jax.tree.map(lambda v: jnp.moveaxis(v, 0, -2), ys)
  return carry, ys


def _remat_scan(step, carry, inputs, T: int, *, reverse: bool, unroll: int | bool, segment: bool | int):
  """``lax.scan(step, carry, inputs)`` in checkpointed segments of ``k`` steps (``ceil(sqrt(T))`` for True)."""
  k = fused.segment_length(T, segment)
  n = T // k
  main = jax.tree.map(lambda a: a[: n * k].reshape((n, k) + a.shape[1:]), inputs)
  tail = jax.tree.map(lambda a: a[n * k :], inputs)

  @jax.checkpoint
  def seg(carry, inp):
    return jax.lax.scan(step, carry, inp, reverse=reverse, unroll=unroll)

  def run_main(carry):
    carry, ys = jax.lax.scan(seg, carry, main, reverse=reverse)
    return carry, jax.tree.map(lambda a: a.reshape((n * k,) + a.shape[2:]), ys)

  if n * k == T:
    return run_main(carry)
  if reverse:
    carry, ys_t = seg(carry, tail)
    carry, ys_m = run_main(carry)
  else:
    carry, ys_m = run_main(carry)
    carry, ys_t = seg(carry, tail)
  return carry, jax.tree.map(lambda m, t: jnp.concatenate([m, t]), ys_m, ys_t)
