"""Conversion of PyTorch, flax.linen, flax.nnx, equinox, Haiku and Keras parameters (see jaxrnn._src.interop)."""

from jaxrnn._src.interop import from_equinox as from_equinox
from jaxrnn._src.interop import from_flax as from_flax
from jaxrnn._src.interop import from_flax_carry as from_flax_carry
from jaxrnn._src.interop import from_haiku as from_haiku
from jaxrnn._src.interop import from_keras as from_keras
from jaxrnn._src.interop import from_nnx as from_nnx
from jaxrnn._src.interop import from_torch as from_torch
from jaxrnn._src.interop import from_torch_state as from_torch_state
from jaxrnn._src.interop import to_equinox as to_equinox
from jaxrnn._src.interop import to_flax as to_flax
from jaxrnn._src.interop import to_flax_carry as to_flax_carry
from jaxrnn._src.interop import to_haiku as to_haiku
from jaxrnn._src.interop import to_keras as to_keras
from jaxrnn._src.interop import to_nnx as to_nnx
from jaxrnn._src.interop import to_torch as to_torch
from jaxrnn._src.interop import to_torch_state as to_torch_state
