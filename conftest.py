"""Strict JAX for the whole suite and the doctests (equinox's conftest does the same).

float64 gradient checks switch it on locally with ``jax.enable_x64(True)``;
everything else runs in the float32 default.

Matrix products run at full float32 precision on every backend. On GPU, JAX's default computes float32
products in TF32 (about 3 significant digits), which the suite's 1e-5 comparisons against float32
references would fail; on CPU this setting changes nothing.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_default_matmul_precision", "highest")
