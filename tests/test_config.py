"""Config schema: every shipped config is valid and commented; errors name the key and the file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import jax
import pytest

from experiments import cli, config, runner, train

CONFIGS = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.toml"))

BASE = """
[task]
name = "adding"
[task.params]
T = 30
[model]
mode = "paper"
blocks = 2
block_size = 2
input_gate_bias = [-3.0, -6.0]
[train]
lr = 0.5
trials = 2
[train.stop]
rule = "st3"
error = 0.01
"""


def test_there_are_configs_for_every_row():
  names = {p.stem for p in CONFIGS}
  assert "default" in names
  assert len([n for n in names if n.startswith("exp1_")]) == 5
  assert len([n for n in names if n.startswith("exp2c_")]) == 9
  assert len([n for n in names if n.startswith("exp3")]) == 8
  assert {"exp2a", "exp2b", "exp6a", "exp6b"} <= names
  assert len([n for n in names if n.startswith("exp4_")]) == 3
  assert len([n for n in names if n.startswith("exp5_")]) == 2
  for cell in ("lstm", "gru", "mgu", "elman"):
    assert any(n.startswith(f"modern_{cell}_") for n in names)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_valid_commented_and_has_the_papers_weight_count(path: Path):
  cfg = config.load(path)
  assert config.from_dict(config.to_dict(cfg), source="<round trip>", name=cfg.name) == cfg
  # Every field carries a comment, and the file reads without side-scrolling (the project's 120 columns).
  for line in path.read_text().splitlines():
    assert len(line) <= 120, f"{path.name}: line of {len(line)} characters: {line[:60]!r}..."
    if re.match(r"^\s*[A-Za-z_]+\s*=", line):
      assert "#" in line, f"{path.name}: no comment on {line!r}"
  task = runner.make_task(cfg)
  model = train.build_model(cfg, task)
  weights = train.count_weights(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
  if cfg.paper.weights is not None:
    assert weights == cfg.paper.weights
  if cfg.model.mode == "paper":
    assert cfg.train.optimizer == "sgd" and cfg.train.batch_size == 1 and cfg.model.truncated_gradient
  assert not (cfg.paper.max_sequences and cfg.train.max_sequences < cfg.paper.max_sequences) or cfg.name == "default"


def _write(tmp_path: Path, text: str) -> Path:
  path = tmp_path / "exp.toml"
  path.write_text(text)
  return path


@pytest.mark.parametrize(
  "edit, key, message",
  [
    (("[train]", "[train]\nlrr = 0.1"), "train.lrr", "unknown key"),
    (("[model]", "[model]\ncolour = 'red'"), "model.colour", "unknown key"),
    (("[train]", "[trainer]\nx = 1\n[train]"), "trainer", "unknown key"),
    (("trials = 2", 'trials = "2"'), "train.trials", "must be an integer"),
    (("trials = 2", "trials = 2.5"), "train.trials", "must be an integer"),
    (("lr = 0.5", "lr = true"), "train.lr", "must be a number or a list of a number"),
    (("lr = 0.5", "lr = -1"), "train.lr", "must be > 0"),
    (("lr = 0.5", "lr = []"), "train.lr", "must not be an empty list"),
    (("trials = 2", "trials = 0"), "train.trials", "must be >= 1"),
    (('mode = "paper"', 'mode = "old"'), "model.mode", "must be one of"),
    (("block_size = 2", "block_size = 2\nhidden_size = 8"), "model.hidden_size", "only for mode = 'modern'"),
    (("[-3.0, -6.0]", "[-3.0]"), "model.input_gate_bias", "one value per block"),
    (("block_size = 2", 'block_size = 2\noutput_activation = "tanh"'), "model.output_activation", "must be one of"),
    (("block_size = 2", 'block_size = 2\ndtype = "float16"'), "model.dtype", "must be one of"),
    (("block_size = 2", 'block_size = 2\none_hot_inputs = "embed"'), "model.one_hot_inputs", "must be one of"),
    (("block_size = 2", 'block_size = 2\nunroll_impl = "fused"'), "model.unroll_impl", "must be one of"),
    (("error = 0.01", "error = 0.01\ncount = 5"), "train.stop.count", "not a parameter of rule 'st3'"),
    (("error = 0.01", ""), "train.stop.error", "is required by rule 'st3'"),
    (('rule = "st3"', 'rule = "st4"'), "train.stop.rule", "must be one of"),
    (("T = 30", "T = 30\nU = 3"), "task.params.U", "unknown parameter of task 'adding'"),
    (("T = 30", 'T = "30"'), "task.params.T", "must be an integer"),
    (('name = "adding"', 'name = "addition"'), "task.name", "must be one of"),
  ],
)
def test_invalid_config_names_the_key_and_the_file(tmp_path: Path, edit, key, message):
  old, new = edit
  assert old in BASE
  path = _write(tmp_path, BASE.replace(old, new, 1))
  with pytest.raises(config.ConfigError) as info:
    config.load(path)
  text = str(info.value)
  assert str(path) in text and f": {key}:" in text and message in text, text


def test_a_task_parameter_value_the_task_rejects_names_the_file(tmp_path: Path):
  cfg = config.load(_write(tmp_path, BASE.replace("T = 30", "T = 3")))
  with pytest.raises(config.ConfigError, match=r"exp\.toml: task\.params: .*'T'"):
    runner.make_task(cfg)


def test_set_overrides(tmp_path: Path):
  path = _write(tmp_path, BASE)
  cfg = config.load(path, ["train.lr=[0.1, 0.2]", "task.params.T=40", "train.stop.window=100", "train.optimizer=adam"])
  assert cfg.train.lrs == (0.1, 0.2) and cfg.task.params == {"T": 40} and cfg.train.stop.window == 100
  assert cfg.train.optimizer == "adam"
  assert config.load(path, ["model.init_scale=1"]).model.init_scale == 1.0  # an int is a number


@pytest.mark.parametrize(
  "override, key, message",
  [
    ("train.lrr=0.1", "train.lrr", "unknown key"),
    ("train.trials=abc", "train.trials", "must be an integer"),
    ("train.lr=0", "train.lr", "must be > 0"),
    ("model.hidden_size=8", "model.hidden_size", "only for mode = 'modern'"),
    ("train.stop.window=0", "train.stop.window", "must be >= 1"),
    ("train.lr.x=1", "train.lr", "is not a table"),
  ],
)
def test_bad_set_names_the_key_the_option_and_the_file(tmp_path: Path, override, key, message):
  path = _write(tmp_path, BASE)
  with pytest.raises(config.ConfigError) as info:
    config.load(path, [override])
  text = str(info.value)
  assert str(path) in text and f"--set {override}" in text and key in text and message in text, text


def test_set_overrides_that_must_agree_change_together(tmp_path: Path):
  # Checked after all are set: more blocks and their per-block gate biases in one command.
  path = _write(tmp_path, BASE)
  sets = ["model.blocks=3", "model.input_gate_bias=[-1.0, -2.0, -3.0]"]
  assert config.load(path, sets).model.input_gate_bias == [-1.0, -2.0, -3.0]
  with pytest.raises(config.ConfigError) as info:
    config.load(path, sets[:1])
  text = str(info.value)
  assert "--set model.blocks=3" in text and "model.input_gate_bias" in text and "one value per block" in text, text


def test_malformed_set(tmp_path: Path):
  with pytest.raises(config.ConfigError, match="expected key=value"):
    config.load(_write(tmp_path, BASE), ["train.lr"])


def test_cli_reports_a_bad_config_with_status_2(tmp_path: Path, capsys):
  path = _write(tmp_path, BASE.replace("trials = 2", "trials = -2"))
  assert cli.main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
  err = capsys.readouterr().err
  assert str(path) in err and "train.trials" in err
  assert cli.main(["run", str(tmp_path / "missing.toml")]) == 2
  assert "no such config file" in capsys.readouterr().err


MODERN = """
[task]
name = "adding"
[model]
mode = "modern"
cell = "lstm"
hidden_size = 4
[train]
lr = 0.01
optimizer = "adam"
batch_size = 2
"""


@pytest.mark.parametrize(
  "override, key, message",
  [
    ("model.gate_bias.q=1.0", "model.gate_bias.q", "unknown gate of cell 'lstm' (known: i, f, g, o)"),
    ('model.gate_bias.f="big"', "model.gate_bias.f", "must be a finite number"),
    ("model.gate_bias=3.0", "model.gate_bias", "must be a table"),
    ("model.cell='elman'", "model.gate_bias", "has no gates"),
  ],
)
def test_bad_gate_bias_names_the_gate_and_the_cell(tmp_path: Path, override, key, message):
  path = _write(tmp_path, MODERN.replace("hidden_size = 4", "hidden_size = 4\ngate_bias = {f = 3.0}"))
  with pytest.raises(config.ConfigError) as info:
    config.load(path, [override])
  text = str(info.value)
  assert str(path) in text and f": {key}:" in text and message in text, text


@pytest.mark.parametrize("cell, gates, gate, block", [("lstm", 4, "f", 1), ("gru", 3, "z", 1), ("mgu", 2, "f", 0)])
def test_gate_bias_sets_the_modern_cells_initial_bias(tmp_path: Path, cell, gates, gate, block):
  path = _write(tmp_path, MODERN)
  cfg = config.load(path, [f"model.cell='{cell}'", f"model.gate_bias.{gate}=2.5"])
  assert cfg.model.gate_bias == {gate: 2.5}
  assert config.from_dict(tomllib.loads(config.dumps(cfg))).model.gate_bias == {gate: 2.5}  # round trip
  task = runner.make_task(cfg)
  b = train.build_model(cfg, task).init(jax.random.key(0)).cell.b
  assert b.shape == (gates * 4,)
  assert (b[block * 4 : (block + 1) * 4] == 2.5).all()
  others = [b[k * 4 : (k + 1) * 4] for k in range(gates) if k != block]
  assert all((o != 2.5).all() for o in others)


@pytest.mark.parametrize(
  "base, overrides, key, message",
  [
    # paper mode: the net
    (BASE, ["model.cell=gru"], "model.cell", "in mode 'paper', got 'gru'"),
    (BASE, ["model.blocks=0"], "model.blocks", "must be >= 1, got 0"),
    (BASE, ["model.bias=some"], "model.bias", "must be one of"),
    (BASE, ["model.cell_input_squash=cubic"], "model.cell_input_squash", "must be one of"),
    (BASE, ["model.cell_output_squash=cubic"], "model.cell_output_squash", "must be one of"),
    (BASE, ["model.cell_output_squash=1"], "model.cell_output_squash", "must be a string, got int 1"),
    (BASE, ["model.truncated_gradient=1"], "model.truncated_gradient", "must be a boolean"),
    (BASE, ["model.init_scale=-0.1"], "model.init_scale", "must be >= 0, got -0.1"),
    (BASE, ["model.init_scale=inf"], "model.init_scale", "must be finite"),
    (BASE, ["model.bias=none"], "model.input_gate_bias", "is given but model.bias = 'none'"),
    (
      BASE,
      ["model.output_gate=false", "model.output_gate_bias=[-1.0, -2.0]"],
      "model.output_gate_bias",
      "output_gate = false",
    ),
    # modern mode: the net
    (MODERN, ["model.cell=lstm1997"], "model.cell", "in mode 'modern', got 'lstm1997'"),
    (MODERN, ["model.blocks=2"], "model.blocks", "is only for mode = 'paper'"),
    (MODERN, ["model.hidden_size=0"], "model.hidden_size", "must be >= 1, got 0"),
    # training
    (BASE, ["train.lr=[0.1, 0.1]"], "train.lr", "has repeated values [0.1, 0.1]"),
    (BASE, ["train.seed=-1"], "train.seed", "must be >= 0, got -1"),
    (BASE, ["train.update_every=often"], "train.update_every", "must be 'sequence' or 'step', got 'often'"),
    (BASE, ["train.update_every=step", "train.batch_size=2"], "train.update_every", "needs train.batch_size = 1"),
    (MODERN, ["train.update_every=step"], "train.update_every", "needs model.mode = 'paper'"),
    (MODERN, ["train.optimizer=rmsprop"], "train.optimizer", "must be one of"),
    (MODERN, ["train.clip_norm=-1"], "train.clip_norm", "must be >= 0 (0 = no clipping), got -1.0"),
    (MODERN, ["train.eval_every=3"], "train.eval_every", "must be a multiple of train.batch_size (2), got 3"),
    (MODERN, ["train.stop=1"], "train.stop", "must be a table, got int 1"),
    # stopping rules
    (BASE, ["train.stop.error=0"], "train.stop.error", "must be > 0, got 0"),
    (
      MODERN,
      ['train.stop={rule="st3", error=0.01, window=1}'],
      "train.stop.window",
      "must be >= train.batch_size (2), got 1",
    ),
    (
      MODERN,
      ['train.stop={rule="st12", mean_error=0.01, max_wrong=-1}'],
      "train.stop.max_wrong",
      "must be >= 0, got -1",
    ),
    (
      MODERN,
      ['train.stop={rule="st12", mean_error=0.01, check_every=3}'],
      "train.stop.check_every",
      "multiple of train.batch_size (2)",
    ),
    # run and paper sections
    (BASE, ["run.checkpoint_every=0"], "run.checkpoint_every", "must be >= 1, got 0"),
    (BASE, ["run.test_size=0"], "run.test_size", "must be >= 1, got 0"),
    (BASE, ["paper.success_rate=1.5"], "paper.success_rate", "must be in [0, 1], got 1.5"),
    (BASE, ["paper.weights=0"], "paper.weights", "must be >= 1, got 0"),
    (BASE, ["colour=1"], "colour", "unknown key (known: task, model, train, run, paper)"),
  ],
)
def test_each_invalid_value_names_its_key(tmp_path: Path, base: str, overrides: list[str], key: str, message: str):
  path = _write(tmp_path, base)
  config.load(path)  # the base itself is valid
  with pytest.raises(config.ConfigError) as info:
    config.load(path, overrides)
  text = str(info.value)
  assert str(path) in text and f"{key}:" in text and message in text, text


@pytest.mark.parametrize("override", ["=1", "train..lr=1", "train.lr"])
def test_a_malformed_set_option_is_named(tmp_path: Path, override: str):
  with pytest.raises(config.ConfigError, match=re.escape(f"--set {override}")):
    config.load(_write(tmp_path, BASE), [override])


def test_a_file_that_is_not_toml_names_the_file_and_the_line(tmp_path: Path):
  path = _write(tmp_path, BASE.replace("lr = 0.5", "lr = = 0.5"))
  with pytest.raises(config.ConfigError) as info:
    config.load(path)
  assert str(path) in str(info.value) and "line 12" in str(info.value), str(info.value)
