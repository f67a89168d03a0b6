"""Strict JAX for the whole suite and the doctests (equinox's conftest does the same), compiled for speed of
compiling.

float64 gradient checks switch it on locally with ``jax.enable_x64(True)``;
everything else runs in the float32 default.

Matrix products run at full float32 precision on every backend. On GPU, JAX's default computes float32
products in TF32 (about 3 significant digits), which the suite's 1e-5 comparisons against float32
references would fail; on CPU this setting changes nothing.
"""

import os
import subprocess
import sys

# The suite compiles hundreds of small programs and runs each briefly, so compiling dominates its time. Two XLA
# settings make compiling cheaper; they change how fast the compiled code runs, not what it computes:
# - LLVM's optimisation level 0 (tests/test_tasks.py: 39 s against 64 s on a 2-core VM);
# - XLA CPU's older elemental emitters instead of its fusion emitters (the whole suite: 213 s against 365 s on a
#   2-core VM, 2026-11-23; the compiled code runs slower, which tests hardly notice).
# They must be in XLA_FLAGS before JAX starts its backend. XLA aborts on a flag it does not know, and these are
# tuning flags that a later jaxlib may drop, so each is first tried in a child process; pytest-xdist's workers
# inherit the result.
_COMPILE_FAST = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
_PROBED = "JAXRNN_TESTS_XLA_FLAGS_PROBED"


def _xla_accepts(flag: str) -> bool:
  env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
  code = "import jax; jax.numpy.zeros(1).block_until_ready()"
  return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


if not os.environ.get(_PROBED):
  accepted = [flag for flag in _COMPILE_FAST if _xla_accepts(flag)]
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *accepted]).strip()
  os.environ[_PROBED] = "1"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_default_matmul_precision", "highest")

import pytest  # noqa: E402

# Keras's own code (its initialisers and layers) is written for JAX's default promotion rules, so the tests and
# doctests that build Keras layers run under them; jaxrnn's code stays under the strict rules everywhere else.
_KERAS_TESTS = ("test_parity_keras.py", "interop.from_keras", "interop.to_keras")


@pytest.fixture(autouse=True)
def _default_promotion_for_keras(request):
  if any(name in request.node.nodeid for name in _KERAS_TESTS):
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
      yield
  else:
    yield
