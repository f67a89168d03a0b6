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
import re
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


def of_run(run_dir: str | Path) -> Path:
  """The checkpoint of a finished run in ``run_dir``, for the diagnostics that read its trained weights.

  Raises SystemExit with how to make one when it is missing: the rows committed under ``results/`` keep only
  ``config.toml``, ``metrics.jsonl`` and ``summary.json`` (checkpoints are git-ignored), so a row must be
  re-run, into a folder of one's own, before its nets can be inspected.
  """
  run_dir = Path(run_dir)
  path = run_dir / "checkpoint.npz"
  if path.exists():
    return path
  message = f"{path}: no checkpoint, and this script reads a run's trained weights from it."
  summary = run_dir / "summary.json"
  if summary.exists():
    command = json.loads(summary.read_text()).get("command")
    if command:
      command = re.sub(r"--out \S+", f"--out runs/{run_dir.name}", command)
      command += "" if "--out " in command else f" --out runs/{run_dir.name}"
      message += (
        " Committed results keep only config.toml, metrics.jsonl and summary.json. Re-run the row with"
        f" `{command}`, then point this script at runs/{run_dir.name}."
      )
  raise SystemExit(message)
