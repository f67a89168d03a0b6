"""Atomic checkpoints of the engine's state as one ``.npz`` (no pickle).

The file holds every leaf of the :class:`experiments.train.State` pytree as
``leaf_00000``, ``leaf_00001``, ... in ``jax.tree.flatten`` order, plus the run's
host-side metadata as JSON bytes under ``meta``. The tree structure is not
stored: it is rebuilt from the config (``Experiment.init_state()``), and every
leaf's shape and dtype is checked against it. Writing goes to a temporary file
in the same folder, is flushed to disk, then renamed over the old checkpoint
(``os.replace`` is atomic), so a kill at any moment leaves either the old or
the new checkpoint, never half of one.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np

FORMAT = 1


def save(path: str | Path, state: Any, meta: dict[str, Any]) -> None:
  """Writes ``state`` (a pytree of arrays) and ``meta`` (JSON-able) to ``path`` atomically."""
  path = Path(path)
  leaves = jax.device_get(jax.tree.leaves(state))
  arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
  meta = {**meta, "format": FORMAT, "num_leaves": len(leaves)}
  arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
  buf = io.BytesIO()
  np.savez(buf, **cast(dict[str, Any], arrays))  # numpy's stubs type **kwds as its allow_pickle flag
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "wb") as f:
    f.write(buf.getvalue())
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def load(path: str | Path, template: Any) -> tuple[Any, dict[str, Any]]:
  """Reads a checkpoint into the structure of ``template``; returns ``(state, meta)``."""
  path = Path(path)
  with np.load(path, allow_pickle=False) as data:
    meta = json.loads(bytes(data["meta"]).decode())
    if meta.get("format") != FORMAT:
      raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    leaves, treedef = jax.tree.flatten(template)
    if meta["num_leaves"] != len(leaves):
      raise ValueError(f"{path}: {meta['num_leaves']} arrays, but the config's state has {len(leaves)}")
    restored = []
    for i, ref in enumerate(leaves):
      a = data[f"leaf_{i:05d}"]
      if a.shape != np.shape(ref) or a.dtype != np.asarray(ref).dtype:
        raise ValueError(
          f"{path}: array {i} has shape {a.shape} {a.dtype}, the config's state has {np.shape(ref)} "
          f"{np.asarray(ref).dtype}; was it written by another config?"
        )
      restored.append(jax.numpy.asarray(a))
  return jax.tree.unflatten(treedef, restored), meta
