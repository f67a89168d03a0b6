"""What does the fast path gain for the 1997 LSTM (``jaxrnn.lstm1997``), in a layer and in the experiments?

Usage::

  python -m benchmarks.lstm1997 [--cells lstm1997,lstm1997_truncated] [--rounds 7]
      [--shapes 64x100x32x128,16x1000x8x64,32x100x2x8,8x200x64x512]
      [--configs configs/exp4_adding_t100.toml,configs/exp6a.toml,configs/exp2c_q100_p100.toml]

A layer: ``H`` is the number of memory cells, in blocks of 4 (``lstm1997(H // 4, 4)``, every unit biased);
``lstm1997`` has the full gradient and ``lstm1997_truncated`` the paper's truncated one. This times, in one
process with :func:`benchmarks.timing.measure` (interleaved blocks), the training step (forward and backward,
loss ``mean(ys ** 2)``) and the forward pass on the fast path (``fused``) and on the plain ``lax.scan`` of the
cell's step (``reference``), after checking that the fast path's outputs and gradients are as close to a float64
run as the plain scan's (or within 1e-5 and 1e-4 of it, relative), and prints medians in milliseconds and the
fast path's time over the plain scan's; then each path's largest distance from the float64 outputs, relative to
their largest entry.

The experiments: for each config of ``--configs`` (``""``: none), one compiled chunk of training
(``train.eval_every`` sequences for every trial, vmapped) with ``model.unroll_impl = "reference"`` (the paper
rows' default) and ``"auto"`` (the fast path), medians in seconds per chunk.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks import models, timing

VARIANTS = ("fused", "reference")
CELLS = "lstm1997,lstm1997_truncated"
BLOCK = 4  # cells per memory block
SHAPES = "64x100x32x128,16x1000x8x64,32x100x2x8,8x200x64x512"  # issue 4's
CONFIGS = "configs/exp4_adding_t100.toml,configs/exp6a.toml,configs/exp2c_q100_p100.toml"


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking fused = reference."""
  if cell_name not in CELLS.split(",") or H % BLOCK:
    raise SystemExit(f"benchmarks.lstm1997 times --cells {CELLS} with H a multiple of {BLOCK}, got {cell_name!r}, {H}")
  cell = jaxrnn.lstm1997(H // BLOCK, BLOCK, truncated_gradient=cell_name.endswith("truncated"))
  params = cell.init(jax.random.key(0), I)
  xs = jnp.asarray(models.make_inputs(B, T, I))
  variants = {"fused": (cell, {}), "reference": (cell, {"impl": "reference"})}

  def agree(results: dict[str, tuple[Any, Any]]) -> None:
    # Both paths against float64; the fast path must be as close as the plain scan (or within 1e-5 / 1e-4).
    with jax.enable_x64(True):
      grad, fwd = models.unroll_step_and_forward(cell, impl="reference")
      p64, x64 = jax.tree.map(lambda a: a.astype(jnp.float64), (params, xs))
      exact = jax.device_get((fwd(p64, x64), grad(p64, x64)))
    errors = {name: _errors(got, exact) for name, got in results.items()}
    ERRORS[(cell_name, B, T, I, H)] = {name: e[0] for name, e in errors.items()}
    for e_fused, e_ref, tol in zip(errors["fused"], errors["reference"], [1e-5] + [1e-4] * (len(errors["fused"]) - 1)):
      assert e_fused <= max(tol, 3.0 * e_ref), (cell_name, B, T, I, H, errors)

  return models.time_unroll_variants(variants, params, xs, agree=agree, rounds=rounds)


ERRORS: dict[tuple[str, int, int, int, int], dict[str, float]] = {}  # outputs' distance from float64, per variant


def _errors(got: tuple[Any, Any], exact: tuple[Any, Any]) -> list[float]:
  """``max |got - exact| / max |exact|`` of the outputs, then of each gradient leaf."""
  pairs = zip(jax.tree.leaves(got), jax.tree.leaves(exact), strict=True)
  return [float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(float(np.max(np.abs(b))), 1e-30)) for a, b in pairs]


def chunk_call(path: str, impl: str) -> Any:
  """A blocking call that runs one compiled training chunk of the config at ``path``, trials carried on."""
  from experiments import config, runner, train

  cfg = config.load(path, [f"model.unroll_impl={impl}"])
  exp = train.build(cfg, runner.make_task(cfg))
  state = [exp.init_state()]

  def call() -> None:
    state[0] = jax.block_until_ready(exp.run_chunk(state[0]))

  return call, cfg


def time_configs(paths: list[str], rounds: int) -> None:
  print()
  print("| config | trials x sequences per chunk | reference (s) | auto (s) | auto / reference |")
  print("|---|---:|---:|---:|---:|")
  for path in paths:
    (ref, cfg), (auto, _) = chunk_call(path, "reference"), chunk_call(path, "auto")
    t = timing.measure({"reference": ref, "auto": auto}, rounds=rounds, block_s=1.0)
    size = f"{cfg.train.trials * len(cfg.train.lrs)} x {cfg.train.eval_every}"
    print(
      f"| {path} | {size} | {t['reference']:.3f} | {t['auto']:.3f} | {t['auto'] / t['reference']:.2f}x |", flush=True
    )


def main(argv: list[str] | None = None) -> None:
  p = timing.shape_arguments("lstm1997", __doc__, SHAPES)
  p.add_argument("--cells", default=CELLS, help=f"comma-separated cells (default {CELLS})")
  p.add_argument("--configs", default=CONFIGS, help="comma-separated experiment configs ('': none)")
  args = p.parse_args(argv)
  timing.variant_table_main(
    "lstm1997",
    __doc__,
    VARIANTS,
    time_shape,
    base="reference",
    unratioed=("reference",),
    argv=["--cells", args.cells, "--shapes", args.shapes, "--rounds", str(args.rounds)],
    cells=CELLS,
  )
  print()
  print("| cell | B,T,I,H | outputs from float64, fused | outputs from float64, reference |")
  print("|---:|---:|---:|---:|")
  for (cell_name, B, T, I, H), e in ERRORS.items():
    print(f"| {cell_name} | {B},{T},{I},{H} | {e['fused']:.1e} | {e['reference']:.1e} |")
  if args.configs:
    time_configs(args.configs.split(","), args.rounds)
  print(f"load average (1 min): {timing.load_average():.2f}")


if __name__ == "__main__":
  main()
