"""Conversion of PyTorch and flax parameters (see jaxrnn._src.interop)."""
