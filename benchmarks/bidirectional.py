"""A bidirectional layer over variable-length sequences: jaxrnn against flax and PyTorch, training and inference.

Usage::

  python -m benchmarks.bidirectional [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64,32x100x2x8]
                                     [--rounds 7] [--malloc default|tuned]

For each cell and shape, one bidirectional layer (forward and length-aware backward direction, outputs
concatenated) over sequences whose lengths are drawn from ``[T/2, T]``: ``jaxrnn.bidirectional`` with
``lengths``, flax's ``nn.Bidirectional`` of two ``nn.RNN`` (``OptimizedLSTMCell`` or ``GRUCell``) with
``seq_lengths``, and PyTorch's ``nn.LSTM`` / ``nn.GRU`` with ``bidirectional=True`` over the sequences packed by
length (``pack_padded_sequence``), the way PyTorch skips the padding. It times the training step (forward,
``mean(ys ** 2)`` over all steps, the padding's outputs being zero in all three, and the gradient of the
parameters) and the forward pass, in one process with :func:`benchmarks.timing.measure` (interleaved blocks), and
prints medians in milliseconds and jaxrnn's time over the faster peer's. ``--malloc tuned`` re-runs the process
under :data:`benchmarks.timing.TUNED_MALLOC` (the training steps of a bidirectional layer need about twice one
layer's temporary memory, over glibc's 32 MiB mmap threshold from (64, 100, 32, 128) on: ``python -m
benchmarks.malloc``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

CONTESTANTS = ("jaxrnn", "flax", "torch")


def jaxrnn_calls(cell_name: str, xs: np.ndarray, H: int, lengths: np.ndarray) -> tuple[models.Call, models.Call]:
  layer = jaxrnn.bidirectional(models.jaxrnn_cell(cell_name, H), models.jaxrnn_cell(cell_name, H))
  params = layer.init(jax.random.key(0), xs.shape[-1])
  lens = jnp.asarray(lengths)
  grad, fwd = models.step_and_forward(lambda p, x: layer.apply(p, x, lengths=lens)[1])
  return models.blocking_calls(grad, fwd, params, jnp.asarray(xs))


def flax_calls(cell_name: str, xs: np.ndarray, H: int, lengths: np.ndarray) -> tuple[models.Call, models.Call]:
  import flax.linen as nn

  cell = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell_name]
  layer = nn.Bidirectional(nn.RNN(cell(features=H)), nn.RNN(cell(features=H)), time_major=True)
  x, lens = jnp.asarray(xs), jnp.asarray(lengths)
  params = layer.init(jax.random.key(0), x, seq_lengths=lens)["params"]

  def outputs(p: Any, xs: jax.Array) -> jax.Array:
    ys: jax.Array = layer.apply({"params": p}, xs, seq_lengths=lens)  # type: ignore[assignment]
    valid = jnp.arange(xs.shape[0])[:, None, None] < lens[None, :, None]
    return jnp.where(valid, ys, 0.0)  # flax leaves the padding's outputs as they come; the others give zeros

  return models.blocking_calls(*models.step_and_forward(outputs), params, x)


def torch_calls(cell_name: str, xs: np.ndarray, H: int, lengths: np.ndarray) -> tuple[models.Call, models.Call]:
  import torch

  module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell_name](xs.shape[-1], H, bidirectional=True)
  x = torch.from_numpy(xs)
  lens = torch.from_numpy(lengths.astype(np.int64))
  parameters = list(module.parameters())
  T = xs.shape[0]

  def outputs() -> Any:
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lens, enforce_sorted=False)
    return torch.nn.utils.rnn.pad_packed_sequence(module(packed)[0], total_length=T)[0]

  def train() -> None:
    torch.autograd.grad((outputs() ** 2).mean(), parameters)

  def infer() -> None:
    with torch.no_grad():
      outputs()

  return train, infer


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <contestant>`` and ``infer <contestant>``."""
  xs = models.make_inputs(B, T, I)
  lengths = np.random.default_rng(0).integers(T // 2, T + 1, B).astype(np.int32)
  calls = {}
  for name, make in (("jaxrnn", jaxrnn_calls), ("flax", flax_calls), ("torch", torch_calls)):
    calls[f"train {name}"], calls[f"infer {name}"] = make(cell_name, xs, H, lengths)
  return timing.measure(calls, rounds=rounds, block_s=0.25)


def main(argv: list[str] | None = None) -> None:
  p = timing.peer_arguments("bidirectional", __doc__, "64x100x32x128,16x1000x8x64,32x100x2x8", "lstm,gru")
  args = p.parse_args(argv)
  timing.start_with_peers(args)
  print("| cell | B,T,I,H | mode | jaxrnn | flax | torch | jaxrnn / faster peer |")
  print("|---|---:|---|---:|---:|---:|---:|")
  for cell_name, B, T, I, H in timing.cell_shapes(args.cells, args.shapes):
    t = time_shape(cell_name, B, T, I, H, args.rounds)
    for mode in ("train", "infer"):
      ms = {c: t[f"{mode} {c}"] * 1e3 for c in CONTESTANTS}
      ratio = ms["jaxrnn"] / min(ms["flax"], ms["torch"])
      row = " | ".join(f"{ms[c]:.2f}" for c in CONTESTANTS)
      print(f"| {cell_name} | {B},{T},{I},{H} | {mode} | {row} | {ratio:.2f} |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
