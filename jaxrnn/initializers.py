"""Initialisers for jaxrnn cells (``jax.nn.initializers`` signature: ``init(key, shape, dtype)``)."""

from jaxrnn._src.initializers import Initializer as Initializer
from jaxrnn._src.initializers import constant as constant
from jaxrnn._src.initializers import glorot_normal as glorot_normal
from jaxrnn._src.initializers import glorot_uniform as glorot_uniform
from jaxrnn._src.initializers import lecun_normal as lecun_normal
from jaxrnn._src.initializers import ones as ones
from jaxrnn._src.initializers import orthogonal as orthogonal
from jaxrnn._src.initializers import torch_default as torch_default
from jaxrnn._src.initializers import uniform as uniform
from jaxrnn._src.initializers import zeros as zeros
