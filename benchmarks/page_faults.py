"""Where the time of a large training step goes besides arithmetic: fresh memory pages, per call.

Usage::

  python -m benchmarks.page_faults [--cells lstm,gru] [--shapes 64x100x32x128,16x1000x8x64,8x200x64x512]
                                   [--malloc default|tuned] [--rounds 5]

For each contestant's training step (forward and backward, loss ``mean(ys ** 2)``; as in ``benchmarks.run``) this
prints the median time per call (one process, interleaved blocks: :func:`benchmarks.timing.measure`), the minor
page faults per call (``getrusage``, averaged over 10 calls after warm-up) and, for the JAX programs, XLA's
temporary buffer (``memory_analysis().temp_size_in_bytes``). Contestants: jaxrnn's fast path, the same cell in
``jaxrnn.time_decay`` (gaps as the last input feature, ``delta_as_input=True``), jaxrnn's reference path
(``impl="reference"``), PyTorch (``nn.LSTM``/``GRU``/``RNN``) and flax ``nn.RNN``.

glibc serves a request larger than its mmap threshold (which grows with the blocks freed, to at most 32 MiB) with
new pages from the kernel, which zeroes each one on first touch, and gives them back when the block is freed; a
training step that needs such a block pays that on every call. ``--malloc tuned`` re-runs the process with
:data:`benchmarks.timing.TUNED_MALLOC` (no mmap for large blocks, no trimming of the heap, one arena), under which
freed memory is reused, as with jemalloc or tcmalloc.
"""

from __future__ import annotations

import resource

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

CONTESTANTS = ("jaxrnn", "time_decay", "reference", "torch", "flax")


def minor_faults_per_call(fn: models.Call, calls: int = 10) -> float:
  fn()
  start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(calls):
    fn()
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / calls


def temp_mib(grad: object, params: object, xs: jax.Array) -> float:
  return grad.lower(params, xs).compile().memory_analysis().temp_size_in_bytes / 2**20  # type: ignore[attr-defined]


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, tuple[float, float, float]]:
  """``{contestant: (median seconds, minor faults per call, XLA temp MiB or nan)}`` of the training step."""
  xs_np = models.make_inputs(B, T, I)
  xs_np[..., -1] = np.random.default_rng(1).exponential(1.0, (T, B))  # time_decay's gaps (a feature for the others)
  xs = jnp.asarray(xs_np)
  plain = models.jaxrnn_cell(cell_name, H)
  decayed = jaxrnn.time_decay(plain, delta_as_input=True)
  calls, temps = {}, {}
  for name, cell, kwargs in (
    ("jaxrnn", plain, {}),
    ("time_decay", decayed, {}),
    ("reference", plain, {"impl": "reference"}),
  ):
    params = cell.init(jax.random.key(0), I)
    grad, fwd = models.unroll_step_and_forward(cell, **kwargs)
    calls[name] = models.blocking_calls(grad, fwd, params, xs)[0]
    temps[name] = temp_mib(grad, params, xs)
  calls["torch"] = models.torch_calls(cell_name, xs_np, H)[0]
  calls["flax"] = models.flax_calls(cell_name, xs_np, H)[0]
  faults = {name: minor_faults_per_call(fn) for name, fn in calls.items()}
  times = timing.measure(calls, rounds=rounds, block_s=0.25)
  return {name: (times[name], faults[name], temps.get(name, float("nan"))) for name in CONTESTANTS}


def main(argv: list[str] | None = None) -> None:
  p = timing.peer_arguments("page_faults", __doc__, "64x100x32x128,16x1000x8x64,8x200x64x512", "lstm,gru,elman")
  p.set_defaults(cells="lstm,gru")
  args = p.parse_args(argv)
  timing.start_with_peers(args)
  print("| cell | B,T,I,H | " + " | ".join(f"{c} ms / faults / temp MiB" for c in CONTESTANTS) + " |")
  print("|" + "---:|" * (2 + len(CONTESTANTS)))
  for cell_name, B, T, I, H in timing.cell_shapes(args.cells, args.shapes):
    r = time_shape(cell_name, B, T, I, H, args.rounds)
    cells = []
    for c in CONTESTANTS:
      t, f, m = r[c]
      cells.append(f"{t * 1e3:.2f} / {f:,.0f}" + ("" if np.isnan(m) else f" / {m:.1f}"))
    print(f"| {cell_name} | {B},{T},{I},{H} | {' | '.join(cells)} |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
