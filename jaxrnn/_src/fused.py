"""The fast path of :func:`jaxrnn.unroll`: whole-sequence kernels with a hand-written derivative.

A cell made by one of jaxrnn's factories describes itself with a private
attribute on its ``apply`` function (``_jaxrnn_fused = (kind, options)``);
:func:`unroll` turns that description into a :class:`Kernel`. Evaluated
without derivatives, the sequence is one plain ``lax.scan`` of the kernel's
step. Its derivative is a ``jax.custom_jvp`` rule (so forward mode, reverse
mode, ``vmap`` and higher derivatives all work) that runs the sequence in
chunks of ``K`` steps:

* the tangent of the weights enters a chunk as matrix products over its
  ``K * B`` rows (``x dW_x + h_{t-1} dW_h``); transposed for reverse mode, that
  is the weight gradient ``dW = sum_t h_{t-1}^T dz_t`` as one product per chunk
  after the chunk's backward steps, as cuDNN does, while each backward step
  does only the sequential part: one ``dz W_h^T`` product and a few elementwise
  operations on factors precomputed for the whole chunk;
* a ``jax.checkpoint`` policy keeps only the gate activations (and the LSTM's
  cell state) of each step for the backward pass; the factors of the tangent
  are recomputed from them, a chunk at a time, with elementwise operations.
  On XLA CPU the temporary buffers of a training step come in one allocation
  that is page-faulted afresh on every call once it is larger than glibc's
  32 MiB mmap threshold, so temporary memory costs time as well as space;
* the steps of a chunk are loop iterations, not unrolled Python: XLA CPU drops
  optimization barriers and would otherwise fuse the elementwise chains that
  run across steps (``c_t = f c_{t-1} + i g``), recomputing them once for every
  later step that reads them;
* with ``remat`` only the carry at the start of each segment of whole chunks is
  kept, and a segment's forward pass is recomputed when its gradient is needed.

Every option of :func:`jaxrnn.unroll` (``lengths``, ``reverse``, ``truncate``,
any batch shape, ``vmap``) has the semantics of the reference ``lax.scan``
path; ``tests/test_fused.py`` checks outputs and gradients against it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jax.custom_derivatives import SymbolicZero

from jaxrnn._src import cells as cells_lib
from jaxrnn._src import lstm1997 as lstm1997_lib

Array = jax.Array
Params = Any
Carry = Any

SAVED = "jaxrnn_fused_saved"  # the checkpoint name of the values kept for the backward pass
RECURRENT_MASK_ATTR = "_jaxrnn_recurrent_mask_value"  # on a with_recurrent_mask cell's apply: its mask
DECAY_ATTR = "_jaxrnn_decay_of"  # on a time_decay cell's apply: (the wrapped cell, delta_as_input)
CHUNK_ELEMENTS = 65536  # steps x batch x hidden units in a chunk (times the kernel's chunk_scale)
MAPPED_SLACK = 4  # under vmap, chunks are sized for every example's rows once they hold this many times the target


class Kernel(NamedTuple):
  """One cell's pieces for the fast path, on ``(B, F)`` arrays.

  Attributes:
    step: ``(params, carry, x_t, m) -> (carry, y, saved)``; ``saved`` is a tuple of arrays kept for
      the derivative (every cell here outputs ``y = h``).
    carry_of: ``(params, saved) -> carry``: the carry each step of a chunk left, stacked ``(K, B, ...)``,
      from its saved values.
    knowns: ``(params, prev, saved, m) -> (h_prev, knowns)`` from the carry that entered each step of a
      chunk (``prev``, stacked ``(K, B, ...)``: the previous step's carry, or the initial, reset or decayed
      one: :func:`_entered`) and the steps' saved values: the ``h`` that entered each step and the
      factors of the step's tangent, computed with vectorised elementwise operations only.
    lin: ``(params, dparams, x (K, B, I), dx, h_prev, knowns, m) -> lin``: the tangent terms that are
      matrix products over all steps of a chunk (``dx W_x + x dW_x + db + h_prev dW_h``), stacked
      ``(K, B, ...)``; tangents may be ``SymbolicZero``.
    tangent: ``(params, dparams, knowns_t, dcarry, lin_t, w_hT, m) -> dcarry``, the sequential part of one
      step's tangent, linear in ``dcarry`` and ``lin_t``, with every operation involving a tangent
      (so that nothing of it is evaluated, or kept, in the forward pass of reverse mode).
    h_of: ``carry -> y``, the step's output as a function of its carry.
    h_leaf: the index, in ``jax.tree.leaves(carry)``, of the leaf that is the step's output ``h_of(carry)``
      (None if no leaf is: the output is a part of one). Its tangent is not held through the padding steps
      after a sequence's length step by step, but taken from the outputs' after each chunk (:func:`_pair`).
    chunk_scale: a chunk holds about ``chunk_scale * CHUNK_ELEMENTS`` steps x batch x hidden units
      (:func:`chunk_length`). The Elman kernel, whose per-step buffers are one ``(B, H)`` array each where
      the gated cells' are up to ``(B, 4 H)``, trains faster with 4 (``python -m benchmarks.chunk``).
    infer_step: None, or ``(params, carry, x_t, m, rows)``: ``step`` computing the same values another way,
      taken where the sequence is evaluated without derivatives (the plain scan of :func:`sequence`'s primal);
      ``rows`` is how many rows the step's products hold over every example an enclosing ``vmap`` runs. The
      derivative's forward pass always takes ``step``, so training computes the same numbers either way.
    transposed: None, or ``(params, B) -> None or transposed_step``: where it gives a step, a sequence evaluated
      without derivatives, with no resets or decay (lengths, and so masks, are fine: the scan holds each
      column's carry through its padding), is scanned on transposed arrays, the carry's leaves ``(F, B)`` and
      the inputs ``(K, I, B)``: ``transposed_step(params, carry, x_t, m) -> (carry, y)`` with ``m`` transposed
      too (``B``: the rows within one vmapped example).

  ``m`` is the recurrent-dropout mask ``(B, H)`` or None: every recurrent product reads ``h * m`` (and its
  tangent ``dh * m``) instead of ``h``, through :func:`_masked`; the state's own update reads ``h``.
  """

  step: Callable[..., tuple[Carry, Array, tuple[Array, ...]]]
  carry_of: Callable[..., Carry]
  knowns: Callable[..., tuple[Array, Any]]
  lin: Callable[..., Any]
  tangent: Callable[..., Carry]
  h_of: Callable[[Carry], Array]
  chunk_scale: int = 1
  h_leaf: int | None = 0
  infer_step: Callable[..., tuple[Carry, Array, tuple[Array, ...]]] | None = None
  transposed: Callable[[Any, int], Callable[..., tuple[Carry, Array]] | None] | None = None


# ----------------------------------------------------------------------------
# Shared pieces


def _zero(t: Any) -> bool:
  return t is None or isinstance(t, SymbolicZero)


def _row(v: Array) -> Array:
  """A ``(F,)`` vector as a ``(1, F)`` row, to broadcast against ``(B, F)`` without rank promotion."""
  return v.reshape((1,) + v.shape)


def _add(*terms: Array | None) -> Array | None:
  """The sum of the terms that are not None; None if all are."""
  out = None
  for t in terms:
    if t is not None:
      out = t if out is None else out + t
  return out


def _mm(a: Array, w: Any) -> Array | None:
  """``a @ w`` over the last axis of ``a: (K, B, F)``, or None when ``w`` is a symbolic zero."""
  if _zero(w):
    return None
  out = a.reshape(-1, a.shape[-1]) @ w
  return out.reshape(a.shape[:-1] + (w.shape[-1],))


def _project(w_x: Array, b: Array | None, x: Array) -> Array:
  z = x @ w_x
  return z if b is None else z + _row(b)


def _masked(h: Array, m: Array | None) -> Array:
  """``h`` (or its tangent) as the recurrent products read it: ``h * m``, ``m: (B, H)`` constant over time,
  broadcast over the steps of ``h: (K, B, H)``; ``h`` itself without a mask."""
  return h if m is None else h * cells_lib._bcast(m, h)


def _xh(p: Any, x: Array, h: Array) -> Array:
  """``x W_x + h W_h + b``, two products per step."""
  z = x @ p.w_x + h @ p.w_h
  return z if p.b is None else z + _row(p.b)


# The largest stacked kernel [W_x; W_h] (bytes) for which :func:`_xh_joint` takes one product per step.
JOINT_MAX_BYTES = 1 << 20
# The GRU's and the MGU's inference take one product per step where :func:`_joint_reset_after` says so.
JOINT_MAX_ZEROS_WORK = 1 << 15


def _joint_reset_after(rows: int, I: int, H: int) -> bool:
  """Whether the GRU's (reset after the product) and the MGU's inference take one product per step, ``[x, h]``
  with ``[[W_x_s, W_x_n, 0], [W_h_s, 0, W_h_n]]``, a kernel with an ``(I + H, H)`` block of zeros, instead of two
  (``rows``: the product's rows; :func:`_reset_after_infer`).

  Where the zeros' multiply-adds per step, ``rows (I + H) H``, are at most ``JOINT_MAX_ZEROS_WORK``, one product saves
  more per step than it adds: at (B, T, I, H) = (32, 100, 2, 8) inference took 0.33x the time of two products, at
  (32, 100, 8, 16) and (8, 100, 8, 32) 0.84x and 0.89x; above it, one product was level or slower (1.00x at (32,
  100, 8, 32), 1.04x at (64, 100, 16, 32)). At ``H = 8`` it pays at any size (0.18x at (1024, 100, 8, 8), 0.36x at
  (256, 100, 64, 8)): there the two-product step's elementwise fusion comes out of XLA CPU's compiler unvectorised
  (scalar code in the LLVM IR of jax 0.10.2: ``python -m benchmarks.vectorised``) and the one-product step's does
  not. At ``H = 1`` one product was slower (1.60x at (32, 100, 2, 1)). Those are the GRU's times; the MGU's, whose
  zeros are a third of its kernel where the GRU's are a quarter, under the same rule: 0.79x at (32, 100, 2, 8),
  0.94x to 1.04x at small shapes with H = 16 and 32, unchanged at larger ones. ``python -m benchmarks.joint_product
  --cells gru`` (and ``mgu``), ``BENCHMARKS.md`` (section *joint_product*)."""
  return H >= 2 and (H <= 8 or rows * (I + H) * H <= JOINT_MAX_ZEROS_WORK)


def _transposed_reset_after(B: int, H: int) -> bool:
  """Whether the GRU's and the MGU's inference take their step transposed, features by batch (``B``: the step's
  rows, within one vmapped example), with :func:`_joint_reset_after`'s one product.

  XLA CPU's compiler leaves the step's elementwise fusion unvectorised (scalar code) at some widths below 16
  (``python -m benchmarks.vectorised``): its loops run along the features. Transposed they run along the batch,
  which pays from 32 rows on: inference took 0.26x to 0.62x the two-product time at (B, T, I, H) = (32, 100, 8,
  12), (256, 100, 8, 12), (128, 100, 16, 15) and (64, 100, 8, 10), where the untransposed one product took 0.90x
  to 1.01x; at (16, 100, 8, 10), 16 rows, an earlier version of this rule that took it there was 1.07x slower.
  The MGU's: 0.78x at (32, 100, 8, 12), 0.28x at (256, 100, 8, 12). ``python -m benchmarks.joint_product --cells
  gru`` (and ``mgu``), ``BENCHMARKS.md`` (section *joint_product*)."""
  return 8 < H < 16 and B >= 32


def _xh_joint(p: Any, x: Array, h: Array) -> Array:
  """``x W_x + h W_h + b`` as one product of ``[x, h]`` and ``[W_x; W_h]`` per step, for kernels up to
  ``JOINT_MAX_BYTES`` (XLA stacks the weights once per call, outside the loop); :func:`_xh` above that.

  In the LSTM's inference one product per step took 0.85x to 0.90x the time of two at (B, T, I, H) = (64, 100,
  32, 128) and (16, 1000, 8, 64), and 0.66x at (32, 100, 2, 8) (kernels of 320, 72 and 3 KiB; two runs of
  ``python -m benchmarks.joint_product``); at (8, 200, 64, 512), a 4.5 MiB kernel, an ad-hoc run found it 1.04x
  slower, hence the limit. The derivative keeps two products (in training one product gained nothing, and
  training's numbers stay those of earlier versions), and so does the Elman kernel (no gain, ad-hoc)."""
  rows, cols = p.w_x.shape[0] + p.w_h.shape[0], p.w_h.shape[1]
  if rows * cols * p.w_h.dtype.itemsize > JOINT_MAX_BYTES or _TWO_PRODUCTS.get():
    return _xh(p, x, h)
  z = jnp.concatenate([x, h], axis=-1) @ jnp.concatenate([p.w_x, p.w_h], axis=0)
  return z if p.b is None else z + _row(p.b)


def _project_tangent(p: Any, dp: Any, x: Array, dx: Any) -> Array | None:
  """The tangent of ``x W_x + b`` on ``x: (K, B, I)``: ``dx W_x + x dW_x + db``."""
  return _affine_tangent(p.w_x, dp.w_x, None if p.b is None else dp.b, x, dx)


def _affine_tangent(w_x: Array, dw_x: Any, db: Any, x: Array, dx: Any) -> Array | None:
  """:func:`_project_tangent` from its parts; ``db`` None or a symbolic zero where the bias has no tangent."""
  terms = [None if _zero(dx) else _mm(dx, w_x), _mm(x, dw_x)]
  if not _zero(db):
    terms.append(jnp.broadcast_to(db.reshape(1, 1, -1), x.shape[:2] + db.shape))
  return _add(*terms)


def _entered(carries: Any, carry0: Any, r: Array | None, rc: Any) -> Any:
  """The carry that entered each step of a chunk, stacked ``(K, B, ...)``, from the carries the steps left
  (``carries``, stacked): the previous step's, ``carry0`` before the first, and ``rc`` where ``r: (K, B)``
  (None: no resets) resets it."""
  prev = jax.tree.map(lambda a, a0: jnp.concatenate([a0[None], a[:-1]], axis=0), carries, carry0)
  if r is None:
    return prev
  return jax.tree.map(lambda a, a0: jnp.where(r[..., None], a0[None], a), prev, rc)


def _blk(a: Array | None, k: int, H: int) -> Array | None:
  return None if a is None else a[..., k * H : (k + 1) * H]


def _rec(dh: Array, w_hT: Array) -> Array:
  """``dh @ W_h`` in the tangent, from ``W_h^T``: its transpose (the backward step's ``ct @ W_h^T``) is
  then a product with a plain row-major matrix, which XLA CPU runs 2-3x faster than one contracting
  the rows of ``W_h``."""
  return jax.lax.dot_general(dh, w_hT, (((dh.ndim - 1,), (1,)), ((), ())))


def _block_sum(a: Array, n: int) -> Array:
  """The sum of the ``n`` equal blocks of the last axis of ``a: (B, n H)``."""
  return jnp.sum(a.reshape(a.shape[:-1] + (n, a.shape[-1] // n)), axis=-2)


def _sigmoid(x: Array) -> Array:
  """The logistic sigmoid as ``(1 + tanh(x / 2)) / 2``: one transcendental instead of an exp and a division."""
  return 0.5 * jnp.tanh(0.5 * x) + 0.5


# ----------------------------------------------------------------------------
# Elman


def _elman_kernel(hidden_size: int, nonlinearity: str) -> Kernel:
  del hidden_size
  relu = nonlinearity == "relu"

  def step(p, h, x, m):
    z = _xh(p, x, _masked(h, m))
    h = jax.nn.relu(z) if relu else jnp.tanh(z)
    return h, h, (h,)

  def carry_of(p, saved):
    return saved[0]

  def knowns(p, h_prev, saved, m):
    (h,) = saved
    d = (h > 0).astype(h.dtype) if relu else 1.0 - h * h
    return h_prev, (d,)

  def lin(p, dp, x, dx, h_prev, kn, m):
    return _add(_project_tangent(p, dp, x, dx), _mm(_masked(h_prev, m), dp.w_h))

  def tangent(p, dp, kn, dh, lin_t, wt, m):
    return _add(lin_t, _rec(_masked(dh, m), wt)) * kn[0]

  return Kernel(step, carry_of, knowns, lin, tangent, lambda h: h, chunk_scale=4)


def _transposed_lstm(B: int, H: int) -> bool:
  """Whether the LSTM's inference (without a projection) takes its step transposed, features by batch (``B``: the
  step's rows, within one vmapped example), as :func:`_transposed_reset_after` for the GRU.

  At ``H < 16`` XLA CPU leaves the peephole LSTM's elementwise fusions unvectorised (``python -m
  benchmarks.vectorised``); transposed they run along the batch. Inference took 0.30x to 0.39x the two-product
  time with peepholes at (B, T, I, H) = (32, 100, 2, 8), (32, 100, 8, 12), (256, 100, 8, 12) and (64, 100, 8, 10),
  where one untransposed product took 0.89x to 0.91x, and 0.50x to 0.64x without them, against 0.63x to 0.89x; at
  (16, 100, 8, 12), untransposed with 16 rows, 0.66x and 0.90x (``python -m benchmarks.joint_product --cells
  lstm,lstm_peepholes``, ``BENCHMARKS.md``, section *joint_product*). The gates are computed per block here (a
  sigmoid or ``tanh`` over each), which in this layout was faster than the untransposed step's one full-width
  sigmoid (ad hoc, 2026-11-24)."""
  return H < 16 and B >= 32


def _reset_after_infer(step, p, h, x, m, rows, H, S, *, reset):
  """The inference step of a gated cell whose candidate reads its recurrent product after the reset (the GRU with
  ``reset_after``, the MGU): ``s = sigmoid(x W_x_s + h W_h_s + b_s)`` (``S`` wide), ``n = tanh(x W_x_n + b_n + r
  (h W_h_n + b_hn))`` with ``r`` the first ``H`` of ``s`` (1 without ``reset``), ``h' = (1 - z) n + z h`` with ``z``
  the last ``H``. Where :func:`_transposed_reset_after` or :func:`_joint_reset_after` allow it, one product of
  ``[x, h]`` with ``[[W_x_s, W_x_n, 0], [W_h_s, 0, W_h_n]]`` per step (the candidate's input and recurrent parts
  kept apart by a block of zeros; XLA builds the kernel once per call), transposed where the first says so; else
  ``step``."""
  I, B = x.shape[-1], x.shape[0]
  transposed = _transposed_reset_after(B, H)
  if _TWO_PRODUCTS.get() or not (transposed or _joint_reset_after(rows, I, H)):
    return step(p, h, x, m)
  dt = p.w_h.dtype
  w = jnp.concatenate(
    [
      jnp.concatenate([p.w_x, jnp.zeros((I, H), dt)], axis=1),
      jnp.concatenate([p.w_h[:, :S], jnp.zeros((H, H), dt), p.w_h[:, S:]], axis=1),
    ],
    axis=0,
  )
  xh = jnp.concatenate([x, _masked(h, m)], axis=-1)
  # Transposed, the gates are (S + 2 H, B) and the elementwise operations run along the batch (_transposed_reset_after).
  g = w.T @ xh.T if transposed else xh @ w
  if p.b is not None or p.b_hn is not None:
    b = jnp.concatenate(
      [jnp.zeros((S + H,), dt) if p.b is None else p.b, jnp.zeros((H,), dt) if p.b_hn is None else p.b_hn]
    )
    g = g + (b[:, None] if transposed else _row(b))

  def cols(a: Array, lo: int, hi: int) -> Array:  # the features lo:hi, whichever way round
    return a[lo:hi] if transposed else a[:, lo:hi]

  s = _sigmoid(cols(g, 0, S))
  hn = cols(g, S + H, S + 2 * H)
  n = jnp.tanh(cols(g, S, S + H) + (cols(s, 0, H) * hn if reset else hn))
  z = cols(s, S - H, S)
  h = ((1.0 - z) * n + z * h.T).T if transposed else (1.0 - z) * n + z * h
  return h, h, ()


# ----------------------------------------------------------------------------
# GRU


def _gru_kernel(hidden_size: int, reset_after: bool) -> Kernel:
  H = hidden_size

  def step(p, h, x, m):
    gx = _project(p.w_x, p.b, x)
    hm = _masked(h, m)  # the products read it; the update below reads h
    if reset_after:
      gh = hm @ p.w_h
      rz = _sigmoid(gx[:, : 2 * H] + gh[:, : 2 * H])
      hn = gh[:, 2 * H :]
      if p.b_hn is not None:
        hn = hn + _row(p.b_hn)
      r, z = rz[:, :H], rz[:, H:]
      n = jnp.tanh(gx[:, 2 * H :] + r * hn)
      h = (1.0 - z) * n + z * h
      return h, h, (rz, n, hn, h)
    rz = _sigmoid(gx[:, : 2 * H] + hm @ p.w_h[:, : 2 * H])
    r, z = rz[:, :H], rz[:, H:]
    n = jnp.tanh(gx[:, 2 * H :] + (r * hm) @ p.w_h[:, 2 * H :])
    h = (1.0 - z) * n + z * h
    return h, h, (rz, n, h)

  def carry_of(p, saved):
    return saved[-1]

  def knowns(p, h_prev, saved, m):
    rz, n = saved[0], saved[1]
    r, z = rz[..., :H], rz[..., H:]
    drz_f, dn_f = rz - rz * rz, 1.0 - n * n
    if reset_after:
      # dh' = sum over the r, z, n blocks of v * q, with v = a + dgh * [1, 1, r] (see tangent).
      dr_f, dz_f = drz_f[..., :H], drz_f[..., H:]
      n_omz = dn_f * (1.0 - z)
      q = jnp.concatenate([dr_f * saved[2] * n_omz, dz_f * (h_prev - n), n_omz], axis=-1)
      rr = jnp.concatenate([jnp.ones_like(rz), r], axis=-1)
      return h_prev, (q, rr, z)
    return h_prev, (drz_f, r, z, 1.0 - z, dn_f, h_prev - n, h_prev)

  def lin(p, dp, x, dx, h_prev, kn, m):
    a = _project_tangent(p, dp, x, dx)
    if reset_after:
      rl = _mm(_masked(h_prev, m), dp.w_h)
      if p.b_hn is not None and not _zero(dp.b_hn):
        shape = h_prev.shape[:2] + (3 * H,)
        rl = _add(rl, jnp.broadcast_to(jnp.concatenate([jnp.zeros((2 * H,), dp.b_hn.dtype), dp.b_hn]), shape))
      return a, rl
    if _zero(dp.w_h):
      return a, None, None
    hm = _masked(h_prev, m)
    return a, _mm(hm, dp.w_h[:, : 2 * H]), _mm(kn[1] * hm, dp.w_h[:, 2 * H :])

  def tangent(p, dp, kn, dh, lin_t, wt, m):
    a = lin_t[0]
    if reset_after:
      # Full-width operations and a sum over gate blocks, whose transpose is a broadcast (slices
      # of tangents would transpose to pads and adds, several fusions per backward step).
      q, rr, z = kn
      v = _add(a, _add(lin_t[1], _rec(_masked(dh, m), wt)) * rr)
      return _block_sum(v * q, 3) + z * dh
    drz_f, r, z, omz, dn_f, hpn, last = kn
    drz = _add(_blk(a, 0, 2 * H), lin_t[1], _rec(_masked(dh, m), wt[: 2 * H])) * drz_f
    drh = drz[:, :H] * last + r * dh  # the tangent of r * h; the product reads it masked
    dn = _add(_blk(a, 2, H), lin_t[2], _rec(_masked(drh, m), wt[2 * H :])) * dn_f
    return drz[:, H:] * hpn + dn * omz + z * dh

  def infer_step(p, h, x, m, rows):
    if not reset_after:
      return step(p, h, x, m)
    return _reset_after_infer(step, p, h, x, m, rows, H, 2 * H, reset=True)

  return Kernel(step, carry_of, knowns, lin, tangent, lambda h: h, infer_step=infer_step)


# ----------------------------------------------------------------------------
# MGU


def _mgu_kernel(hidden_size: int, reset_gate: bool) -> Kernel:
  H = hidden_size

  def step(p, h, x, m):
    gx = _project(p.w_x, p.b, x)
    gh = _masked(h, m) @ p.w_h  # the update below reads h itself
    f = _sigmoid(gx[:, :H] + gh[:, :H])
    hn = gh[:, H:]
    if reset_gate:
      if p.b_hn is not None:
        hn = hn + _row(p.b_hn)
      n = jnp.tanh(gx[:, H:] + f * hn)
    else:
      n = jnp.tanh(gx[:, H:] + hn)
    h = (1.0 - f) * n + f * h
    return h, h, (f, n, hn, h)

  def carry_of(p, saved):
    return saved[-1]

  def knowns(p, h_prev, saved, m):
    f, n, hn, _ = saved
    df_f, n_omf = f - f * f, (1.0 - n * n) * (1.0 - f)
    # dh' = sum over the f, n blocks of v * q + f dh, with v = a + dgh * [1, f] (or [1, 1]).
    if reset_gate:
      q = jnp.concatenate([df_f * (h_prev - n + hn * n_omf), n_omf], axis=-1)
      ff = jnp.concatenate([jnp.ones_like(f), f], axis=-1)
    else:
      q = jnp.concatenate([df_f * (h_prev - n), n_omf], axis=-1)
      ff = None
    return h_prev, (q, ff, f)

  def lin(p, dp, x, dx, h_prev, kn, m):
    rl = _mm(_masked(h_prev, m), dp.w_h)
    if reset_gate and p.b_hn is not None and not _zero(dp.b_hn):
      shape = h_prev.shape[:2] + (2 * H,)
      rl = _add(rl, jnp.broadcast_to(jnp.concatenate([jnp.zeros((H,), dp.b_hn.dtype), dp.b_hn]), shape))
    return _project_tangent(p, dp, x, dx), rl

  def tangent(p, dp, kn, dh, lin_t, wt, m):
    q, ff, f = kn
    dgh = _add(lin_t[1], _rec(_masked(dh, m), wt))
    v = _add(lin_t[0], dgh * ff if reset_gate else dgh)
    return _block_sum(v * q, 2) + f * dh

  def infer_step(p, h, x, m, rows):
    return _reset_after_infer(step, p, h, x, m, rows, H, H, reset=reset_gate)

  return Kernel(step, carry_of, knowns, lin, tangent, lambda h: h, infer_step=infer_step)


# ----------------------------------------------------------------------------
# LSTM


class _LSTMLayout(NamedTuple):
  """Where the LSTM's gate blocks lie along the last axis (PyTorch's order ``i, f, g, o``; no ``f`` without a
  forget gate). The cell input ``g`` is computed as ``2 sigmoid(2 z) - 1 = tanh(z)``, so that one full-width
  sigmoid covers every gate: ``scale(dtype, 2.0)`` is the row of factors of ``z`` for it."""

  H: int
  I_: int
  F_: int | None
  G_: int
  O_: int
  gates: int

  @classmethod
  def of(cls, H: int, forget_gate: bool) -> _LSTMLayout:
    return cls(H, 0, 1, 2, 3, 4) if forget_gate else cls(H, 0, None, 1, 2, 3)

  def blk(self, a: Array | None, k: int | None) -> Array | None:
    return None if k is None else _blk(a, k, self.H)

  def scale(self, dtype: Any, g: float) -> Array:
    """``(1, gates H)``: ``g`` over the cell input's block, 1 elsewhere."""
    return jnp.concatenate([jnp.full((self.H,), g if k == self.G_ else 1.0, dtype) for k in range(self.gates)])[None]


def _lstm_kernel(hidden_size: int, forget_gate: bool, peepholes: bool) -> Kernel:
  L = _LSTMLayout.of(hidden_size, forget_gate)
  I_, F_, G_, O_, blk, scale = L.I_, L.F_, L.G_, L.O_, L.blk, L.scale

  def step(p, carry, x, m, xh=_xh):
    h, c = carry
    z = xh(p, x, _masked(h, m))
    w = p.w_peep
    if w is None:
      s = _sigmoid(z * scale(z.dtype, 2.0))
      i, sg, o = blk(s, I_), blk(s, G_), blk(s, O_)
      c = (blk(s, F_) * c + i * (2.0 * sg - 1.0)) if forget_gate else (c + i * (2.0 * sg - 1.0))
    else:
      i = _sigmoid(blk(z, I_) + _row(w[0]) * c)
      sg = _sigmoid(2.0 * blk(z, G_))
      gates = [i]
      if forget_gate:
        f = _sigmoid(blk(z, F_) + _row(w[1]) * c)
        c = f * c + i * (2.0 * sg - 1.0)
        gates.append(f)
      else:
        c = c + i * (2.0 * sg - 1.0)
      o = _sigmoid(blk(z, O_) + _row(w[-1]) * c)
      s = jnp.concatenate([*gates, sg, o], axis=-1)
    h = o * jnp.tanh(c)
    if p.w_proj is not None:  # the LSTM with a projection (Sak et al. 2014)
      h = h @ p.w_proj
    return cells_lib.LSTMCarry(h, c), h, (s, c)

  def carry_of(p, saved):
    s, c = saved
    h = blk(s, O_) * jnp.tanh(c)
    return cells_lib.LSTMCarry(h if p.w_proj is None else h @ p.w_proj, c)

  def knowns(p, prev, saved, m):
    s, c = saved
    h_prev, c_prev = prev
    i, sg, o = blk(s, I_), blk(s, G_), blk(s, O_)
    tc = jnp.tanh(c)
    out = o * tc  # h, before a projection
    dact = (s - s * s) * scale(s.dtype, 4.0)[None]  # d(gate)/d(z) for every gate, d(g)/d(z) for the cell input
    kn = {"dact": dact, "g": 2.0 * sg - 1.0, "i": i, "c_prev": c_prev, "tc": tc, "oc": o * (1.0 - tc * tc)}
    if forget_gate:
      kn["f"] = blk(s, F_)
    if peepholes:
      kn["c"] = c
    if p.w_proj is not None:
      kn["out"] = out
    return h_prev, kn

  def lin(p, dp, x, dx, h_prev, kn, m):
    gates = _add(_project_tangent(p, dp, x, dx), _mm(_masked(h_prev, m), dp.w_h))
    if p.w_proj is None:
      return gates
    return gates, _mm(kn["out"], dp.w_proj)  # the projection's weight tangent, one product per chunk

  def tangent(p, dp, kn, dcarry, lin_t, wt, m):
    dh, dc = dcarry
    lin_t, lin_proj = lin_t if p.w_proj is not None else (lin_t, None)
    du = _add(lin_t, _rec(_masked(dh, m), wt))
    w, dw = p.w_peep, dp.w_peep
    if w is None:
      d = du * kn["dact"]
      di, dg, do = blk(d, I_), blk(d, G_), blk(d, O_)
      df = blk(d, F_) if forget_gate else None
    else:
      peep = not _zero(dw)
      di = _add(blk(du, I_), _row(w[0]) * dc, _row(dw[0]) * kn["c_prev"] if peep else None) * blk(kn["dact"], I_)
      dg = blk(du, G_) * blk(kn["dact"], G_)
      df = None
      if forget_gate:
        df = _add(blk(du, F_), _row(w[1]) * dc, _row(dw[1]) * kn["c_prev"] if peep else None) * blk(kn["dact"], F_)
    dc_keep = dc * kn["f"] if forget_gate else dc
    dc = _add(df * kn["c_prev"] if forget_gate else None, dc_keep, di * kn["g"], dg * kn["i"])
    if w is not None:
      peep = not _zero(dw)
      do = _add(blk(du, O_), _row(w[-1]) * dc, _row(dw[-1]) * kn["c"] if peep else None) * blk(kn["dact"], O_)
    dh = do * kn["tc"] + dc * kn["oc"]
    if p.w_proj is not None:
      dh = _add(dh @ p.w_proj, lin_proj)
    return cells_lib.LSTMCarry(dh, dc)

  def transposed_step(wt, p, carry, x, m):
    """The inference step on transposed arrays: carry leaves ``(H, B)``, ``x: (I, B)``, ``m: (H, B)`` or None; the
    gates ``(G H, B)`` come from one product of ``wt = [W_x; W_h]^T`` and ``[x; h]``, and the elementwise operations
    run along the batch (:func:`_transposed_lstm`). Returns ``(carry, h)``."""
    h, c = carry
    z = wt @ jnp.concatenate([x, h if m is None else h * m], axis=0)
    if p.b is not None:
      z = z + p.b[:, None]

    def rows(a: Array, k: int) -> Array:  # gate k's block
      return a[k * L.H : (k + 1) * L.H]

    w = p.w_peep  # per gate, not one full-width sigmoid: each gate's block is a row block here
    i = _sigmoid(rows(z, I_) if w is None else rows(z, I_) + w[0][:, None] * c)
    if F_ is not None:
      c = _sigmoid(rows(z, F_) if w is None else rows(z, F_) + w[1][:, None] * c) * c
    c = c + i * jnp.tanh(rows(z, G_))
    o = _sigmoid(rows(z, O_) if w is None else rows(z, O_) + w[-1][:, None] * c)
    h = o * jnp.tanh(c)
    return cells_lib.LSTMCarry(h, c), h

  def transposed(p, B):
    if p.w_proj is None and not _TWO_PRODUCTS.get() and _transposed_lstm(B, L.H):
      # The kernel transposed once, before the loop, as a row-major array: XLA would otherwise fold the transpose
      # into the product's dimensions, a form its CPU library calls (YNNPACK) do not take.
      wt = jnp.concatenate([p.w_x, p.w_h], axis=0).T
      return functools.partial(transposed_step, jax.lax.optimization_barrier(wt))
    return None

  def infer_step(p, carry, x, m, rows):
    del rows  # one product costs no more arithmetic than two: its limit is the kernel's size alone
    return step(p, carry, x, m, xh=_xh_joint)

  return Kernel(
    step, carry_of, knowns, lin, tangent, lambda carry: carry.h, infer_step=infer_step, transposed=transposed
  )


# ----------------------------------------------------------------------------
# Layer-normalised LSTM (Ba et al. 2016), without peepholes


def _ln_tangent(du: Array | None, n: Array, r: Array, gamma: Array, dp: Any = None) -> Array | None:
  """The tangent of ``gamma * n + beta`` (``n`` the normalised ``u``, ``r`` its ``1 / sigma``):
  ``gamma r (du - mean(du) - n mean(n du)) + n dgamma + dbeta``; ``dp`` holds ``dgamma, dbeta`` (None: their
  terms are counted elsewhere)."""
  dn = None
  if du is not None:
    mean, mean_n = jnp.mean(du, axis=-1, keepdims=True), jnp.mean(n * du, axis=-1, keepdims=True)
    dn = cells_lib._bcast(gamma, du) * r * (du - mean - n * mean_n)
  if dp is None:
    return dn
  ds = None if _zero(dp.scale) else n * cells_lib._bcast(dp.scale, n)
  db = None if _zero(dp.shift) else jnp.broadcast_to(cells_lib._bcast(dp.shift, n), n.shape)
  return _add(dn, ds, db)


def _lstm_ln_kernel(hidden_size: int, forget_gate: bool, eps: float) -> Kernel:
  L = _LSTMLayout.of(hidden_size, forget_gate)
  I_, F_, G_, O_, blk, scale = L.I_, L.F_, L.G_, L.O_, L.blk, L.scale

  def ln(u, q):
    return cells_lib._layer_norm(u, q, eps)

  def project(p, x):
    z = ln(x @ p.w_x, p.norm.x)
    return z if p.b is None else z + cells_lib._bcast(p.b, z)

  def step(p, carry, x, m):
    h, c = carry
    z = project(p, x) + ln(_masked(h, m) @ p.w_h, p.norm.h)
    s = _sigmoid(z * scale(z.dtype, 2.0))
    i, sg, o = blk(s, I_), blk(s, G_), blk(s, O_)
    c = (blk(s, F_) * c + i * (2.0 * sg - 1.0)) if forget_gate else (c + i * (2.0 * sg - 1.0))
    h = o * jnp.tanh(ln(c, p.norm.c))
    return cells_lib.LSTMCarry(h, c), h, (s, c)

  def carry_of(p, saved):
    s, c = saved
    return cells_lib.LSTMCarry(blk(s, O_) * jnp.tanh(ln(c, p.norm.c)), c)

  def knowns(p, prev, saved, m):
    s, c = saved
    h_prev, c_prev = prev
    i, sg, o = blk(s, I_), blk(s, G_), blk(s, O_)
    nc, rc = cells_lib._normalize(c, eps)
    tc = jnp.tanh(cells_lib._affine(nc, p.norm.c))
    nh, rh = cells_lib._normalize(
      _mm(_masked(h_prev, m), p.w_h), eps
    )  # recomputed a chunk at a time: one large product
    kn = {
      "dact": (s - s * s) * scale(s.dtype, 4.0)[None],
      "g": 2.0 * sg - 1.0,
      "i": i,
      "o": o,
      "c_prev": c_prev,
      "tc": tc,
      "nc": nc,
      "rc": rc,
      "nh": nh,
      "rh": rh,
    }
    if forget_gate:
      kn["f"] = blk(s, F_)
    return h_prev, kn

  def lin(p, dp, x, dx, h_prev, kn, m):
    nx, rx = cells_lib._normalize(_mm(x, p.w_x), eps)
    dux = _add(None if _zero(dx) else _mm(dx, p.w_x), _mm(x, dp.w_x))
    db = None
    if p.b is not None and not _zero(dp.b):
      db = jnp.broadcast_to(cells_lib._bcast(dp.b, nx), nx.shape)
    return _add(
      _ln_tangent(dux, nx, rx, p.norm.x.scale, dp.norm.x),
      _ln_tangent(_mm(_masked(h_prev, m), dp.w_h), kn["nh"], kn["rh"], p.norm.h.scale, dp.norm.h),
      db,
    )

  def tangent(p, dp, kn, dcarry, lin_t, wt, m):
    dh, dc = dcarry
    h_part = _ln_tangent(_rec(_masked(dh, m), wt), kn["nh"], kn["rh"], p.norm.h.scale)  # dgamma, dbeta: in lin
    d = _add(lin_t, h_part) * kn["dact"]
    di, dg, do = blk(d, I_), blk(d, G_), blk(d, O_)
    dc = _add(blk(d, F_) * kn["c_prev"] if forget_gate else None, dc * kn["f"] if forget_gate else dc)
    dc = _add(dc, di * kn["g"], dg * kn["i"])
    dlc = _ln_tangent(dc, kn["nc"], kn["rc"], p.norm.c.scale, dp.norm.c)
    return cells_lib.LSTMCarry(do * kn["tc"] + kn["o"] * (1.0 - kn["tc"] * kn["tc"]) * dlc, dc)

  return Kernel(step, carry_of, knowns, lin, tangent, lambda carry: carry.h)


# ----------------------------------------------------------------------------
# The LSTM of 1997 (memory blocks, no forget gate)


def _lstm1997_kernel(
  num_blocks: int,
  block_size: int,
  output_gate: bool,
  cell_input_squash: str,
  cell_output_squash: str,
  truncated_gradient: bool,
) -> Kernel:
  """The 1997 cell's units ``[cells (C S), input gates (C), output gates (C)]``, ``U`` in all.

  One full-width sigmoid covers every unit: the cell input is ``alpha sigmoid(z) + beta`` (``4 sigma - 2``, or
  ``sigma``); the output squash ``2 sigmoid(s) - 1`` is ``tanh(s / 2)``. With ``truncated_gradient`` the
  tangent of a net input has no term from the activations of ``t-1``, so the sequential part of the backward
  pass is the cell states' running sum and elementwise operations.
  """
  C, S = num_blocks, block_size
  CS = C * S
  U = CS + C + (C if output_gate else 0)
  alpha, beta = (4.0, -2.0) if cell_input_squash == "paper" else (1.0, 0.0)
  paper_h = cell_output_squash == "paper"

  def rep(a):  # a block's gate over its S cells
    return a if S == 1 else jnp.repeat(a, S, axis=-1)

  def squash_h(s):
    return jnp.tanh(0.5 * s) if paper_h else s

  def bias(b_cell, b_in, b_out, dtype):
    """The ``(U,)`` bias (or its tangent) from its parts, zeros where a part is absent; None if every part is."""
    parts = [b_cell, b_in, b_out] if output_gate else [b_cell, b_in]
    if all(_zero(b) for b in parts):
      return None
    return jnp.concatenate([jnp.zeros((n,), dtype) if _zero(b) else b for b, n in zip(parts, (CS, C, C))])

  def masked(y, m):  # recurrent dropout reads the cell outputs times the mask, the gate activations whole
    return y if m is None else jnp.concatenate([_masked(y[..., :CS], m), y[..., CS:]], axis=-1)

  def out(a, s):
    """``y = [y_c, y_in, y_out]`` from the units' sigmoids ``a`` and the states ``s``."""
    hs = squash_h(s)
    if not output_gate:
      return jnp.concatenate([hs, a[..., CS:]], axis=-1)
    return jnp.concatenate([rep(a[..., CS + C :]) * hs, a[..., CS:]], axis=-1)

  def step(p, carry, x, m):
    s, y = carry
    # jax.nn.sigmoid, not _sigmoid's tanh form: the states sum every step's rounding and never forget it, and
    # over 1000 steps the tanh form's took the outputs further from a float64 run than the plain scan's.
    a = jax.nn.sigmoid(_project(p.w_x, bias(p.b_cell, p.b_in, p.b_out, p.w_x.dtype), x) + masked(y, m) @ p.w_h)
    s = s + rep(a[:, CS : CS + C]) * (alpha * a[:, :CS] + beta)
    y = out(a, s)
    return lstm1997_lib.LSTM1997Carry(s, y), y[:, :CS], (a, s)

  def carry_of(p, saved):
    a, s = saved
    return lstm1997_lib.LSTM1997Carry(s, out(a, s))

  def knowns(p, prev, saved, m):
    a, s = saved
    _, y_prev = prev
    kn = {
      "dact": (a - a * a)
      * jnp.concatenate([jnp.full((CS,), alpha, a.dtype), jnp.ones((U - CS,), a.dtype)])[None, None],
      "g": alpha * a[..., :CS] + beta,
      "i": rep(a[..., CS : CS + C]),
    }
    hs = squash_h(s)
    dh = 0.5 * (1.0 - hs * hs) if paper_h else None  # d h / d s
    if output_gate:
      o = rep(a[..., CS + C :])
      kn["hs"] = hs
      kn["dh"] = o if dh is None else o * dh
    elif dh is not None:
      kn["dh"] = dh
    return y_prev, kn

  def lin(p, dp, x, dx, h_prev, kn, m):
    db = bias(dp.b_cell, dp.b_in, dp.b_out, p.w_x.dtype)
    return _add(_affine_tangent(p.w_x, dp.w_x, db, x, dx), _mm(masked(h_prev, m), dp.w_h))

  def tangent(p, dp, kn, dcarry, lin_t, wt, m):
    ds, dy = dcarry
    du = lin_t if truncated_gradient else _add(lin_t, _rec(masked(dy, m), wt))
    if du is None:  # no tangent reaches a net input: the states carry theirs on
      d = jnp.zeros_like(kn["dact"])
    else:
      d = du * kn["dact"]
    di = d[:, CS : CS + C]
    ds = ds + rep(di) * kn["g"] + kn["i"] * d[:, :CS]
    dyc = ds * kn["dh"] if "dh" in kn else ds
    if output_gate:
      dyc = dyc + rep(d[:, CS + C :]) * kn["hs"]
    return lstm1997_lib.LSTM1997Carry(ds, jnp.concatenate([dyc, d[:, CS:]], axis=-1))

  return Kernel(step, carry_of, knowns, lin, tangent, lambda carry: carry.y[..., :CS], h_leaf=None)


# ----------------------------------------------------------------------------
# The engine


def _kernel(spec: Any) -> Kernel | None:
  kind, options = spec
  return _kernel_cached(kind, tuple(sorted(options.items())))


@functools.lru_cache(maxsize=64)
def _kernel_cached(kind: str, options: tuple[tuple[str, Any], ...]) -> Kernel | None:
  # One Kernel per cell description, so that the chunk functions built from it are cached too.
  factories: dict[str, Callable[..., Kernel]] = {
    "elman": _elman_kernel,
    "gru": _gru_kernel,
    "mgu": _mgu_kernel,
    "lstm": _lstm_kernel,
    "lstm_ln": _lstm_ln_kernel,
    "lstm1997": _lstm1997_kernel,
  }
  factory = factories.get(kind)
  return None if factory is None else factory(**dict(options))


def _select(mask: Array, new: Any, old: Any) -> Any:
  """``where(mask, new, old)`` leafwise, ``mask: (B, 1)``."""
  return jax.tree.map(lambda n, o: jnp.where(mask, n, o), new, old)


def _instantiate(t: Any, like: Any) -> Any:
  return jax.tree.map(lambda d, a: jnp.zeros_like(a) if isinstance(d, SymbolicZero) else d, t, like)


def _run(kernel, p, carry, x, valid, m, r=None, rc=None, g=None, *, reverse, unroll=1, save=False, infer=None):
  """The forward scan over ``x: (K, B, I)``: ``(carry, ys, saved)``, ``saved`` stacked when ``save``; ``infer``
  (None, or the rows of the step's products over all vmapped examples) takes the kernel's ``infer_step`` where it
  has one (no derivative is taken of this scan).

  ``r: (K, B)`` bool or None: where True, the carry entering the step is ``rc`` instead. ``g``: None or a
  carry-shaped tree of ``(K, B, F)`` factors that multiply the carry entering each step (after a reset)."""
  masked = valid is not None
  tstep = None
  if infer is not None and kernel.transposed is not None and r is None and g is None:
    tstep = kernel.transposed(p, x.shape[1])
  if tstep is not None:  # the whole scan on transposed arrays: no transposes inside the loop
    mt = None if m is None else m.T

    def tbody(carry, inp):
      x_t, v = inp
      new, y = tstep(p, carry, x_t, mt)
      if masked:  # padding steps pass the carry through: a select of each (features, batch) leaf by column
        new = jax.tree.map(lambda n, o: jnp.where(v[None, :], n, o), new, carry)
      return new, y

    carry, ys = jax.lax.scan(
      tbody, jax.tree.map(jnp.transpose, carry), (jnp.swapaxes(x, 1, 2), valid), reverse=reverse, unroll=unroll
    )
    ys = jnp.swapaxes(ys, 1, 2)
    if masked:
      ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return jax.tree.map(jnp.transpose, carry), ys, None
  step = kernel.step
  if infer is not None and kernel.infer_step is not None:
    step = functools.partial(kernel.infer_step, rows=infer)

  def body(carry, inp):
    x_t, v, r_t, g_t = inp
    carry_in = carry if r_t is None else _select(r_t[:, None], rc, carry)
    if g_t is not None:
      carry_in = jax.tree.map(jnp.multiply, g_t, carry_in)
    # The input projection stays inside the step: on XLA CPU, reading a step's slice of a
    # precomputed (K, B, G) projection inside the gate fusions was slower than a small product
    # (the fusion that reads the slice came out unvectorised: python -m benchmarks.vectorised).
    new, y, saved = step(p, carry_in, x_t, m)
    if masked:  # padding steps pass the carry through, not reset
      new = _select(v[:, None], new, carry)
    return new, (y, saved if save else None)

  carry, (ys, saved) = jax.lax.scan(body, carry, (x, valid, r, g), reverse=reverse, unroll=unroll)
  if masked:  # padding steps output zeros: one vectorised select after the loop, not one per step
    ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
  return carry, ys, saved


def _pair(kernel, p, wt, dp, carry0, dcarry, x, dx, valid, cut, m, r, rc, drc, g, dg, *, reverse, unroll=1):
  """One chunk's outputs and their tangents: ``((carry, ys), (dcarry, dys))``; ``unroll`` steps per iteration.

  ``r``, ``rc`` and ``drc``: the resets (:func:`_run`), the reset carry and its tangent (None without resets);
  ``g`` and ``dg``: the carry factors (:func:`_run`) and their tangents (None without them, or with no tangent).
  """
  carry, ys, saved = _run(kernel, p, carry0, x, valid, m, r, rc, g, reverse=reverse, unroll=unroll, save=True)
  # Only these are kept for the backward pass; the factors below are recomputed from them.
  saved = checkpoint_name(saved, SAVED)

  def order(t):  # the factors are built in processing order
    return jax.tree.map(lambda a: a[::-1], t) if reverse else t

  saved = order(saved)
  prev = _entered(kernel.carry_of(p, saved), carry0, order(r), rc)
  extra = None  # the tangent of the carry entering each step through its factor, dg * (the carry it multiplies)
  if g is not None:
    if dg is not None:
      extra = order(jax.tree.map(jnp.multiply, order(dg), prev))
    prev = jax.tree.map(jnp.multiply, order(g), prev)
  h_prev, kn = order(kernel.knowns(p, prev, saved, m))
  lin = kernel.lin(p, dp, x, dx, h_prev, kn, m)

  # Padding steps pass the uncut carry through, but for the output's leaf (kernel.h_leaf) not step by step: a row
  # leaves the chunk with that leaf's tangent after the row's last valid step here (its output there), or with
  # the one it entered with if it has none; the padding steps after the last valid one read the unselected value,
  # but only they, and their outputs are zeroed. A select of that leaf in every step made the LSTM's training step
  # with lengths about 25% slower: in the backward steps the cotangent of h then left the recurrent product
  # through a select (`python -m benchmarks.mask`, "full" against "lengths").
  h_leaf = kernel.h_leaf if valid is not None else None

  def body(dc, inp):
    kn_t, lin_t, v, cut_t, r_t, g_t, e_t = inp
    dc_in = dc
    if cut_t is not None:
      dc_in = jax.tree.map(lambda a: jnp.where(cut_t, jnp.zeros_like(a), a), dc)
    if r_t is not None:
      dc_in = _select(r_t[:, None], drc, dc_in)
    if g_t is not None:
      dc_in = jax.tree.map(jnp.multiply, g_t, dc_in)
    if e_t is not None:
      dc_in = jax.tree.map(jnp.add, dc_in, e_t)
    new = kernel.tangent(p, dp, kn_t, dc_in, lin_t, wt, m)
    dy = kernel.h_of(new)
    if v is not None:  # padding steps pass the uncut carry through (their outputs are zeroed below)
      leaves, tree = jax.tree.flatten(new)  # the output's leaf: after the scan
      passed = [
        n if i == h_leaf else jnp.where(v[:, None], n, o) for i, (n, o) in enumerate(zip(leaves, jax.tree.leaves(dc)))
      ]
      new = tree.unflatten(passed)
    return new, dy

  dcarry_in = dcarry
  dcarry, dys = jax.lax.scan(body, dcarry, (kn, lin, valid, cut, r, g, extra), reverse=reverse, unroll=unroll)
  if valid is not None:
    if h_leaf is not None:
      assert not reverse  # with lengths the caller reverses the valid steps instead: they come first in a row
      count = jnp.sum(valid, axis=0, dtype=jnp.int32)
      last = jnp.arange(valid.shape[0])[:, None] == (count - 1)[None]  # (K, B)
      at_last = jnp.sum(jnp.where(last[..., None], dys, jnp.zeros_like(dys)), axis=0)
      leaves, tree = jax.tree.flatten(dcarry)
      leaves[h_leaf] = jnp.where((count > 0)[:, None], at_last, jax.tree.leaves(dcarry_in)[h_leaf])
      dcarry = tree.unflatten(leaves)
    dys = jnp.where(valid[..., None], dys, jnp.zeros_like(dys))
  return (carry, ys), (dcarry, dys)


def _over_chunks(f, state, inputs, T, K, *, reverse):
  """``f(state, chunk_inputs) -> (state, chunk_outputs)`` over the time axis of ``inputs`` in chunks of ``K`` steps.

  A scan over the full chunks and one call for the shorter tail; the outputs
  come back concatenated along time (a pytree of time-major arrays).
  """
  n, r = divmod(T, K)
  main = jax.tree.map(lambda a: a[: n * K].reshape((n, K) + a.shape[1:]), inputs)
  tail = jax.tree.map(lambda a: a[n * K :], inputs)

  def run_main(state):
    if n == 0:
      return state, None
    state, out = jax.lax.scan(f, state, main, reverse=reverse)
    return state, jax.tree.map(lambda a: a.reshape((n * K,) + a.shape[2:]), out)

  def run_tail(state):
    return (state, None) if r == 0 else f(state, tail)

  if reverse:
    state, out_t = run_tail(state)
    state, out_m = run_main(state)
  else:
    state, out_m = run_main(state)
    state, out_t = run_tail(state)
  if out_m is None or out_t is None:
    return state, out_t if out_m is None else out_m
  return state, jax.tree.map(lambda m, t: jnp.concatenate([m, t]), out_m, out_t)


def _canonical(tree: Any) -> Any:
  """Each array reshaped to one axis and back: free in XLA, but under ``vmap`` it puts the mapped axis first.

  The plain scan (the primal) and the chunked scans of the derivative rule batch their outputs with the mapped
  axis in different places (a scan's stacked output has it second, a reshape moves it first). JAX 0.10.2 does
  not reconcile the two for a ``custom_jvp`` inside ``jit``: the gradient of ``jit(vmap(f))`` followed by a
  gather with mapped indices (``lengths`` with ``reverse``, or ``mask``) then failed to compile with a
  transposed cotangent. Both sides go through this, so they agree.
  """
  return jax.tree.map(lambda a: jax.lax.reshape(jax.lax.reshape(a, (a.size,)), a.shape), tree)


def mapped_size(tree: Any) -> int:
  """How many examples ``jax.vmap`` runs this code for: the product of the sizes of the ``vmap`` axes over which any
  array of ``tree`` is batched while it is traced here, 1 outside ``vmap``.

  The fast path sizes its chunks by the rows they hold (:func:`chunk_length`), and under ``vmap`` every row of a
  chunk is there once per example. With 10 vmapped trials of an LSTM with ``(B, T, H) = (32, 100, 32)``, chunks
  sized for one trial held 73 MiB of temporary memory per call, above glibc's 32 MiB mmap threshold, and a vmapped
  training step called once per update took 2.1x the time of one with chunks sized for all ten (31 MiB); scanning
  over the updates in one call, 1.15x (``python -m benchmarks.vmap_trials``). A ``custom_vmap`` probe on one
  element of each array reads the axis sizes: its batching rule runs once per enclosing ``vmap`` while the
  function is traced. It cannot see a ``vmap`` that batches an already traced function (``vmap`` of a ``jit``-ed
  function, or of a ``lax.scan`` or ``lax.map`` body that contains the call): there it returns 1, the chunks of
  one example. The probe reads no gradient (``stop_gradient``) and its output is unused, so XLA removes it.
  """
  size = [1]

  @jax.custom_batching.custom_vmap
  def probe(leaves: list[Array]) -> list[Array]:
    return leaves

  @probe.def_vmap
  def _rule(axis_size: int, in_batched: Any, leaves: list[Array]) -> tuple[list[Array], Any]:
    size[0] *= axis_size
    return probe(leaves), in_batched[0]  # an enclosing vmap batches this call in turn

  # Only traced arrays can be mapped: concrete ones (eager code outside vmap) need no probe, and no dispatches.
  traced = [a for a in jax.tree.leaves(tree) if isinstance(a, jax.core.Tracer) and a.size]
  leaves = [jax.lax.stop_gradient(a.reshape(-1)[:1]) for a in traced]
  if leaves:
    probe(leaves)
  return size[0]


_PER_EXAMPLE = contextvars.ContextVar("jaxrnn_fused_chunks_per_example", default=False)


@contextlib.contextmanager
def chunks_per_example() -> Iterator[None]:
  """While tracing within it, the fast path sizes its chunks for one example's rows, whatever ``vmap`` encloses it.

  That is how it sized them before :func:`mapped_size`. The experiments' engine traces its models under it, so
  that every committed row trains bit for bit as when it was made (the chunk length changes the order in which a
  chunk's weight gradients are summed).
  """
  token = _PER_EXAMPLE.set(True)
  try:
    yield
  finally:
    _PER_EXAMPLE.reset(token)


_TWO_PRODUCTS = contextvars.ContextVar("jaxrnn_fused_two_products_per_step", default=False)


@contextlib.contextmanager
def two_products_per_step() -> Iterator[None]:
  """While tracing within it, the LSTM's, the GRU's and the MGU's inference take the products of their training
  step (:func:`_xh`): no one-product step (:func:`_xh_joint`, :func:`_reset_after_infer`) and no transposed one
  (:func:`_transposed_lstm`, :func:`_transposed_reset_after`). The experiments' engine evaluates its models under
  it, so that the test scores of the committed rows are computed as when they were made (those steps sum in
  another order)."""
  token = _TWO_PRODUCTS.set(True)
  try:
    yield
  finally:
    _TWO_PRODUCTS.reset(token)


def segment_length(T: int, remat: bool | int) -> int:
  """The segment length for ``remat``: ``ceil(sqrt(T))`` for True, else the given int, at most ``T``."""
  if remat is True:
    return max(1, math.ceil(math.sqrt(T)))
  return max(1, min(int(remat), T))


def chunk_length(T: int, B: int, H: int, scale: int = 1) -> int:
  """Steps per chunk: ``K * B * H`` about ``scale * CHUNK_ELEMENTS``, at most ``T``; or the shortest length up to
  ``1.5 K`` that divides ``T``, where there is one.

  Larger chunks make larger weight-gradient products; the chunk's own buffers
  (a few ``(K, B, H)`` arrays per gate) must stay small next to the saved
  activations of the whole sequence. A length that divides ``T`` leaves no
  shorter last chunk, which runs outside the loop over chunks with buffers of
  its own and whose outputs are joined to the others' by copies: at
  ``(B, T, H) = (8, 200, 512)`` the LSTM's training step needed 33.0 MiB of
  temporary memory with 16 steps per chunk and 29.2 MiB with 20, under
  glibc's 32 MiB mmap threshold, and took 44.8 against 53.5 ms
  (``python -m benchmarks.chunk --steps``, ``BENCHMARKS.md``).
  """
  K = max(1, min(T, round(scale * CHUNK_ELEMENTS / (B * H))))
  return next((d for d in range(K, min(T, 3 * K // 2) + 1) if T % d == 0), K)


def sequence(
  kernel,
  params,
  xs,
  carry,
  valid,
  cut,
  m=None,
  r=None,
  rc=None,
  decay=None,
  *,
  reverse,
  unroll,
  remat,
  chunk=None,
  mapped=1,
):
  """Runs ``kernel`` over ``xs: (T, B, I)`` from ``carry``: ``(carry, ys)``.

  ``valid: (T, B)`` bool or None marks the steps within each sequence's
  length; ``cut: (T,)`` bool or None marks the steps whose incoming carry has
  its derivative cut (truncated BPTT); ``m: (B, H)`` or None is the recurrent-dropout mask, a constant
  (no derivative flows to it); ``r: (T, B)`` bool or None marks the steps whose incoming carry is replaced by
  ``rc`` (a carry, differentiable); ``decay`` is None or ``(fn, fparams, src)``: the factors that multiply the
  carry entering each step (after a reset) are ``fn(fparams, src)``, a carry-shaped tree of ``(T, B, F)`` arrays
  computed from ``src``, a pytree of ``(T, B, ...)`` arrays (both differentiable). The derivative computes them,
  and their tangents, a chunk at a time from ``src``, so that no factors or tangents of the whole sequence are
  kept: temporary memory above glibc's mmap threshold (32 MiB at most) costs fresh pages on every call
  (``python -m benchmarks.page_faults``). ``mapped`` is how many examples an enclosing ``vmap`` runs
  (:func:`mapped_size`): once one example's chunks over all of them would hold more than ``MAPPED_SLACK``
  times the target, they are sized for all of them. Evaluated without derivatives it is one plain scan; its
  derivative rule runs the chunked forward and tangent.
  """
  T, B = xs.shape[:2]
  H = max(a.shape[-1] for a in jax.tree.leaves(carry))  # the cells, where a projection makes h smaller
  if chunk is None:
    K = chunk_length(T, B, H, kernel.chunk_scale)
    # Under vmap a chunk holds every example's rows. Sized for all of them once that is over 4x the target for one
    # (MAPPED_SLACK): below it the chunks stay small, and splitting a sequence into more of them costs more than
    # it saves. Without the slack, 128 vmapped nets of 8 units (one sequence each) trained 4% to 9% slower in
    # chunks of 64 steps than in one of 100 (python -m benchmarks.vmap_trials, 2026-11-24, before the slack; with
    # it their programs are the same).
    if mapped > 1 and mapped * K * B * H > MAPPED_SLACK * kernel.chunk_scale * CHUNK_ELEMENTS:
      K = chunk_length(T, B * mapped, H, kernel.chunk_scale)
  else:
    K = min(chunk, T)

  fn, fparams, src = (None, None, None) if decay is None else decay

  @jax.custom_jvp
  def run(p, carry, xs, valid, cut, m, r, rc, fparams, src):
    g = None if fn is None else fn(fparams, src)
    carry, ys, _ = _run(kernel, p, carry, xs, valid, m, r, rc, g, reverse=reverse, unroll=unroll, infer=B * mapped)
    return _canonical((carry, ys))

  def run_jvp(primals, tangents):
    p, carry0, xs, valid, cut, m, r, rc, fparams, src = primals
    dp, dcarry0, dxs = tangents[:3]
    drc = None if rc is None else _instantiate(tangents[7], rc)
    dfparams = dsrc = None  # the factors' tangents, when they have any
    if fn is not None and not all(_zero(t) for t in jax.tree.leaves(tangents[8:], is_leaf=_zero)):
      dfparams, dsrc = _instantiate(tangents[8], fparams), _instantiate(tangents[9], src)
    # Symbolic zeros stay symbolic (no products with zero tangents); the others go through the scans.
    dp_leaves, dp_tree = jax.tree.flatten(dp, is_leaf=lambda t: isinstance(t, SymbolicZero))
    live = [not _zero(t) for t in dp_leaves]
    dxs = None if _zero(dxs) else dxs

    def pair(p, wt, live_leaves, carry, dcarry, x, dx, v, c, m, r, rc, drc, fp, dfp, s, ds):
      it = iter(live_leaves)
      dp = dp_tree.unflatten([next(it) if alive else t for alive, t in zip(live, dp_leaves)])
      g = dg = None  # this chunk's factors (recomputed for the backward pass, not kept)
      if fn is not None:
        g, dg = (fn(fp, s), None) if dfp is None else jax.jvp(fn, (fp, s), (dfp, ds))
      return _pair(kernel, p, wt, dp, carry, dcarry, x, dx, v, c, m, r, rc, drc, g, dg, reverse=reverse, unroll=unroll)

    pair = jax.checkpoint(pair, policy=jax.checkpoint_policies.save_only_these_names(SAVED), prevent_cse=False)
    live_leaves = [t for alive, t in zip(live, dp_leaves) if alive]
    wt = jnp.transpose(p.w_h)  # once per sequence, not per chunk

    def chunk(state, inp):
      (carry, dcarry), (x, dx, v, c, r, s, ds) = state, inp
      (carry, ys), (dcarry, dys) = pair(
        p, wt, live_leaves, carry, dcarry, x, dx, v, c, m, r, rc, drc, fparams, dfparams, s, ds
      )
      return (carry, dcarry), (ys, dys)

    def chunks(state, inp, steps):
      # `unroll` unrolls the steps inside a chunk (as in the plain scan), not the loop over chunks.
      return _over_chunks(chunk, state, inp, steps, K, reverse=reverse)

    state = (carry0, _instantiate(dcarry0, carry0))
    inputs = (xs, dxs, valid, cut, r, src, dsrc)
    if not remat:
      state, (ys, dys) = chunks(state, inputs, T)
    else:
      # Segments of whole chunks whose forward pass is recomputed for the backward pass.
      L = max(K, segment_length(T, remat) // K * K)

      @functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.nothing_saveable, prevent_cse=False)
      def segment(state, inp):
        return chunks(state, inp, inp[0].shape[0])

      state, (ys, dys) = _over_chunks(segment, state, inputs, T, L, reverse=reverse)
    (carry, dcarry) = state
    return _canonical((carry, ys)), _canonical((dcarry, dys))

  run.defjvp(run_jvp, symbolic_zeros=True)
  return run(params, carry, xs, valid, cut, m, r, rc, fparams, src)


def _grud_fill(values, obs_mask, valid, cut, r, carry0, rc, mean, *, reverse):
  """GRU-D's record of each feature's last observed value, without a scan.

  ``values, obs_mask: (T, B, D)``; ``valid: (T, B)`` or None; ``cut: (T,)`` or None; ``r: (T, B)`` or None (the
  steps whose incoming carry is reset to ``rc``); ``carry0`` and ``rc``: :class:`GRUDCarry` leaves ``(B, ...)``.
  Returns ``(x_in, x_last, seen)``: the value each step imputes from (``x_last`` where the feature was seen, else
  ``mean``), ``(T, B, D)`` in input order, and the final carry's ``x_last`` and ``seen``. They depend on the
  inputs and carries only (not on ``h``), so they are computed for all steps at once: the last observed step
  before each one is a running maximum of step indices (``lax.cummax``) within its segment since the last reset,
  and its value a gather. Their derivatives follow the reference scan's: the carry's gradient cut where
  ``cut`` marks (truncated BPTT), and none from a step that does not run.
  """
  T = values.shape[0]

  def order(a):  # processing order
    return None if a is None else (a[::-1] if reverse else a)

  v, om, kept, rr = order(values), order(obs_mask), order(valid), order(r)
  steps = jnp.arange(T, dtype=jnp.int32)
  obs = om > 0
  if kept is not None:
    obs = obs & kept[..., None]
  last_obs = jax.lax.cummax(jnp.where(obs, steps[:, None, None], -1), axis=0)
  # j[t]: the last step before step t (t = T: after the last) at which the feature was observed, or -1.
  j = jnp.concatenate([jnp.full((1,) + last_obs.shape[1:], -1, jnp.int32), last_obs])
  x0, s0 = carry0.x_last[None], carry0.seen[None]
  if rr is None:
    start = jnp.zeros((T + 1, 1, 1), jnp.int32)
    x_start, s_start = x0, s0
  else:
    if kept is not None:
      rr = rr & kept  # a reset at a step that does not run has no effect (unroll moves them to kept steps)
    seg = jax.lax.cummax(jnp.where(rr, steps[:, None], -1), axis=0)
    seg = jnp.concatenate([seg, seg[-1:]])[..., None]  # (T + 1, B, 1): the last reset at or before step t
    start = jnp.maximum(seg, 0)
    x_start = jnp.where(seg >= 0, rc.x_last[None], x0)
    s_start = jnp.where(seg >= 0, rc.seen[None], s0)
  from_obs = j >= start  # observed since the segment began
  picked = jnp.take_along_axis(v, jnp.clip(j, 0, T - 1), axis=0)
  x_raw = jnp.where(from_obs, picked, x_start)
  s_raw = jnp.where(from_obs, jnp.ones_like(s_start), s_start)
  if cut is not None:  # the source (step j, or the carry the segment began with) lies before a cut
    cuts = order(cut)[:, None]
    if kept is not None:
      cuts = cuts & kept  # a step that does not run passes the uncut carry on
    c = jax.lax.cummax(jnp.where(cuts, steps[:, None], -1), axis=0)
    c = jnp.concatenate([c, c[-1:]])[..., None]
    stop = c > jnp.where(from_obs, j, start)
    x_raw = jnp.where(stop, jax.lax.stop_gradient(x_raw), x_raw)
    s_raw = jnp.where(stop, jax.lax.stop_gradient(s_raw), s_raw)
  mean = mean.reshape(1, 1, -1)
  x_in = jnp.where(s_raw[:T] > 0, x_raw[:T], mean)
  # The final carry: a step that ran since the segment began stored x_last with the mean put in for an unseen
  # feature; with none (length 0), the segment's carry is returned untouched.
  last_kept = T - 1 if kept is None else jnp.max(jnp.where(kept, steps[:, None], -1), axis=0)[:, None]
  ran = last_kept >= start[-1]
  x_last = jnp.where(ran & (s_raw[-1] <= 0), mean[0], x_raw[-1])
  return order(x_in), x_last, s_raw[-1]


def _time_decay_factors(rate: Any, dt: Array) -> Any:
  """:func:`jaxrnn.time_decay`'s factors ``exp(-softplus(rate) dt)``, a tree like the carry, from ``dt: (K, B, 1)``."""
  return jax.tree.map(lambda a: jnp.exp(-jax.nn.softplus(a).reshape(1, 1, -1) * dt), rate)


def _grud_hidden_decay(w: tuple[Array, Array], delta: Array) -> Array:
  """GRU-D's ``gamma_h = exp(-max(0, delta W_gh + b_gh))`` from ``delta: (K, B, D)``."""
  w_gh, b_gh = w
  z = delta @ w_gh  # (K, B, D) x (D, H)
  return jnp.exp(-jax.nn.relu(z + b_gh.reshape(1, 1, -1)))


def _grud(spec, params, x, c, valid, cut, m, r, rc, *, reverse, unroll, remat, mapped=1):
  """GRU-D (:func:`jaxrnn.grud`) on the GRU kernel with the reset before the product (Cho et al. 2014's):
  the imputed input ``[x_hat, mask]`` is computed for every step at once from :func:`_grud_fill`, and the
  hidden decay ``gamma_h`` enters as the carry factors of :func:`sequence` (its ``decay``)."""
  options = dict(spec[1])
  H, D = options["hidden_size"], options["num_features"]
  values, om, delta = x[..., :D], x[..., D : 2 * D], x[..., 2 * D :]
  mean = jnp.zeros((D,), x.dtype) if options["x_mean"] is None else jnp.asarray(options["x_mean"], x.dtype)
  x_in, x_last, seen = _grud_fill(values, om, valid, cut, r, c, rc, mean, reverse=reverse)
  p = params
  gx = jnp.exp(-jax.nn.relu(p.w_gx.reshape(1, 1, D) * delta + p.b_gx.reshape(1, 1, D)))
  x_hat = om * values + (1.0 - om) * (gx * x_in + (1.0 - gx) * mean.reshape(1, 1, D))
  gp = cells_lib.GRUParams(jnp.concatenate([p.w_x, p.w_m]), p.w_h, p.b, None)
  kernel = _kernel(("gru", {"hidden_size": H, "reset_after": False}))
  h, ys = sequence(
    kernel,
    gp,
    jnp.concatenate([x_hat, om], axis=-1),
    c.h,
    valid,
    cut,
    m,
    r,
    None if rc is None else rc.h,
    (_grud_hidden_decay, (p.w_gh, p.b_gh), delta),
    reverse=reverse,
    unroll=unroll,
    remat=remat,
    mapped=mapped,
  )
  return type(c)(h, x_last, seen), ys


def fused_spec(cell: Any) -> Any:
  """The cell's self-description, or None for cells the fast path does not know."""
  return getattr(getattr(cell, "apply", None), "_jaxrnn_fused", None)


def unroll(
  cell: Any,
  params: Params,
  xs: Array,
  carry: Carry,
  *,
  lengths: Array | None,
  reverse: bool,
  unroll: int | bool,
  truncate: int | None,
  remat: bool | int,
  resets: Array | None = None,
  reset_carry: Carry | None = None,
) -> tuple[Carry, Array] | None:
  """The fast path of :func:`jaxrnn.unroll` on time-major ``xs``, or None where it does not apply.

  ``reverse`` scans from the last step to the first; with ``lengths`` the
  caller reverses the valid steps instead (as the reference path does).
  ``resets: (T, *batch)`` bool or None marks the steps whose incoming carry
  (in processing order) is ``reset_carry``, a carry shaped like ``carry``.
  A :func:`jaxrnn.time_decay` cell runs its wrapped cell's kernel with the
  decay of every carry leaf as the factors of :func:`sequence` (its ``decay``), and
  :func:`jaxrnn.grud` the GRU's (:func:`_grud`).
  """
  decay = getattr(cell.apply, DECAY_ATTR, None)
  spec = fused_spec(cell if decay is None else decay[0])
  if spec is None:
    return None
  grud = spec[0] == "grud"
  if grud and decay is not None:  # time_decay would decay x_last and seen too: the plain scan
    return None
  kernel = None if grud else _kernel(spec)
  if kernel is None and not grud:
    return None
  T = xs.shape[0]
  batch_shape = tuple(xs.shape[1:-1])
  B = math.prod(batch_shape)
  if T == 0 or B == 0:
    return None
  # The cell's own checks of params, carry and input, at trace time.
  jax.eval_shape(cell.apply, params, carry, xs[0])
  factors = None
  if decay is not None:  # x = [features, dt]: every carry leaf decays by exp(-softplus(rate) dt) before the step
    factors = (_time_decay_factors, params.rate, xs[..., -1:].reshape(T, B, 1))
    xs = xs if decay[1] else xs[..., :-1]
    params = params.cell
  x = xs.reshape(T, B, xs.shape[-1])
  c = jax.tree.map(lambda a: a.reshape((B,) + a.shape[len(batch_shape) :]), carry)
  valid = None
  if lengths is not None:
    valid = jnp.arange(T, dtype=lengths.dtype)[:, None] < lengths.reshape(1, B)
  cut = None
  if truncate is not None:
    steps = jnp.arange(T)
    steps = steps[::-1] if reverse else steps  # counted in processing order
    cut = (steps > 0) & (steps % truncate == 0)  # the initial carry keeps its gradient
  m = getattr(cell.apply, RECURRENT_MASK_ATTR, None)  # set by jaxrnn.with_recurrent_mask
  if m is None and decay is not None:  # time_decay of a with_recurrent_mask cell
    m = getattr(decay[0].apply, RECURRENT_MASK_ATTR, None)
  if m is not None:
    h0 = jax.tree.leaves(c)[0]
    m = jnp.broadcast_to(m, batch_shape + h0.shape[-1:]).reshape(h0.shape).astype(h0.dtype)
  r = rc = None
  if resets is not None:
    r = resets.reshape(T, B)
    rc = jax.tree.map(lambda a: a.reshape((B,) + a.shape[len(batch_shape) :]), reset_carry)
  mapped = 1 if _PER_EXAMPLE.get() else mapped_size((params, xs, carry, lengths, resets, reset_carry))
  options = {"reverse": reverse, "unroll": unroll, "remat": remat, "mapped": mapped}
  if grud:
    c, ys = _grud(spec, params, x, c, valid, cut, m, r, rc, **options)
  else:
    c, ys = sequence(kernel, params, x, c, valid, cut, m, r, rc, factors, **options)
  c = jax.tree.map(lambda a, ref: a.reshape(ref.shape), c, carry)
  return c, ys.reshape((T,) + batch_shape + ys.shape[-1:])
