"""The command line: ``run`` one experiment from a TOML config, ``report`` a set of runs.

Usage::

  python -m experiments run configs/exp4_adding_t100.toml [--set train.trials=3 ...] [--out DIR] [--resume]
  python -m experiments report runs/* [--out RESULTS.md]

``run`` writes DIR/config.toml, DIR/metrics.jsonl, DIR/checkpoint.npz and DIR/summary.json (DIR defaults to
runs/<config name>). After Ctrl-C or a kill, the same command with ``--resume`` continues from the last
checkpoint. Exit status: 0 done, 2 a bad config or command line, 130 interrupted (checkpoint saved).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from experiments import config, runner


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  run = sub.add_parser("run", help="run one experiment (all its trials in one compiled program)")
  run.add_argument("config", help="a TOML config, e.g. configs/default.toml")
  run.add_argument(
    "--set",
    dest="overrides",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override a config value, e.g. --set train.lr=0.1 --set task.params.T=50 (TOML values)",
  )
  run.add_argument("--out", help="the run folder (default runs/<config name>)")
  run.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
  run.add_argument("--no-progress", action="store_true", help="no progress bar")
  report = sub.add_parser("report", help="tables of runs beside the paper's rows, and learning curves")
  report.add_argument("runs", nargs="+", help="run folders (holding summary.json)")
  report.add_argument("--out", default="RESULTS.md", help="the Markdown file to write (default RESULTS.md)")
  report.add_argument("--notes", help="a Markdown file of notes to include after the introduction")
  return parser


def main(argv: list[str] | None = None, *, hook: runner.Hook | None = None) -> int:
  args = _parser().parse_args(argv)
  if args.command == "report":
    from experiments import report

    try:
      notes = Path(args.notes) if args.notes else None
      path = report.write_report([Path(r) for r in args.runs], Path(args.out), notes)
    except (OSError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(f"wrote {path}")
    return 0

  try:
    cfg = config.load(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    command = " ".join(
      ["python -m experiments run", shlex.quote(str(args.config))]
      + [f"--set {shlex.quote(o)}" for o in args.overrides]
      + ([f"--out {shlex.quote(args.out)}"] if args.out else [])
    )
    summary = runner.run(cfg, out, resume=args.resume, progress=not args.no_progress, hook=hook, command=command)
  except (config.ConfigError, runner.RunError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    return 130
  print(f"{cfg.name}: {summary['experiment']} {summary['row']}".rstrip())
  print(runner.format_row(summary))
  if summary["truncated"]:
    print(f"(truncated: {summary['trials']} trials, budget {summary['budget']['max_sequences']:,} sequences per trial)")
  rate = summary["trial_sequences_per_s"]
  print(f"wrote {out}/summary.json ({summary['wall_s']:.1f} s, {rate:.0f} trial-sequences/s)")
  return 0
