"""Smoke runs of every shipped config through the real CLI, shrunk to a few updates, and the report."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from experiments import cli, config, report

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(ROOT.joinpath("configs").glob("*.toml"))

SUMMARY_KEYS = {
  "task",
  "mode",
  "cell",
  "trials",
  "success_rate",
  "sequences_to_success",
  "test_wrong",
  "test_size",
  "test_error",
  "wall_s",
  "hardware",
  "paper",
  "budget",
  "truncated",
}


def shrink(path: Path) -> list[str]:
  """--set options that cut a config to 2 trials and 2 chunks of 10 updates of at most 4 sequences."""
  cfg = config.load(path)
  batch = min(cfg.train.batch_size, 4)
  chunk = 10 * batch
  out = [
    "train.trials=2",
    f"train.batch_size={batch}",
    f"train.eval_every={chunk}",
    f"train.max_sequences={2 * chunk}",
    f"run.checkpoint_every={chunk}",
    "run.test_size=16",
    "run.fast_compile=true",
  ]
  if cfg.train.stop.check_every is not None:
    out.append(f"train.stop.check_every={chunk}")
  if cfg.train.stop.test_size is not None:
    out.append("train.stop.test_size=8")
  return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """``finished_run(name, *overrides) -> DIR``: a shrunk CLI run of ``configs/<name>.toml``, made once per module.

  The diagnostics tests that read the same run share it (they are in one xdist group, so on one worker).
  """
  runs: dict[tuple[str, ...], Path] = {}

  def get(name: str, *overrides: str) -> Path:
    key = (name, *overrides)
    if key not in runs:
      path = ROOT / "configs" / f"{name}.toml"
      out = tmp_path_factory.mktemp(name) / "run"
      argv = ["run", str(path), "--out", str(out), "--no-progress"]
      for option in shrink(path) + list(overrides):
        argv += ["--set", option]
      assert cli.main(argv) == 0
      runs[key] = out
    return runs[key]

  return get


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_smoke_run_of_every_config(tmp_path: Path, path: Path, capsys):
  out = tmp_path / path.stem
  argv = ["run", str(path), "--out", str(out), "--no-progress"]
  for option in shrink(path):
    argv += ["--set", option]
  assert cli.main(argv) == 0
  printed = capsys.readouterr().out
  assert "| ours (" in printed
  summary = json.loads((out / "summary.json").read_text())
  assert SUMMARY_KEYS <= set(summary)
  cfg = config.load(path, shrink(path))
  assert summary["trials"] == 2 * len(cfg.train.lrs)
  assert summary["test_size"] == 16 and summary["truncated"] is True
  assert summary["mode"] == cfg.model.mode and summary["cell"] == cfg.model.cell
  assert 0.0 <= summary["success_rate"] <= 1.0
  if cfg.paper.weights is not None:
    assert summary["weights"] == cfg.paper.weights
  if summary["paper"] is not None:
    assert {"success_rate", "sequences_to_success"} <= set(summary["paper"])
  lines = (out / "metrics.jsonl").read_text().splitlines()
  assert 1 <= len(lines) <= 2
  assert json.loads(lines[-1])["sequences"] <= 2 * 10 * cfg.train.batch_size
  assert summary["batch_size"] == cfg.train.batch_size
  # The resolved config reads back as the config the run used.
  assert config.load(out / "config.toml") == config.load(path, shrink(path)).__class__(
    **{**config.load(path, shrink(path)).__dict__, "name": "config"}
  )
  assert (out / "checkpoint.npz").exists()


def test_report(tmp_path: Path):
  runs = []
  for name in ("default", "exp4_adding_t100"):
    path = next(p for p in CONFIGS if p.stem == name)
    out = tmp_path / name
    argv = ["run", str(path), "--out", str(out), "--no-progress"]
    for option in shrink(path):
      argv += ["--set", option]
    assert cli.main(argv) == 0
    runs.append(str(out))
  results = tmp_path / "RESULTS.md"
  assert cli.main(["report", *runs, "--out", str(results)]) == 0
  text = results.read_text()
  assert "## Exp 6a: temporal order" in text and "## Exp 4: adding" in text
  assert "| default |" in text and "chance: 25% correct" in text
  assert (tmp_path / "figures" / "default.png").stat().st_size > 0
  # The overview lists both paper rows once, before the per-experiment tables.
  glance = text[text.index("## At a glance") : text.index("## Exp")]
  assert glance.count("| Exp 4: adding |") == 1 and glance.count("| Exp 6a: temporal order |") == 1
  assert cli.main(["report", str(tmp_path / "nothing"), "--out", str(results)]) == 2


@pytest.mark.xdist_group("diagnostics")
def test_adding_failures_counts_the_wrong_sequences_of_a_finished_run(finished_run, capsys):
  import jax
  import numpy as np

  from experiments import adding_failures, checkpoint, runner, train

  out = finished_run("exp4_adding_t100", "task.params.T=30")
  capsys.readouterr()
  adding_failures.main([str(out), "--sequences", "64", "--trials", "1", "--seed", "5"])
  printed = capsys.readouterr().out
  pattern = r"trial 0: (\d+) wrong.*target < 0.1: (\d+)/(\d+), middle: (\d+)/(\d+), target > 0.9: (\d+)/(\d+)"
  m = re.search(pattern, printed)
  assert m, printed
  total, *bins = (int(g) for g in m.groups())
  assert total == bins[0] + bins[2] + bins[4] and bins[1] + bins[3] + bins[5] == 64
  # The same count from the task's own `correct` on the trained params.
  cfg = config.load(out / "config.toml")
  task = runner.make_task(cfg)
  exp = train.build(cfg, task)
  state, _ = checkpoint.load(out / "checkpoint.npz", exp.init_state())
  ex = jax.vmap(task.sample)(jax.random.split(jax.random.key(5), 64))
  outputs, logits = jax.vmap(train.build_model(cfg, task).apply, in_axes=(None, 0))(train.trial_params(state, 0), ex.xs)
  assert total == int(np.sum(~np.asarray(jax.vmap(task.correct)(outputs, ex))))
  # The middle range's mean output and net-input range, recomputed from the outputs and logits.
  last = np.asarray(ex.length) - 1
  rows = np.arange(64)
  target = np.asarray(ex.targets)[rows, last, 0]
  middle = (target >= 0.1) & (target < 0.9)
  y, z = np.asarray(outputs)[rows, last, 0][middle], np.asarray(logits)[rows, last, 0][middle]
  line = re.search(r"  middle: mean target [\d.]+, mean output ([\d.]+), output net input (\S+) to (\S+),", printed)
  assert line, printed
  assert float(line.group(1)) == pytest.approx(y.mean(), abs=1e-3)
  assert float(line.group(2)) == pytest.approx(z.min(), abs=1e-2)
  assert float(line.group(3)) == pytest.approx(z.max(), abs=1e-2)
  # The mean |cell state| at each sequence's last step, by a Python loop of the cell's steps.
  final = _end_states_by_loop(train.build_model(cfg, task).cell, train.trial_params(state, 0).cell, ex)
  line = re.search(r"mean \|cell state\| at the last step, per cell: (.*)", printed)
  assert line, printed
  printed_states = [float(v) for v in line.group(1).split(", ")]
  np.testing.assert_allclose(printed_states, np.abs(final).mean(axis=0), atol=1e-3)


def _end_states_by_loop(cell, params, ex):
  """Each sequence's 1997 cell state ``s`` after its last valid step, by a Python loop of the cell's steps."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  step = jax.jit(cell.apply)
  final = []
  for k in range(ex.xs.shape[0]):
    carry = cell.initial_carry((), jnp.float32)
    for t in range(int(ex.length[k])):
      carry, _ = step(params, carry, ex.xs[k, t])
    final.append(np.asarray(carry.s))
  return np.array(final)


@pytest.mark.xdist_group("diagnostics")
@pytest.mark.parametrize(
  "name, params",
  [
    ("exp2c_q50_p50", ["task.params.p=4", "task.params.q=6", "task.params.max_extra=5"]),
    ("exp4_adding_t100", ["task.params.T=30"]),
    ("exp2c_q1000_p50", ["task.params.p=4", "task.params.q=6", "task.params.max_extra=5"]),  # one_hot_inputs "gather"
  ],
  ids=["classes", "real_target", "gather"],
)
def test_cell_states_reports_the_end_states_of_a_finished_run(finished_run, capsys, name: str, params: list[str]):
  import jax
  import numpy as np

  from experiments import cell_states, checkpoint, runner, train

  out = finished_run(name, *params)
  capsys.readouterr()
  n = 24
  cell_states.main([str(out), "--sequences", str(n), "--trials", "1", "--seed", "3"])
  printed = capsys.readouterr().out
  line = re.search(r"trial 0: train error \S+; \|s\| init \[(.*?)\], end \[(.*?)\]; at the end: (.*)", printed)
  assert line, printed
  # The reference: each sequence's cell state after its last valid step, by a Python loop of the cell's steps.
  cfg = config.load(out / "config.toml")
  task = runner.make_task(cfg)
  exp = train.build(cfg, task)
  init = exp.init_state()
  state, _ = checkpoint.load(out / "checkpoint.npz", init)
  cell = train.build_model(cfg, task).cell
  ex = jax.vmap(task.sample)(jax.random.split(jax.random.key(3), n))
  s0 = _end_states_by_loop(cell, train.trial_params(init, 0).cell, ex)
  s1 = _end_states_by_loop(cell, train.trial_params(state, 0).cell, ex)
  for group, s in zip(line.groups()[:2], (s0, s1)):
    np.testing.assert_allclose([float(v) for v in group.split(", ")], np.abs(s).mean(axis=0), atol=6e-3)
  target = np.asarray(ex.targets)[np.arange(n), np.asarray(ex.length) - 1]
  cells = line.group(3).split("; ")
  assert len(cells) == s1.shape[1]
  for c, text in enumerate(cells):
    v = s1[:, c]
    if name == "exp4_adding_t100":
      m = re.fullmatch(rf"cell {c}: corr (\S+)", text)
      assert m, text
      assert float(m.group(1)) == pytest.approx(np.corrcoef(v, target[:, 0])[0, 1], abs=6e-3)
    else:
      m = re.fullmatch(rf"cell {c}: spread (\S+) within (\S+)", text)
      assert m, text
      cls = target.argmax(axis=1)
      assert set(cls) == {0, 1}, "both classes drawn"
      means, sds = [v[cls == k].mean() for k in (0, 1)], [v[cls == k].std() for k in (0, 1)]
      assert float(m.group(1)) == pytest.approx(abs(means[0] - means[1]) / 2, abs=6e-3)
      assert float(m.group(2)) == pytest.approx(np.mean(sds), abs=6e-3)
  # The wrong sequences, by the task's rule on the trained net's outputs.
  model = train.build_model(cfg, task)
  outputs, _ = jax.vmap(model.apply, in_axes=(None, 0))(train.trial_params(state, 0), model.inputs(ex))
  wrong = ~np.asarray(jax.vmap(task.correct)(outputs, ex))
  m = re.search(r"\n  wrong (\d+) of (\d+); by length: (.*?)(?:; by class: (.*))?\n", printed)
  assert m, printed
  assert (int(m.group(1)), int(m.group(2))) == (int(wrong.sum()), n)
  by_length = [tuple(int(v) for v in part.split(": ")[1].split("/")) for part in m.group(3).split(", ")]
  assert sum(w for w, _ in by_length) == wrong.sum() and sum(c for _, c in by_length) == n
  if name == "exp4_adding_t100":
    assert m.group(4) is None
  else:
    by_class = [tuple(int(v) for v in part.split(": ")[1].split("/")) for part in m.group(4).split(", ")]
    cls = target.argmax(axis=1)
    assert by_class == [(int(wrong[cls == k].sum()), int((cls == k).sum())) for k in (0, 1)]


@pytest.mark.xdist_group("diagnostics")
def test_cell_states_counts_exp1s_wrong_steps_by_context(finished_run, capsys):
  import jax
  import numpy as np

  from experiments import cell_states, checkpoint, runner, train

  out = finished_run("exp1_reber_3x2_lr0p5")
  capsys.readouterr()
  n = 24
  cell_states.main([str(out), "--sequences", str(n), "--trials", "1", "--seed", "3"])
  printed = capsys.readouterr().out
  cfg = config.load(out / "config.toml")
  task = runner.make_task(cfg)
  state, _ = checkpoint.load(out / "checkpoint.npz", train.build(cfg, task).init_state())
  model = train.build_model(cfg, task)
  ex = jax.tree.map(np.asarray, jax.vmap(task.sample)(jax.random.split(jax.random.key(3), n)))
  outputs, _ = jax.vmap(model.apply, in_axes=(None, 0))(train.trial_params(state, 0), model.inputs(ex))
  outputs = np.asarray(outputs)
  # The reference: a Python loop over every scored step, the symbols read back from the one-hot inputs.
  symbols = "BTPSXVE"
  counts: dict[str, int] = {}
  wrong = np.zeros(n, bool)
  for k in range(n):
    read = [symbols[i] for i in ex.xs[k].argmax(-1)]
    for t in range(int(ex.length[k])):
      legal = ex.legal[k, t]
      if outputs[k, t][legal].min() <= outputs[k, t][~legal].max():
        context = (read[t - 1] if t else "^") + read[t] + "->" + "".join(symbols[i] for i in np.flatnonzero(legal))
        counts[context] = counts.get(context, 0) + 1
        wrong[k] = True
  assert counts, "a net trained on 20 strings gets some steps wrong"
  expected = ", ".join(f"{c} {m}" for c, m in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:8])
  m = re.search(r"wrong steps by context \(previous, current symbol -> legal next\): (.*)\n", printed)
  assert m, printed
  assert m.group(1) == expected
  # The classes are the outer symbols (T: 0, P: 1).
  outer = ex.xs[:, 1].argmax(-1)
  assert set(outer) == {1, 2}, "both outer symbols drawn"
  by_class = re.search(r"; by class: 0: (\d+)/(\d+), 1: (\d+)/(\d+)\n", printed)
  assert by_class, printed
  assert [int(v) for v in by_class.groups()] == [
    int(wrong[outer == 1].sum()),
    int((outer == 1).sum()),
    int(wrong[outer == 2].sum()),
    int((outer == 2).sum()),
  ]


def test_cell_states_rejects_an_empty_sample(tmp_path: Path, capsys):
  from experiments import cell_states

  with pytest.raises(SystemExit) as e:
    cell_states.main([str(tmp_path), "--sequences", "0"])
  assert e.value.code == 2
  assert "--sequences and --trials must be at least 1; got 0 and None" in capsys.readouterr().err


def _results_sh_rows() -> dict[str, list[str]]:
  """Each row of scripts/results.sh with the arguments it passes after the config."""
  text = (ROOT / "scripts" / "results.sh").read_text()
  rows = {}
  for line in text.splitlines():
    m = re.match(r"^run (\w+)(.*)$", line.strip())
    if m:
      rows[m.group(1)] = shlex.split(m.group(2))
  loop = re.search(r"for row in (.*?); do", text, re.S)
  assert loop is not None
  for name in loop.group(1).replace("\\\n", " ").split():
    rows[name] = []
  return rows


def test_committed_results_are_what_results_sh_and_the_configs_produce():
  """Each results/<row> was made by its results.sh line from today's config: same command, same resolved config."""
  rows = _results_sh_rows()
  committed = sorted(p.parent.name for p in (ROOT / "results").glob("*/summary.json"))
  assert committed == sorted(rows)  # every row has its line, every line its committed run
  for name in committed:
    args = rows[name]
    summary = json.loads((ROOT / "results" / name / "summary.json").read_text())
    want = " ".join(["python -m experiments run", f"configs/{name}.toml", *args, "--out", f"results/{name}"])
    assert summary["command"] == want, name
    resolved = config.load(ROOT / "configs" / f"{name}.toml", [a for a in args if a != "--set"])
    assert config.dumps(resolved) == (ROOT / "results" / name / "config.toml").read_text(), name


@pytest.mark.parametrize(
  "rate, mean, paper_rate, paper_mean, expected",
  [
    (1.0, 19_000.0, 1.0, 10_000.0, "yes"),  # within 2x
    (1.0, 21_000.0, 1.0, 10_000.0, "partly"),  # over 2x
    (0.97, 5_000.0, 0.97, 10_000.0, "yes"),  # the paper's own rate is enough
    (0.9, 5_000.0, 0.97, 10_000.0, "partly"),
    (0.0, None, 1.0, 10_000.0, "no"),
    (1.0, 5_000.0, None, 10_000.0, "yes"),  # no rate given: every trial must solve
    (0.95, 5_000.0, None, 10_000.0, "partly"),
  ],
)
def test_report_verdict_applies_issue_3s_bar(rate, mean, paper_rate, paper_mean, expected):
  s = {
    "success_rate": rate,
    "sequences_to_success": None if mean is None else {"mean": mean},
    "paper": {"success_rate": paper_rate, "sequences_to_success": paper_mean},
  }
  assert report.verdict(s) == expected


@pytest.mark.parametrize("script", ["cell_states", "adding_failures"])
def test_a_diagnostic_of_a_committed_row_without_checkpoint_says_how_to_make_one(tmp_path: Path, script: str):
  row = "exp4_adding_t100"  # the committed rows keep config.toml, metrics.jsonl and summary.json only
  run = tmp_path / row
  shutil.copytree(ROOT / "results" / row, run, ignore=shutil.ignore_patterns("checkpoint.npz"))
  with pytest.raises(SystemExit) as info:
    importlib.import_module(f"experiments.{script}").main([str(run)])
  message = str(info.value)
  assert f"{run / 'checkpoint.npz'}: no checkpoint" in message, message
  assert f"`python -m experiments run configs/{row}.toml --out runs/{row}`" in message, message
