"""Which of jaxrnn's per-step fusions does XLA CPU compile to scalar code?

Usage::

  python -m benchmarks.vectorised [--cells lstm,gru,elman,...] [--shapes 32x100x2x8,32x100x8x12,...]

Not a timing: for each cell, shape and mode (``infer``: the forward pass of ``jaxrnn.unroll``; ``train``: the
gradient of a sum of its outputs) this compiles the program with XLA's dump of its optimised LLVM IR
(``compiler_options={"xla_dump_to": DIR}`` for that one ``jax.jit``) and reads every loop fusion that evaluates a
transcendental (XLA's rational ``tanh``, which the sigmoids also use): *vectorised* if its IR holds any vector
of floats, *scalar* if none. A scalar fusion computes one element at a time, several times slower: at (B, T, I, H)
= (32, 100, 2, 8) the GRU's inference step with two products took 0.36 ms for 100 steps, scalar, and 0.12 with
one product, vectorised (``python -m benchmarks.joint_product --cells gru``, ``BENCHMARKS.md``). Which fusions come
out scalar depends on the widths and on what the fusion reads (for the GRU at H = 8, whether the input-side bias
is added inside it), on jax's version and on the host's vector extensions.
"""

from __future__ import annotations

import argparse
import glob
import re
import tempfile
from collections.abc import Callable

import jax
import jax.numpy as jnp

import jaxrnn

CELLS: dict[str, Callable[[int], jaxrnn.Cell]] = {
  "elman": jaxrnn.elman,
  "elman_relu": lambda h: jaxrnn.elman(h, nonlinearity="relu"),
  "gru": jaxrnn.gru,
  "gru_reset_before": lambda h: jaxrnn.gru(h, reset_after=False),
  "mgu": jaxrnn.mgu,
  "lstm": jaxrnn.lstm,
  "lstm_no_forget": lambda h: jaxrnn.lstm(h, forget_gate=False),
  "lstm_peepholes": lambda h: jaxrnn.lstm(h, peepholes=True),
}
TANH = "f0x3BA059DC"  # a coefficient of XLA's rational tanh, in every fusion that evaluates one
VECTOR = re.compile(r"<\d+ x float>")


def fusions(cell_name: str, mode: str, B: int, T: int, I: int, H: int) -> tuple[list[str], list[str]]:
  """``(vectorised, scalar)``: the names of the compiled program's fusions that evaluate a ``tanh``."""
  cell = CELLS[cell_name](H)
  params = cell.init(jax.random.key(0), I)
  xs = jnp.ones((T, B, I), jnp.float32)
  if mode == "infer":
    fn = lambda p, xs: jaxrnn.unroll(cell, p, xs)[1]  # noqa: E731
  else:
    fn = jax.grad(lambda p, xs: jnp.sum(jaxrnn.unroll(cell, p, xs)[1]))
  vectorised: list[str] = []
  scalar: list[str] = []
  with tempfile.TemporaryDirectory() as d:
    jax.jit(fn, compiler_options={"xla_dump_to": d}).lower(params, xs).compile()
    for path in sorted(glob.glob(f"{d}/*fusion*ir-with-opt.ll")):
      text = open(path).read()
      if TANH not in text:
        continue
      name = re.sub(r"^.*?\.jit_[^.]*\.", "", path).replace("_kernel_module.ir-with-opt.ll", "")
      (vectorised if VECTOR.search(text) else scalar).append(name)
  return vectorised, scalar


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m benchmarks.vectorised", description=(__doc__ or "").split("\n")[0])
  p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {', '.join(CELLS)}")
  p.add_argument("--shapes", default="32x100x2x8,32x100x8x10,32x100x8x12,32x100x8x16,64x100x32x128")
  args = p.parse_args(argv)
  unknown = sorted(set(args.cells.split(",")) - set(CELLS))
  if unknown:
    p.error(f"unknown cells {unknown}; expected some of {sorted(CELLS)}")
  print(f"jax {jax.__version__}")
  print("| cell | B,T,I,H | mode | vectorised | scalar |")
  print("|---|---:|---|---:|---|")
  for shape in args.shapes.split(","):
    B, T, I, H = (int(v) for v in shape.split("x"))
    for cell_name in args.cells.split(","):
      for mode in ("infer", "train"):
        vec, sca = fusions(cell_name, mode, B, T, I, H)
        print(f"| {cell_name} | {B},{T},{I},{H} | {mode} | {len(vec)} | {', '.join(sca) or '-'} |", flush=True)


if __name__ == "__main__":
  main()
