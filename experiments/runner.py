"""The host loop of a run: chunks, progress bar, metrics, checkpoints, resume and the summary.

Files in the run folder:

* ``config.toml``: the resolved config (file + ``--set``), written when a run starts;
* ``metrics.jsonl``: one JSON line per chunk (per ``train.eval_every`` sequences);
* ``checkpoint.npz``: the engine's whole state (see experiments.checkpoint), written every
  ``run.checkpoint_every`` sequences, on Ctrl-C and at the end;
* ``summary.json``: the result, written at the end.

Resume: ``run(..., resume=True)`` loads the checkpoint (params, optimiser states, PRNG keys,
counters, stopping-rule statistics), drops the metrics lines written after it, and continues.
Every chunk is a pure function of the state, and the final test depends only on the final
params and the trials' seeds, so a resumed run ends with the same summary as an uninterrupted
one (apart from wall times).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from experiments import checkpoint, config, train
from experiments.config import Config
from experiments.tasks.base import Task


class RunError(RuntimeError):
  """A run that cannot start (e.g. an existing checkpoint without --resume)."""


Hook = Callable[[dict[str, Any]], None]  # called after each chunk (tests use it to interrupt a run)


def make_task(cfg: Config) -> Task:
  from experiments.tasks import make_task as make

  try:
    return make(cfg.task.name, **cfg.task.params)
  except (TypeError, ValueError) as e:
    raise config.ConfigError(f"{cfg.source or cfg.name or '<config>'}: task.params: {e}") from e


def vector_extensions() -> str:
  """The widest x86 vector extensions of this CPU (``AVX-512`` or ``AVX2``), from ``/proc/cpuinfo``.

  The project's VMs report the same model name ("AMD EPYC") with and without AVX-512. XLA compiles float32
  arithmetic differently for the two (vector widths, so the order of sums), so a trial's trajectory, fixed by its
  seed on one machine, parts between them after a while; and everything runs 2x to 5x slower without AVX-512.
  Run summaries and benchmark headers record which it was.
  """
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
  except OSError:
    return "unknown"
  found = [name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")) if flag in flags]
  return found[0] if found else "none of AVX, AVX2, AVX-512"


def hardware() -> dict[str, Any]:
  devices = jax.devices()
  return {
    "platform": jax.default_backend(),
    "device": devices[0].device_kind,
    "num_devices": len(devices),
    "cpu_count": os.cpu_count(),
    "machine": platform.machine(),
    "processor": platform.processor() or platform.machine(),
    "vector_extensions": vector_extensions(),
    "jax": jax.__version__,
    "python": platform.python_version(),
  }


def _write_atomic(path: Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def _ring_means(stats: train.TrialStats) -> np.ndarray:
  W = stats.ring_mse.shape[-1]
  filled = np.minimum(stats.sequences, W)
  return np.asarray(np.where(filled > 0, stats.ring_mse.sum(-1) / np.maximum(filled, 1), np.nan))


def _done(stats: train.TrialStats, max_sequences: int) -> np.ndarray:
  return np.asarray(stats.solved | (stats.sequences >= max_sequences))


def _metrics_line(cfg: Config, step: int, stats: train.TrialStats, wall_s: float) -> dict[str, Any]:
  errs = _ring_means(stats)
  active = ~_done(stats, cfg.train.max_sequences)
  line = {
    "sequences": step * cfg.train.batch_size,
    "step": step,
    "wall_s": round(wall_s, 3),
    "solved": int(stats.solved.sum()),
    "active": int(active.sum()),
    "train_error_mean": _finite(np.nanmean(errs[active]) if active.any() else np.nanmean(errs)),
    "train_error": [_finite(e) for e in errs],
    "streak": stats.streak.tolist(),
  }
  if cfg.train.stop.rule in ("all_correct", "st12"):
    line["check_wrong"] = stats.check_wrong.tolist()
    line["check_error"] = [_finite(e) for e in stats.check_error]
  return line


def _finite(x: Any) -> float | None:
  x = float(x)
  return x if np.isfinite(x) else None


def _stats4(values: np.ndarray) -> dict[str, float] | None:
  if values.size == 0:
    return None
  return {
    "mean": float(np.mean(values)),
    "median": float(np.median(values)),
    "min": float(np.min(values)),
    "max": float(np.max(values)),
  }


def summarize(
  cfg: Config,
  exp: train.Experiment,
  stats: train.TrialStats,
  test: dict[str, np.ndarray],
  weights: int,
  wall_s: float,
  train_wall_s: float,
) -> dict[str, Any]:
  """The run's result as a JSON-able dict (see the README of experiments for the keys)."""
  solved = np.asarray(stats.solved)
  n = solved.size
  solved_at = np.asarray(stats.solved_at)
  test_idx = solved if solved.any() else np.ones_like(solved)
  test_size = cfg.run.test_size
  wrong = np.asarray(test["wrong"])
  p = cfg.paper
  paper_row = {
    k: getattr(p, k)
    for k in (
      "success_rate",
      "sequences_to_success",
      "st1",
      "test_wrong",
      "test_fraction_wrong",
      "test_error",
      "weights",
      "trials",
    )
  }
  has_paper = any(v is not None for k, v in paper_row.items() if k not in ("weights", "trials"))
  if has_paper:
    paper_row = {k: v for k, v in paper_row.items() if v is not None}
    paper_row.setdefault("success_rate", None)
    paper_row.setdefault("sequences_to_success", None)
  truncated = bool(
    (p.trials is not None and cfg.train.trials < p.trials)
    or (p.max_sequences is not None and cfg.train.max_sequences < p.max_sequences)
  )
  trials = []
  for i, info in enumerate(exp.trial_info):
    trials.append(
      {
        "seed": info["seed"],
        "lr": info["lr"],
        "solved": bool(solved[i]),
        "sequences_to_success": int(solved_at[i]) if solved[i] else None,
        "sequences_to_stop": int(stats.stopped_at[i]) if solved[i] else None,
        "st1": int(stats.st1_at[i]) if stats.st1_at[i] >= 0 else None,
        "sequences_seen": int(stats.sequences[i]),
        "test_wrong": int(wrong[i]),
        "test_error": float(test["error"][i]),
        "test_mse": float(test["mse"][i]),
      }
    )
  summary: dict[str, Any] = {
    "config": cfg.name,
    "experiment": p.experiment,
    "row": p.row,
    "task": cfg.task.name,
    "task_params": dict(cfg.task.params),
    "mode": cfg.model.mode,
    "cell": cfg.model.cell,
    "weights": weights,
    "lr": list(cfg.train.lrs) if len(cfg.train.lrs) > 1 else cfg.train.lrs[0],
    "optimizer": cfg.train.optimizer,
    "batch_size": cfg.train.batch_size,
    "stop_rule": cfg.train.stop.rule,
    "trials": n,
    "solved": int(solved.sum()),
    "success_rate": float(solved.mean()),
    "sequences_to_success": _stats4(solved_at[solved].astype(float)),
    "sequences_to_stop": _stats4(np.asarray(stats.stopped_at)[solved].astype(float)),
    "test_size": test_size,
    "test_trials": "solved" if solved.any() else "all",
    "test_wrong": float(wrong[test_idx].mean()),
    "test_wrong_median": float(np.median(wrong[test_idx])),
    "test_fraction_wrong": float(wrong[test_idx].mean() / test_size),
    "test_error": float(np.asarray(test["error"])[test_idx].mean()),
    "test_mse": float(np.asarray(test["mse"])[test_idx].mean()),
    "paper": paper_row if has_paper else None,
    "budget": {
      "max_sequences": cfg.train.max_sequences,
      "trials_per_lr": cfg.train.trials,
      "paper_trials": p.trials,
      "paper_max_sequences": p.max_sequences,
    },
    "truncated": truncated,
    "paper_baselines": list(p.baselines),
    "wall_s": round(wall_s, 3),
    "train_wall_s": round(train_wall_s, 3),
    "trial_sequences_per_s": float(np.sum(stats.sequences) / train_wall_s) if train_wall_s > 0 else None,
    "hardware": hardware(),
    "per_trial": trials,
  }
  if cfg.train.stop.rule == "st12":
    st1 = np.asarray(stats.st1_at)
    summary["st1"] = _stats4(st1[st1 >= 0].astype(float))
  if len(cfg.train.lrs) > 1:
    by_lr = []
    for lr in cfg.train.lrs:
      idx = np.array([d["lr"] == lr for d in exp.trial_info])
      s = solved & idx
      by_lr.append(
        {
          "lr": lr,
          "trials": int(idx.sum()),
          "success_rate": float(s.sum() / idx.sum()),
          "sequences_to_success": _stats4(solved_at[s].astype(float)),
        }
      )
    summary["by_lr"] = by_lr
  return summary


# Resolved config text -> (Experiment, compiled run_chunk) of the last runs in this process, so running the same
# config again (e.g. --resume from Python, or tests) reuses the compiled programs.
_CACHE: dict[str, tuple[train.Experiment, Any]] = {}


def _build(cfg: Config, cfg_text: str, task: Task | None) -> tuple[train.Experiment, Any]:
  if task is None and cfg_text in _CACHE:
    return _CACHE[cfg_text]
  exp = train.build(cfg, task if task is not None else make_task(cfg))
  return exp, None


def precision(cfg: Config) -> contextlib.AbstractContextManager[Any]:
  """The context a run of ``cfg`` is built and run in: ``jax.enable_x64`` for ``model.dtype = "float64"``.

  Scoped, so that a float64 run leaves the process's default (float32) as it was; the diagnostics
  that rebuild a run's model from its checkpoint enter it too.
  """
  return jax.enable_x64(True) if cfg.model.dtype == "float64" else contextlib.nullcontext()


def run(
  cfg: Config,
  out_dir: str | Path,
  *,
  resume: bool = False,
  progress: bool = True,
  hook: Hook | None = None,
  task: Task | None = None,
  command: str | None = None,
) -> dict[str, Any]:
  """Runs (or resumes) the experiment ``cfg``, writing its files to ``out_dir``; returns the summary.

  ``command`` (the shell command that reproduces the run) is recorded in the summary for the report.
  """
  with precision(cfg):
    return _run(cfg, out_dir, resume=resume, progress=progress, hook=hook, task=task, command=command)


def _run(
  cfg: Config,
  out_dir: str | Path,
  *,
  resume: bool,
  progress: bool,
  hook: Hook | None,
  task: Task | None,
  command: str | None,
) -> dict[str, Any]:
  start = time.perf_counter()
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  ckpt_path = out / "checkpoint.npz"
  metrics_path = out / "metrics.jsonl"
  cfg_text = config.dumps(cfg)
  if ckpt_path.exists() and not resume:
    if not (out / "summary.json").exists():  # an unfinished run: never throw its work away silently
      raise RunError(f"{out} holds the checkpoint of an unfinished run: pass --resume to continue it, or another --out")
    ckpt_path.unlink()  # a finished run is simply run again from the start
  resuming = resume and ckpt_path.exists()
  if resuming:
    # Compared as configs, not as text: a run written before a config field was added (with its
    # default) resumes.
    old = config.load(out / "config.toml") if (out / "config.toml").exists() else None
    if old is None or dataclasses.replace(old, name=cfg.name) != cfg:
      raise RunError(
        f"{out}/config.toml differs from this run's resolved config; resume with the same config and --set options"
      )

  exp, compiled = _build(cfg, cfg_text, task)
  state = exp.init_state()
  weights = train.count_weights(train.trial_params(state, 0))
  wall_before = train_wall_before = 0.0
  n_lines = 0
  if resuming:
    state, meta = checkpoint.load(ckpt_path, state)
    wall_before, train_wall_before = meta["wall_s"], meta["train_wall_s"]
    n_lines = meta["metrics_lines"]
    lines = metrics_path.read_text().splitlines(keepends=True) if metrics_path.exists() else []
    _write_atomic(metrics_path, "".join(lines[:n_lines]))
  else:
    _write_atomic(out / "config.toml", cfg_text)
    _write_atomic(metrics_path, "")
    (out / "summary.json").unlink(missing_ok=True)

  # Compiled once, ahead of time: a call with a state of another shape or dtype would raise, never retrace.
  t0 = time.perf_counter()
  run_chunk = compiled if compiled is not None else exp.run_chunk.lower(state).compile()
  if task is None:
    _CACHE[cfg_text] = (exp, run_chunk)
    while len(_CACHE) > 2:
      _CACHE.pop(next(iter(_CACHE)))
  compile_s = time.perf_counter() - t0
  B, max_seq, every = cfg.train.batch_size, cfg.train.max_sequences, cfg.run.checkpoint_every
  step = int(state.step)
  stats = jax.device_get(state.trials.stats)
  train_wall = 0.0

  def save(state: train.State, step: int) -> None:
    now = time.perf_counter()
    checkpoint.save(
      ckpt_path,
      state,
      {
        "step": step,
        "sequences": step * B,
        "metrics_lines": n_lines,
        "wall_s": wall_before + now - start,
        "train_wall_s": train_wall_before + train_wall,
        "config": cfg.name,
      },
    )

  bar = tqdm(
    total=max_seq,
    initial=min(step * B, max_seq),
    unit="seq",
    desc=cfg.name or "run",
    disable=not progress,
    file=sys.stderr,
    dynamic_ncols=True,
  )
  next_ckpt = (step * B // every + 1) * every
  try:
    with open(metrics_path, "a") as metrics_file:
      while not _done(stats, max_seq).all():
        t0 = time.perf_counter()
        new_state = run_chunk(state)
        new_step, new_stats = jax.device_get((new_state.step, new_state.trials.stats))
        train_wall += time.perf_counter() - t0
        line = _metrics_line(cfg, int(new_step), new_stats, wall_before + time.perf_counter() - start)
        metrics_file.write(json.dumps(line) + "\n")
        metrics_file.flush()
        # Only now is the chunk done: a Ctrl-C before this line saves the previous state, whose metrics
        # lines are exactly the n_lines written before.
        state, step, stats, n_lines = new_state, int(new_step), new_stats, n_lines + 1
        bar.update(min(step * B, max_seq) - bar.n)
        err = line["train_error_mean"]
        bar.set_postfix(solved=f"{line['solved']}/{len(exp.trial_info)}", err="-" if err is None else f"{err:.4g}")
        checkpointed = step * B >= next_ckpt
        if checkpointed:
          save(state, step)
          next_ckpt = (step * B // every + 1) * every
        if hook is not None:
          hook({"step": step, "sequences": step * B, "checkpointed": checkpointed, "line": line})
  except KeyboardInterrupt:
    bar.close()
    save(state, step)
    print(f"\ninterrupted at {step * B} sequences; checkpoint saved: resume with --resume --out {out}", file=sys.stderr)
    raise
  bar.close()
  save(state, step)

  test = jax.device_get(exp.test(state.trials.params))
  summary = summarize(
    cfg,
    exp,
    stats,
    test,
    weights,
    wall_s=wall_before + time.perf_counter() - start,
    train_wall_s=train_wall_before + train_wall,
  )
  summary["compile_s"] = round(compile_s, 3)
  summary["command"] = command
  _write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
  return summary


def format_row(summary: dict[str, Any]) -> str:
  """Our row beside the paper's, as a small Markdown table."""

  def seqs(s: Any) -> str:
    if isinstance(s, dict):
      return f"{s['mean']:,.0f}"
    return "-" if s is None else f"{s:,.0f}"

  def pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"

  paper = summary.get("paper") or {}
  rows = [
    "| | trials | success | sequences to success | wrong of test | test error |",
    "|---|---|---|---|---|---|",
    f"| ours ({summary['mode']} {summary['cell']}) | {summary['trials']} | {pct(summary['success_rate'])} | "
    f"{seqs(summary['sequences_to_success'])} | {summary['test_wrong']:.1f} (median {summary['test_wrong_median']:g}) "
    f"of {summary['test_size']} | "
    f"{summary['test_error']:.4g} |",
  ]
  if paper:
    tw = paper.get("test_wrong")
    if tw is None and paper.get("test_fraction_wrong") is not None:
      tw = paper["test_fraction_wrong"] * 2560
    rows.append(
      f"| paper | {paper.get('trials', '-')} | {pct(paper.get('success_rate'))} | "
      f"{seqs(paper.get('sequences_to_success'))} | {'-' if tw is None else f'{tw:g} of 2560'} | "
      f"{paper.get('test_error', '-')} |"
    )
  return "\n".join(rows)
