"""Counts the fresh processes in which a vmapped init never finishes: jaxlib 0.10's batched CPU LAPACK deadlock.

Usage::

  python scripts/lapack_deadlock.py [--runs 8] [--timeout 60] [--cases lstm_jax_orthogonal,lstm,...]

jaxlib 0.10's CPU LAPACK kernels (QR, here) split a batch of matrices over XLA's intra-op thread pool and wait
for the parts. When XLA runs two such batched calls side by side, each can hold a pool thread while its parts
wait behind the other's, and the program hangs. Whether it does depends on thread timing, so each case runs in
``--runs`` fresh processes; a process still running after ``--timeout`` seconds counts as hung (the init itself
takes well under a second). Cases:

* ``lstm_jax_orthogonal``: ``jax.jit(jax.vmap(init))`` over 10 keys of ``jaxrnn.lstm(32,
  recurrent_init=jax.nn.initializers.orthogonal())``: jax's initialiser, one QR per gate, each batched over the
  keys (what ``jaxrnn.lstm(32)`` did before its default became ``jaxrnn.initializers.orthogonal``);
* ``lstm``: the same with ``jaxrnn.lstm(32)``, whose ``jaxrnn.initializers.orthogonal`` decomposes one matrix at
  a time under ``vmap`` on the CPU;
* ``qr_batched4``: four independent ``jnp.linalg.qr`` of ``(10, 32, 32)`` batches in one jitted program;
* ``qr_single8``: eight independent ``jnp.linalg.qr`` of single ``(32, 32)`` matrices in one jitted program.

Prints, per case, the hung processes out of ``--runs``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

PROGRAMS = {
  "lstm_jax_orthogonal": (
    "cell = jaxrnn.lstm(32, recurrent_init=jax.nn.initializers.orthogonal())\n"
    "out = jax.jit(jax.vmap(lambda k: cell.init(k, 2)))(jax.random.split(jax.random.key(seed), 10))"
  ),
  "lstm": (
    "cell = jaxrnn.lstm(32)\n"
    "out = jax.jit(jax.vmap(lambda k: cell.init(k, 2)))(jax.random.split(jax.random.key(seed), 10))"
  ),
  "qr_batched4": (
    "ks = jax.random.split(jax.random.key(seed), 4)\n"
    "out = jax.jit(lambda ks: [jnp.linalg.qr(jax.random.normal(k, (10, 32, 32)))[0] for k in ks])(ks)"
  ),
  "qr_single8": (
    "ks = jax.random.split(jax.random.key(seed), 8)\n"
    "out = jax.jit(lambda ks: [jnp.linalg.qr(jax.random.normal(k, (32, 32)))[0] for k in ks])(ks)"
  ),
}

PRELUDE = "import sys\nimport jax, jax.numpy as jnp, jaxrnn\nseed = int(sys.argv[1])\n"
EPILOGUE = "\njax.block_until_ready(out)\n"


def hung(case: str, seed: int, timeout: float) -> bool:
  """Whether one fresh process running ``case`` was still running after ``timeout`` seconds."""
  code = PRELUDE + PROGRAMS[case] + EPILOGUE
  try:
    subprocess.run([sys.executable, "-c", code, str(seed)], check=True, timeout=timeout, capture_output=True)
  except subprocess.TimeoutExpired:
    return True
  return False


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python scripts/lapack_deadlock.py", description=__doc__.split("\n")[0])
  p.add_argument("--runs", type=int, default=8, help="fresh processes per case")
  p.add_argument("--timeout", type=float, default=60.0, help="seconds after which a process counts as hung")
  p.add_argument("--cases", default=",".join(PROGRAMS), help=f"comma-separated subset of {','.join(PROGRAMS)}")
  args = p.parse_args(argv)
  cases = [c for c in args.cases.split(",") if c]
  unknown = sorted(set(cases) - set(PROGRAMS))
  if unknown:
    p.error(f"--cases: unknown {unknown}; known: {sorted(PROGRAMS)}")
  for case in cases:
    count = sum(hung(case, seed, args.timeout) for seed in range(args.runs))
    print(f"{case}: {count} of {args.runs} processes hung", flush=True)


if __name__ == "__main__":
  main()
