"""The LSTM with a projection (``jaxrnn.lstm(H, proj_size=P)``, PyTorch's ``nn.LSTM(proj_size=P)``).

Usage::

  python -m benchmarks.projection [--shapes 64x100x32x128,16x1000x8x64,8x200x64x512] [--ratio 4] [--rounds 7]

Times, in one process with :func:`benchmarks.timing.measure` (interleaved blocks), the training step (forward
and backward, loss ``mean(ys ** 2)``) and the forward pass of the projected LSTM with ``P = H / ratio`` on
jaxrnn's fast path (``jaxrnn``, the default), on its reference path (``reference``, the plain ``lax.scan`` of
the cell) and in PyTorch (``torch``; its oneDNN kernel does not take projections, so PyTorch runs its generic
implementation). All three run the same weights: jaxrnn's come from the torch module through
``jaxrnn.interop.from_torch``. It first checks that the two jaxrnn paths agree (outputs to 1e-5, gradients
to 1e-4) and that jaxrnn's outputs equal torch's (to 1e-4), then prints medians in milliseconds and each
time over torch's.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

VARIANTS = ("jaxrnn", "reference", "torch")


def time_shape(B: int, T: int, I: int, H: int, P: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after the agreement checks."""
  import torch

  torch.manual_seed(0)
  module = torch.nn.LSTM(I, H, proj_size=P)
  parameters = list(module.parameters())
  cell, params = jaxrnn.interop.from_torch(module)
  assert isinstance(cell, jaxrnn.Cell)  # one layer, one direction
  xs = models.make_inputs(B, T, I)
  x_t, x = torch.from_numpy(xs), jnp.asarray(xs)

  def torch_train() -> None:
    for p in parameters:
      p.grad = None
    ys, _ = module(x_t)
    (ys**2).mean().backward()

  def torch_infer() -> None:
    with torch.no_grad():
      module(x_t)

  with torch.no_grad():
    want = module(x_t)[0].numpy()
  np.testing.assert_allclose(np.asarray(jaxrnn.unroll(cell, params, x)[1]), want, rtol=1e-4, atol=1e-5)
  variants = {"jaxrnn": (cell, {}), "reference": (cell, {"impl": "reference"})}
  return models.time_unroll_variants(
    variants,
    params,
    x,
    agree=("jaxrnn", "reference"),
    rounds=rounds,
    extra_calls={"train torch": torch_train, "infer torch": torch_infer},
  )


def main(argv: list[str] | None = None) -> None:
  p = timing.shape_arguments("projection", __doc__, "64x100x32x128,16x1000x8x64,8x200x64x512")
  p.add_argument("--ratio", type=int, default=4, help="P = H / ratio")
  args = p.parse_args(argv)
  print("\n".join(f"{k}: {v}" for k, v in timing.describe_machine().items()))
  print(f"load average (1 min): {timing.load_average():.2f}")
  timing.print_variant_header(("B,T,I,H,P",), VARIANTS)
  warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
  for shape in args.shapes.split(","):
    B, T, I, H = (int(v) for v in shape.split("x"))
    P = max(1, H // args.ratio)
    t = time_shape(B, T, I, H, P, args.rounds)
    cells = []
    for m in ("train", "infer"):
      for v in VARIANTS:
        ratio = "" if v == "torch" else f" ({t[f'{m} {v}'] / t[f'{m} torch']:.2f}x)"
        cells.append(f"{t[f'{m} {v}'] * 1e3:.2f}{ratio}")
    print(f"| {B},{T},{I},{H},{P} | {' | '.join(cells)} |", flush=True)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
