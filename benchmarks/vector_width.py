"""Does XLA CPU's 512-bit vector width, set for one ``jax.jit``, speed up ``jaxrnn.unroll``?

Usage::

  python -m benchmarks.vector_width [--cells lstm,gru,elman] [--shapes 64x100x32x128,...] [--rounds 7]

XLA CPU compiles elementwise code for 256-bit vectors unless told otherwise, also on CPUs with AVX-512
(this project's AMD EPYC has it). ``jax.jit(f, compiler_options={"xla_cpu_prefer_vector_width": 512})``
changes that for one function, with no global ``XLA_FLAGS``. For each (cell, shape) of ``benchmarks.run``'s
rnn table this times jaxrnn's forward pass (inference) and its training step (forward + backward of a sum of
squares) compiled both ways, interleaved in one process (:func:`benchmarks.timing.measure`), after checking
that both give the same outputs and gradients, and prints the medians and their ratio. The experiment engine
(``python -m experiments run``) is measured by ``--engine ROW``: trial-sequences per second of one compiled
chunk of online training, both ways. ``--option KEY=VALUE`` compares another per-jit compiler option the
same way.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from benchmarks.run import DEFAULT_SHAPES

WIDE = {"xla_cpu_prefer_vector_width": 512}
ROOT = Path(__file__).resolve().parent.parent


def time_cell(
  cell_name: str, shape: tuple[int, int, int, int], rounds: int, option: dict[str, Any] = WIDE
) -> dict[str, float]:
  """Medians in seconds of inference and training, compiled with the default and with 512-bit vectors."""
  import jaxrnn

  B, T, I, H = shape
  cell = getattr(jaxrnn, cell_name)(H)
  params = cell.init(jax.random.key(0), I)
  xs = jax.random.normal(jax.random.key(1), (T, B, I))

  def infer(p: Any, x: jax.Array) -> jax.Array:
    return jaxrnn.unroll(cell, p, x)[1]

  train = jax.grad(lambda p, x: jnp.sum(infer(p, x) ** 2))
  fns = {}
  for mode, fn in (("infer", infer), ("train", train)):
    plain, wide = jax.jit(fn), jax.jit(fn, compiler_options=option)
    for a, b in zip(jax.tree.leaves(plain(params, xs)), jax.tree.leaves(wide(params, xs)), strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
    fns[f"{mode} 256"] = functools.partial(lambda f: jax.block_until_ready(f(params, xs)), plain)
    fns[f"{mode} 512"] = functools.partial(lambda f: jax.block_until_ready(f(params, xs)), wide)
  return timing.measure(fns, rounds=rounds)


def time_engine(row: str, trials: int, chunk: int, rounds: int, option: dict[str, Any] = WIDE) -> dict[str, float]:
  """Trial-sequences per second of the experiment engine's compiled chunk, default and 512-bit vectors."""
  from experiments import config, train
  from experiments.tasks import make_task

  cfg = config.load(ROOT / "configs" / f"{row}.toml", [f"train.trials={trials}", f"train.eval_every={chunk}"])
  task = make_task(cfg.task.name, **cfg.task.params)
  plain = train.build(cfg, task)
  jit = jax.jit

  def wide_jit(fun: Any, **kw: Any) -> Any:
    return jit(fun, **{**kw, "compiler_options": {**(kw.get("compiler_options") or {}), **option}})

  jax.jit = wide_jit  # type: ignore[assignment]  # train.build jits its chunk with jax.jit
  try:
    wide = train.build(cfg, task)
  finally:
    jax.jit = jit
  states = {"256": plain.init_state(), "512": wide.init_state()}
  exps = {"256": plain, "512": wide}
  after = {k: exps[k].run_chunk(states[k]) for k in exps}
  for a, b in zip(
    jax.tree.leaves(after["256"].trials.params), jax.tree.leaves(after["512"].trials.params), strict=True
  ):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  calls = {k: functools.partial(lambda k: jax.block_until_ready(exps[k].run_chunk(states[k])), k) for k in exps}
  secs = timing.measure(calls, rounds=rounds, block_s=1.0)
  return {k: trials * chunk / v for k, v in secs.items()}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.vector_width", description=__doc__.split("\n")[0])
  parser.add_argument("--cells", default="lstm,gru,elman")
  parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma-separated BxTxIxH")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--engine", default="exp6a,exp4_adding_t100", help="config rows for the engine table ('' skips)")
  parser.add_argument("--trials", type=int, default=20)
  parser.add_argument("--chunk", type=int, default=200)
  parser.add_argument(
    "--option",
    default=None,
    metavar="KEY=VALUE",
    help="compare this per-jit compiler option instead (the columns 256 and 512 then mean default and option)",
  )
  args = parser.parse_args(argv)
  option = WIDE
  if args.option is not None:
    try:
      option = dict([timing.compiler_option(args.option)])
    except ValueError as e:
      parser.error(f"--option: {e}")
    print(f"option: {option}")
  print("\n".join(f"{k}: {v}" for k, v in timing.describe_machine().items()))
  print(f"load average at start: {timing.load_average():.2f}\n")
  print("| cell | B,T,I,H | infer 256 | infer 512 | ratio | train 256 | train 512 | ratio |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|")
  for cell in args.cells.split(","):
    for text in args.shapes.split(","):
      shape = tuple(int(v) for v in text.split("x"))
      t = {k: v * 1e3 for k, v in time_cell(cell, shape, args.rounds, option).items()}  # type: ignore[arg-type]
      print(
        f"| {cell} | {','.join(map(str, shape))} | {t['infer 256']:.2f} | {t['infer 512']:.2f} | "
        f"{t['infer 512'] / t['infer 256']:.2f} | {t['train 256']:.2f} | {t['train 512']:.2f} | "
        f"{t['train 512'] / t['train 256']:.2f} |",
        flush=True,
      )
  if args.engine:
    print("\n| row (engine, online) | 256 (trial-seq/s) | 512 (trial-seq/s) | ratio |")
    print("|---|---:|---:|---:|")
    for row in args.engine.split(","):
      r = time_engine(row, args.trials, args.chunk, 3, option)
      print(f"| {row} | {r['256']:,.0f} | {r['512']:,.0f} | {r['512'] / r['256']:.2f} |", flush=True)
  print(f"\nload average at end: {timing.load_average():.2f}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
