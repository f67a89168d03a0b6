"""Benchmarks jaxrnn against PyTorch and flax in one process and prints a table of medians and ratios.

Usage::

  python -m benchmarks.run                      # everything (several minutes on 2 cores)
  python -m benchmarks.run --quick              # fewer repeats, smaller sweep and long-sequence runs
  python -m benchmarks.run --cells lstm --shapes 64x100x32x128 --modes train --sections rnn
  python -m benchmarks.run --markdown out.md    # also write the tables as markdown
  python -m benchmarks.run --malloc tuned       # glibc's malloc keeping freed memory (as jemalloc would)

Times are medians of per-call wall times, measured in interleaved blocks (see
:func:`benchmarks.timing.measure`). The arithmetic floor is the matrix-product
FLOPs (forward ``2 T B (I + H) G H``, training 3x that) over the best measured
rate of a large ``jnp.matmul``. A training target is
``max(0.5 x the faster peer, 1.5 x the floor)``; an inference target is
``0.5 x the faster peer``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys

import jax

import jaxrnn
from benchmarks import long as long_lib
from benchmarks import models, sweep, timing

DEFAULT_SHAPES = "64x100x32x128,16x1000x8x64,32x100x2x8,8x200x64x512"
SECTIONS = ("rnn", "scan", "sweep", "long")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
  p.add_argument("--cells", default=",".join(models.CELLS), help="comma-separated subset of lstm,gru,elman")
  p.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma-separated BxTxIxH shapes")
  p.add_argument("--modes", default="train,infer", help="train, infer or both")
  p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of rnn,scan,sweep,long")
  p.add_argument("--peers", default="torch,flax", help="peers to time: torch, flax, both or none")
  p.add_argument("--no-reference", action="store_true", help="skip jaxrnn's reference path (impl='reference')")
  p.add_argument("--quick", action="store_true", help="fewer repeats and smaller sweep/long runs")
  p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per measurement (default 7, quick 3)")
  p.add_argument("--block-s", type=float, default=None, help="seconds per timed block (default 0.25, quick 0.05)")
  p.add_argument("--markdown", default=None, help="also write the tables as markdown to this file")
  p.add_argument(
    "--sweep-trials",
    default="128",
    help="comma-separated trial counts for the sweep section (default 128, issue 4's sweep; a GPU runs many more "
    "at about the same time per sequence)",
  )
  p.add_argument(
    "--xla-option",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a compiler option for the rnn section's jax.jit of jaxrnn and flax alike, e.g. "
    "xla_cpu_prefer_vector_width=512 (repeatable)",
  )
  p.add_argument(
    "--malloc",
    default="default",
    choices=timing.MALLOC_CHOICES,
    help="glibc's malloc as it comes (default) or tuned to keep freed memory (re-runs the process with "
    "benchmarks.timing.TUNED_MALLOC set; PyTorch's LSTM and flax train much faster so)",
  )
  args = p.parse_args(argv)
  args.cells = [c for c in args.cells.split(",") if c]
  for c in args.cells:
    if c not in models.CELLS:
      p.error(f"unknown cell {c!r}; choose from {models.CELLS}")
  args.shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
  if any(len(s) != 4 for s in args.shapes):
    p.error("--shapes takes BxTxIxH, e.g. 64x100x32x128")
  args.modes = [m for m in args.modes.split(",") if m]
  args.sections = [s for s in args.sections.split(",") if s]
  args.peers = [s for s in args.peers.split(",") if s and s != "none"]
  args.sweep_trials = [int(n) for n in args.sweep_trials.split(",") if n]
  if not args.sweep_trials or min(args.sweep_trials) < 1:
    p.error(f"--sweep-trials takes positive trial counts, e.g. 128,1024; got {args.sweep_trials}")
  if args.rounds is None:
    args.rounds = 3 if args.quick else 7
  if args.block_s is None:
    args.block_s = 0.05 if args.quick else 0.25
  args.options = {}
  for option in args.xla_option:
    try:
      key, value = timing.compiler_option(option)
    except ValueError as e:
      p.error(f"--xla-option: {e}")
    args.options[key] = value
  args.options = args.options or None
  return args


def has_impl() -> bool:
  return "impl" in inspect.signature(jaxrnn.unroll).parameters


def ms(s: float | None) -> str:
  return "-" if s is None else f"{s * 1e3:.2f}"


def table(header: list[str], rows: list[list[str]]) -> tuple[str, str]:
  """The rows as fixed-width text and as markdown."""
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  text = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])
  md = "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"])
  md += "".join("\n| " + " | ".join(r) + " |" for r in rows)
  return text, md


def rnn_section(args: argparse.Namespace, rate: float) -> tuple[str, str]:
  header = ["cell", "B,T,I,H", "mode", "floor", "jaxrnn", "reference", "torch", "flax"]
  header += ["/peer", "/floor", "target", "met"]
  rows = []
  reference = has_impl() and not args.no_reference
  for cell in args.cells:
    for B, T, I, H in args.shapes:
      xs = models.make_inputs(B, T, I)
      opts = args.options
      calls = {"jaxrnn": models.jaxrnn_calls(cell, xs, H, options=opts)}
      if reference:
        calls["reference"] = models.jaxrnn_calls(cell, xs, H, impl="reference", options=opts)
      if "torch" in args.peers:
        calls["torch"] = models.torch_calls(cell, xs, H, device=args.torch_device)
      if "flax" in args.peers:
        calls["flax"] = models.flax_calls(cell, xs, H, options=opts)
      for mode in args.modes:
        k = {"train": 0, "infer": 1}[mode]
        secs = timing.measure({n: c[k] for n, c in calls.items()}, rounds=args.rounds, block_s=args.block_s)
        floor = models.forward_flops(cell, B, T, I, H) * (3.0 if mode == "train" else 1.0) / rate
        peer = min((secs[p] for p in args.peers if p in secs), default=None)
        target = None
        if peer is not None:
          target = max(0.5 * peer, 1.5 * floor) if mode == "train" else 0.5 * peer
        mine = secs["jaxrnn"]
        row = [cell, f"{B},{T},{I},{H}", mode, ms(floor), ms(mine), ms(secs.get("reference"))]
        row += [ms(secs.get("torch")), ms(secs.get("flax"))]
        row += ["-" if peer is None else f"{mine / peer:.2f}", f"{mine / floor:.2f}", ms(target)]
        row += ["-" if target is None else ("yes" if mine <= target else "NO")]
        rows.append(row)
        print("  ".join(row), file=sys.stderr, flush=True)
      del calls
  text, md = table(header, rows)
  note = "Times in ms (medians). /peer: jaxrnn over the faster peer; /floor: jaxrnn over the arithmetic floor."
  return text + "\n" + note, md + "\n\n" + note


def scan_section(args: argparse.Namespace, rate: float) -> tuple[str, str]:
  """The in-scan product floor: a scan doing only the recurrent products, beside the fastest forward pass."""
  header = ["cell", "B,T,I,H", "floor", "scan h W_h", "jaxrnn infer", "torch infer", "GFLOP/s in scan"]
  rows = []
  for cell in args.cells:
    for B, T, I, H in args.shapes:
      xs = models.make_inputs(B, T, I)
      calls = {"scan": models.scan_product_call(cell, B, T, H), "jaxrnn": models.jaxrnn_calls(cell, xs, H)[1]}
      if "torch" in args.peers:
        calls["torch"] = models.torch_calls(cell, xs, H, device=args.torch_device)[1]
      secs = timing.measure(calls, rounds=args.rounds, block_s=args.block_s)
      floor = models.forward_flops(cell, B, T, I, H) / rate
      recurrent_flops = 2.0 * T * B * H * models.GATES[cell] * H
      row = [cell, f"{B},{T},{I},{H}", ms(floor), ms(secs["scan"]), ms(secs["jaxrnn"]), ms(secs.get("torch"))]
      row += [f"{recurrent_flops / secs['scan'] / 1e9:.0f}"]
      rows.append(row)
      print("  ".join(row), file=sys.stderr, flush=True)
  text, md = table(header, rows)
  note = (
    "Times in ms (medians). floor: the forward pass's matrix-product FLOPs at the large-product rate; "
    "scan h W_h: a lax.scan doing only the recurrent products (models.scan_product_call), the least any "
    "scan-based forward pass runs step by step; GFLOP/s in scan: the rate of those small products."
  )
  return text + "\n" + note, md + "\n\n" + note


def sweep_section(args: argparse.Namespace) -> tuple[str, str]:
  T = 100
  sequences = 20 if args.quick else 100
  torch_sequences = 5 if args.quick else 20
  runs: list[tuple[str, int, str | None]] = [("jaxrnn", trials, None) for trials in args.sweep_trials]
  if has_impl() and not args.no_reference:
    runs += [("reference", trials, "reference") for trials in args.sweep_trials]
  rates = {}
  for name, trials, impl in runs:
    label = name if len(args.sweep_trials) == 1 else f"{name}, {trials} trials"
    rates[label] = sweep.rate(sweep.jaxrnn_program(trials, sequences, T, impl=impl), trials * sequences)
  if "torch" in args.peers:
    rates["torch loop"] = sweep.rate(sweep.torch_loop(torch_sequences, T), torch_sequences)
  header = ["program", "trial-sequences/s", "vs torch loop"]
  rows = []
  for name, r in rates.items():
    ratio = f"{r / rates['torch loop']:.1f}x" if "torch loop" in rates else "-"
    rows.append([name, f"{r:,.0f}", ratio])
  text, md = table(header, rows)
  note = (
    f"Online training (one sequence per update) of lstm1997(2, 2, truncated_gradient=True) + 1 sigmoid unit, "
    f"T={T}; jaxrnn: {'/'.join(map(str, args.sweep_trials))} trials x {sequences} sequences vmapped in one "
    f"program; torch: one net on the CPU, {torch_sequences} sequences in a Python loop. Targets (128 trials): "
    ">= 50,000/s and >= 30x the loop."
  )
  return text + "\n" + note, md + "\n\n" + note


def long_section(args: argparse.Namespace) -> tuple[str, str]:
  B, I, H = 16, 32, 128
  T = 2000 if args.quick else 10_000
  options: list[tuple[str, dict]] = [("default", {})]
  if long_lib.supports("remat"):
    options.append(("remat=True", {"remat": True}))
  if has_impl() and not args.no_reference:
    options.append(("reference", {"impl": "reference"}))
  rows = []
  for name, kwargs in options:
    r = long_lib.train_step("lstm", B, T, I, H, **kwargs)
    rows.append([name, f"{r['seconds'] * 1e3:.1f}", f"{r['temp_bytes'] / 2**20:.1f}", f"{r['peak_bytes'] / 2**20:.1f}"])
  text, md = table(["lstm training step", "ms", "temp MiB", "peak MiB"], rows)
  note = (
    f"(B, T, I, H) = ({B}, {T}, {I}, {H}). temp: XLA's scratch buffers for the step; "
    "peak: temp + arguments + outputs (compiled.memory_analysis())."
  )
  return text + "\n" + note, md + "\n\n" + note


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  timing.use_malloc(args.malloc)
  import torch

  torch.set_num_threads(os.cpu_count() or 1)
  # The peers run where JAX runs: PyTorch on CUDA (cuDNN) when JAX's default backend is a GPU.
  args.torch_device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  machine = timing.describe_machine()
  load_start = timing.load_average()
  rate, n = timing.matmul_rate(rounds=args.rounds)
  head = [f"{k}: {v}" for k, v in machine.items()]
  head.append(f"devices: {jax.devices()}; torch device: {args.torch_device}; torch threads: {torch.get_num_threads()}")
  head.append(f"matmul rate: {rate / 1e9:.0f} GFLOP/s (float32 jnp.matmul {n}x{n}, best of 1024, 2048)")
  head.append(f"command: python -m benchmarks.run {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
  out_text, out_md = ["\n".join(head)], ["```\n" + "\n".join(head) + "\n```"]
  for section in args.sections:
    if section == "rnn":
      text, md = rnn_section(args, rate)
    elif section == "scan":
      text, md = scan_section(args, rate)
    elif section == "sweep":
      text, md = sweep_section(args)
    elif section == "long":
      text, md = long_section(args)
    else:
      raise SystemExit(f"unknown section {section!r}; choose from {SECTIONS}")
    out_text.append(f"== {section} ==\n{text}")
    out_md.append(f"### {section}\n\n{md}")
  load = f"load average (1 min): {load_start:.2f} at start, {timing.load_average():.2f} at end"
  out_text.append(load)
  out_md.append(load)
  print("\n\n".join(out_text))
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write("\n\n".join(out_md) + "\n")


if __name__ == "__main__":
  main()
