"""Side-by-side speed benchmarks of jaxrnn, PyTorch and flax on CPU (``python -m benchmarks.run``)."""
