"""Strict JAX for the whole suite and the doctests (equinox's conftest does the same), compiled for speed of
compiling.

float64 gradient checks switch it on locally with ``jax.enable_x64(True)``;
everything else runs in the float32 default.

Matrix products run at full float32 precision on every backend. On GPU, JAX's default computes float32
products in TF32 (about 3 significant digits), which the suite's 1e-5 comparisons against float32
references would fail; on CPU this setting changes nothing.
"""

import os

# The suite compiles hundreds of small programs and runs each briefly, so compiling dominates its time. LLVM's
# optimisation level 0 compiles them about 1.6x faster (tests/test_tasks.py: 39 s against 64 s on a 2-core VM);
# it changes how fast the compiled code runs, not what it computes. Set before JAX starts its backend.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_default_matmul_precision", "highest")
