"""Strict JAX for the whole suite and the doctests (equinox's conftest does the same).

float64 gradient checks switch it on locally with ``jax.enable_x64(True)``;
everything else runs in the float32 default.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
