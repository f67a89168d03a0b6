"""``python -m experiments report RUNS... --out RESULTS.md``: our rows beside the paper's, with learning curves.

An overview first (each paper row: ours, the paper's, and whether it is reproduced), then one table per
experiment (the ``paper.experiment`` of each run's config), one row per run with the paper's numbers beside
ours, the task's baselines below, and a learning-curve PNG per run (training error against training sequences,
from metrics.jsonl) in ``<out folder>/figures/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def _load(run: Path) -> dict[str, Any]:
  path = run / "summary.json"
  if not path.exists():
    raise ValueError(f"{run}: no summary.json (is the run finished?)")
  return json.loads(path.read_text())


def _seqs(x: Any) -> str:
  if isinstance(x, dict):
    return f"{x['mean']:,.0f}"
  return "-" if x is None else f"{x:,.0f}"


def _pct(x: Any) -> str:
  return "-" if x is None else f"{100 * x:.0f}%"


def _paper_wrong(paper: dict[str, Any]) -> str:
  if paper.get("test_wrong") is not None:
    return f"{paper['test_wrong']:g}"
  if paper.get("test_fraction_wrong") is not None:
    return f"{paper['test_fraction_wrong'] * 2560:.1f}"
  return "-"


def learning_curve(run: Path, png: Path) -> bool:
  """Plots the run's training error against sequences; False if it has no metrics."""
  lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
  if not lines:
    return False
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  seqs = [x["sequences"] for x in lines]
  fig, ax = plt.subplots(figsize=(6, 3.5))
  n = len(lines[0]["train_error"])
  for i in range(n):
    ax.plot(seqs, [x["train_error"][i] if x["train_error"][i] is not None else float("nan") for x in lines], lw=0.5)
  mean = [x["train_error_mean"] if x["train_error_mean"] is not None else float("nan") for x in lines]
  ax.plot(seqs, mean, color="black", lw=1.5, label="mean over active trials")
  ax.set_yscale("log")
  ax.set_xlabel("training sequences")
  ax.set_ylabel("training error (mean loss per scored output)")
  ax.set_title(run.name)
  ax.legend(loc="upper right", fontsize=8)
  fig.tight_layout()
  png.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(png, dpi=100)
  plt.close(fig)
  return True


def _baselines(s: dict[str, Any]) -> list[str]:
  try:
    from experiments.tasks import baselines

    values = baselines(s["task"], **s.get("task_params", {}))
  except Exception:  # a task without quoted baselines, or parameters it does not read
    values = {}
  out = [f"{k} = {v:.4g}" for k, v in values.items()]
  return out


def _natural(name: str) -> list[Any]:
  """A sort key that orders the numbers inside ``name`` by value (``t500`` before ``t1000``)."""
  return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", name)]


def verdict(s: dict[str, Any]) -> str:
  """Whether a run reproduces its paper row by issue 3's bar: ``"yes"``, ``"partly"`` or ``"no"``.

  "yes" is at least the paper's success rate with a mean of sequences to success at most twice the paper's;
  "no" is no trial solved; "partly" is anything between. Where the paper gives no success rate (it reports a
  mean over its trials and no failures), the bar is every trial solved.
  """
  paper = s.get("paper") or {}
  if not s["success_rate"]:
    return "no"
  bar = paper.get("success_rate")
  bar = 1.0 if bar is None else bar
  mean = (s.get("sequences_to_success") or {}).get("mean")
  paper_mean = paper.get("sequences_to_success")
  fast = paper_mean is None or (mean is not None and mean <= 2 * paper_mean)
  return "yes" if s["success_rate"] >= bar - 1e-9 and fast else "partly"


def _glance(summaries: list[tuple[Path, dict[str, Any]]]) -> list[str]:
  """One line per paper row run in paper mode (ablations left out): ours, the paper's, and the verdict."""
  rows = [s for _, s in summaries if s["mode"] == "paper" and s.get("paper")]
  rows = [s for s in rows if not s["config"].startswith("ablation_")]
  if not rows:
    return []
  rows.sort(key=lambda s: (s.get("experiment") or s["task"], _natural(s["config"])))
  text = [
    "## At a glance",
    "",
    "Each paper row run in paper mode: reproduced (*yes*) when at least the paper's success rate is reached",
    "with at most twice its mean sequences to success (where the paper gives no rate, every trial must",
    "solve); *partly* when some trials solve; *no* when none does. Details, ablations and the analysis below.",
    "",
    "| experiment | row | trials | success ours / paper | sequences ours / paper | ratio | reproduced |",
    "|---|---|---|---|---|---|---|",
  ]
  verdicts = [verdict(s) for s in rows]
  for s, v in zip(rows, verdicts):
    paper = s["paper"]
    mean = (s.get("sequences_to_success") or {}).get("mean")
    paper_mean = paper.get("sequences_to_success")
    ratio = f"{mean / paper_mean:.2f}x" if mean is not None and paper_mean else "-"
    cut = " (truncated)" if s["truncated"] else ""
    text.append(
      f"| {s.get('experiment') or s['task']} | {s.get('row', s['config'])} | {s['trials']}{cut} | "
      f"{_pct(s['success_rate'])} / {_pct(paper.get('success_rate'))} | "
      f"{_seqs(s['sequences_to_success'])} / {_seqs(paper_mean)} | {ratio} | {v} |"
    )
  counts = {v: verdicts.count(v) for v in ("yes", "partly", "no")}
  text += ["", f"Of {len(rows)} rows: {counts['yes']} reproduced, {counts['partly']} partly, {counts['no']} not."]
  return text


def write_report(runs: list[Path], out: Path, notes: Path | None = None) -> Path:
  """Writes the Markdown report of ``runs`` to ``out`` (and PNGs beside it); returns ``out``.

  ``notes``, a Markdown file, is copied in after the report's introduction (the analysis of the runs).
  """
  summaries = [(run, _load(run)) for run in runs]
  groups: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
  for run, s in summaries:
    groups.setdefault(s.get("experiment") or s["task"], []).append((run, s))
  figures = out.parent / "figures"
  text = [
    "# Results",
    "",
    "Our runs beside the rows of Hochreiter & Schmidhuber (1997). 'sequences' are mean training sequences to",
    "success over the solved trials; 'wrong' is the mean (and median) number wrong of the test sequences (2560",
    "per trial in a full run) over the solved trials (all trials if none solved). A run marked truncated had",
    "fewer trials or a smaller budget than a full run.",
  ]
  glance = _glance(summaries)
  if glance:
    text += ["", *glance]
  if notes is not None:
    text += ["", notes.read_text().rstrip()]
  for name, items in sorted(groups.items()):
    items.sort(key=lambda item: item[1]["config"].startswith("ablation_"))  # the paper's rows first, ablations after
    text += ["", f"## {name}", ""]
    text += [
      "| config | row | model | weights | lr | trials | success ours / paper | sequences ours / paper "
      "| wrong ours / paper | test error | truncated | curve |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    baselines: list[str] = []
    for run, s in items:
      paper = s.get("paper") or {}
      png = figures / f"{run.name}.png"
      curve = f"[png](figures/{png.name})" if learning_curve(run, png) else "-"
      text.append(
        f"| {s['config']} | {s.get('row', '')} | {s['mode']} {s['cell']} | {s['weights']} "
        f"({paper.get('weights', '-')}) | {s['lr']} | {s['trials']} ({paper.get('trials', '-')}) | "
        f"{_pct(s['success_rate'])} / {_pct(paper.get('success_rate'))} | "
        f"{_seqs(s['sequences_to_success'])} / {_seqs(paper.get('sequences_to_success'))} | "
        f"{s['test_wrong']:.1f} (median {s.get('test_wrong_median', float('nan')):g}) of {s['test_size']} / "
        f"{_paper_wrong(paper)} | {s['test_error']:.4g} | "
        f"{'yes' if s['truncated'] else 'no'} | {curve} |"
      )
      for line in _baselines(s) + list(s.get("paper_baselines", [])):
        if line not in baselines:
          baselines.append(line)
    if baselines:
      text += ["", "Baselines: " + "; ".join(baselines) + "."]
    text += ["", "Commands (wall time of each run on the machine in its summary's `hardware`):", ""]
    for _, s in items:
      cmd = s.get("command") or f"python -m experiments run configs/{s['config']}.toml"
      text.append(f"- `{s['config']}` ({s['wall_s']:.0f} s): `{cmd}`")
  out.write_text("\n".join(text) + "\n")
  return out
