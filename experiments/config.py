"""The typed schema of experiment configs (TOML) and its strict validation.

A config is data only: TOML tables that map one to one onto the dataclasses
below. Loading checks every key against the schema, so an unknown key, a wrong
type or an impossible value is a :class:`ConfigError` naming the key and the
file (``configs/exp4_adding_t100.toml: train.lr: must be > 0, got -1.0``).
``--set train.lr=0.1`` overrides go through the same checks.

>>> cfg = from_dict({"task": {"name": "adding"}, "model": {"mode": "modern", "cell": "gru", "hidden_size": 8},
...                  "train": {"lr": 0.01, "optimizer": "adam", "stop": {"rule": "none"}}}, source="<doc>")
>>> cfg.train.lrs, cfg.model.cell
((0.01,), 'gru')
>>> from_dict({"task": {"name": "adding", "colour": 1}}, source="x.toml")
Traceback (most recent call last):
...
experiments.config.ConfigError: x.toml: task.colour: unknown key (known: name, params)
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("paper", "modern")
PAPER_CELLS = ("lstm1997",)
MODERN_CELLS = ("lstm", "gru", "mgu", "elman")
OPTIMIZERS = ("sgd", "adam")
BIAS_CHOICES = ("all", "gates", "none")
CELL_INPUT_SQUASHES = ("paper", "logistic")
CELL_OUTPUT_SQUASHES = ("paper", "identity")
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")
DTYPES = ("float32", "float64")
ONE_HOT_INPUTS = ("matmul", "gather")
UNROLL_IMPLS = ("auto", "reference")
# Rule name -> {param: default}; a default of None marks a required param.
STOP_RULES: dict[str, dict[str, Any]] = {
  # ST3(b): mean training error over the last `window` sequences < `error`, and those sequences all correct.
  "st3": {"error": None, "window": 2000},
  # Exp 2: `count` successive training sequences processed correctly.
  "successive": {"count": 10000},
  # Exp 1: every string of the fixed training and test sets correct, checked every `check_every` sequences.
  "all_correct": {"check_every": 1000},
  # Exp 3: ST1 (at most `max_wrong` of `test_size` fresh test sequences wrong), then ST2 (ST1 and mean
  # absolute test error < `mean_error`), checked every `check_every` sequences; training stops at ST2.
  "st12": {"check_every": 1000, "test_size": 256, "max_wrong": 0, "mean_error": None},
  # Exp 5: fewer than `max_count` of the last `window` training sequences were wrong (task.correct false:
  # for multiplication, absolute error >= 0.04).
  "recent_errors": {"window": 2000, "max_count": None},
  # No stopping rule: train for the whole budget; no trial counts as solved.
  "none": {},
}


class ConfigError(ValueError):
  """An invalid config: the message names the file (or --set) and the key."""


@dataclass(frozen=True)
class TaskConfig:
  name: str  # a name of experiments.tasks.TASK_NAMES
  params: dict[str, Any] = field(default_factory=dict)  # passed as make_task(name, **params)


@dataclass(frozen=True)
class ModelConfig:
  mode: str = "paper"  # "paper" (the 1997 set-up) or "modern"
  cell: str = "lstm1997"  # paper: "lstm1997"; modern: lstm, gru, mgu, elman
  # Paper mode (jaxrnn.lstm1997).
  blocks: int = 1  # C, memory blocks
  block_size: int = 1  # S, cells per block
  bias: str = "all"  # which hidden units have biases: "all", "gates" or "none"
  init_scale: float = 0.1  # every weight uniform in [-init_scale, init_scale]
  input_gate_bias: list[float] | None = None  # per block; overwrite the random input-gate biases
  output_gate_bias: list[float] | None = None  # per block; overwrite the random output-gate biases
  output_gate: bool = True  # Exp 2a/2b have none
  cell_input_squash: str = "paper"  # g: "paper" (4 sigmoid - 2) or "logistic"
  cell_output_squash: str = "paper"  # h: "paper" (2 sigmoid - 1) or "identity"
  truncated_gradient: bool = True  # the paper's truncated backprop (error flows back only through s)
  # Both modes.
  output_bias: bool = True  # whether the output units have biases (paper weight counts depend on it)
  output_sees_input: bool = False  # direct connections from the inputs to the output units (Exp 2a/2b)
  # The output units' activation for squared-error tasks: unset = the task's own (the paper's logistic
  # sigmoid on every 1997 task); "sigmoid" or "linear" override it (an ablation, not the paper's net).
  output_activation: str | None = None
  # The dtype of the weights and of the task's inputs and targets: "float32", or "float64" (run under
  # jax.enable_x64; a precision check, and slower).
  dtype: str = "float32"
  # How one-hot symbol inputs (Exp 1, 2, 6, copy) reach the cell: "matmul" multiplies the one-hot
  # vectors by the input weights, as written; "gather" reads the row of the input weights of each
  # step's symbol instead (the same net inputs; the input weights' gradient is summed in another order,
  # so runs differ from "matmul" ones by rounding). Much faster with many symbols (Exp 2c, p = 1000).
  one_hot_inputs: str = "matmul"
  # How jaxrnn.unroll runs the cell over a sequence (its impl=): "auto" takes the fast path of every cell that
  # has one (jaxrnn/_src/fused.py: the same arithmetic up to rounding, computed in another order), "reference"
  # the plain lax.scan of the cell's step. Unset: "auto" in modern mode and "reference" in paper mode, the
  # paths the committed rows were made with (the 1997 cell had no fast path then; with "auto" a trial's
  # weights part from the committed run's by rounding, and its trajectory after a while). "auto" trains the
  # paper's nets up to 1.3x faster: Exp 4 1.3x, Exp 6a 1.1x, Exp 2c 1.0x (python -m benchmarks.lstm1997). The
  # per-step RTRL (train.update_every = "step") does not unroll through jaxrnn.unroll: there it changes only the
  # scoring.
  unroll_impl: str | None = None
  # Modern mode.
  hidden_size: int = 32  # hidden units of the modern cell
  # Initial gate biases of the modern cell, e.g. {f = 3.0} (lstm, mgu) or {z = 3.0} (gru): the cell's
  # gate_bias (a larger forget/update-gate bias keeps memory longer at the start, Gers et al. 2000,
  # Tallec & Ollivier 2018). Unset: the cell's defaults (lstm and mgu forget bias 1, gru 0).
  gate_bias: dict[str, float] | None = None


PAPER_ONLY = (
  "blocks",
  "block_size",
  "bias",
  "init_scale",
  "input_gate_bias",
  "output_gate_bias",
  "output_gate",
  "cell_input_squash",
  "cell_output_squash",
  "truncated_gradient",
)
MODERN_ONLY = ("hidden_size", "gate_bias")
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "mgu": ("f", "n"), "elman": ()}


@dataclass(frozen=True)
class StopConfig:
  rule: str = "none"  # a name of STOP_RULES
  error: float | None = None  # st3: b
  window: int | None = None  # st3, recent_errors: sequences in the window
  count: int | None = None  # successive: successive correct sequences
  check_every: int | None = None  # all_correct, st12: sequences between on-device checks
  test_size: int | None = None  # st12: fresh test sequences per check
  max_wrong: int | None = None  # st12: ST1 holds when at most this many are wrong
  mean_error: float | None = None  # st12: ST2 threshold on the mean absolute test error
  max_count: int | None = None  # recent_errors: n_seq; stop when fewer than this many errors


@dataclass(frozen=True)
class TrainConfig:
  lr: float | list[float] = 0.1  # learning rate, or a list of them to sweep (each with every seed)
  trials: int = 1  # seeds per learning rate
  seed: int = 0  # trial i uses seed + i (so a trial can be re-run alone)
  batch_size: int = 1  # sequences per update (1 = online)
  optimizer: str = "sgd"  # "sgd" (plain, no momentum) or "adam"
  # "sequence": one update per sequence (batch) by backprop through it; "step": the paper's truncated RTRL,
  # an update after every time step (paper mode, batch_size 1, truncated gradient only).
  update_every: str = "sequence"
  clip_norm: float = 0.0  # clip the gradient's global norm to this (0 = no clipping)
  max_sequences: int = 100_000  # budget: training sequences per trial
  eval_every: int = 1000  # training sequences per compiled chunk; one metrics line each
  stop: StopConfig = field(default_factory=StopConfig)

  @property
  def lrs(self) -> tuple[float, ...]:
    return tuple(self.lr) if isinstance(self.lr, list) else (float(self.lr),)


@dataclass(frozen=True)
class RunConfig:
  checkpoint_every: int = 100_000  # training sequences between checkpoints (rounded up to a chunk)
  test_size: int = 2560  # fresh test sequences per trial scored at the end
  fast_compile: bool = False  # train.fast_compile_options(): ~2.5x faster to compile, ~6x slower to run (smoke tests)


@dataclass(frozen=True)
class PaperConfig:
  """The paper's row, for the summary and the report (reference data, never read by training)."""

  experiment: str = ""  # e.g. "Exp 4 adding"
  row: str = ""  # the row of the paper's table, e.g. "T=100"
  trials: int | None = None  # trials the paper ran
  max_sequences: int | None = None  # the budget of a full-size run of this row (see the config's comment)
  weights: int | None = None  # the paper's weight count (checked against our model)
  success_rate: float | None = None  # fraction of trials solved
  sequences_to_success: float | None = None  # mean training sequences to success
  st1: float | None = None  # Exp 3: mean sequences to ST1
  test_wrong: float | None = None  # wrong of 2560 test sequences
  test_fraction_wrong: float | None = None  # Exp 3: fraction wrong of 2560
  test_error: float | None = None  # Exp 5: the reported error
  baselines: list[str] = field(default_factory=list)  # other methods' rows and trivial baselines, as text


@dataclass(frozen=True)
class Config:
  task: TaskConfig
  model: ModelConfig = field(default_factory=ModelConfig)
  train: TrainConfig = field(default_factory=TrainConfig)
  run: RunConfig = field(default_factory=RunConfig)
  paper: PaperConfig = field(default_factory=PaperConfig)
  name: str = ""  # the config's name (file stem); not a TOML key
  # Where it was read from (file and --set), for error messages; not a TOML key.
  source: str = field(default="", compare=False)


# ----------------------------------------------------------------------------
# Generic checking of a TOML table against a dataclass.


def _type_name(tp: Any) -> str:
  if tp is type(None):
    return "nothing"
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
  if origin is list:
    return f"a list of {_type_name(typing.get_args(tp)[0])}"
  if origin is dict:
    return "a table"
  if dataclasses.is_dataclass(tp):
    return "a table"
  return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str, err: Any) -> Any:
  """Returns ``value`` as type ``tp`` or raises via ``err(key, message)``."""
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    for arg in typing.get_args(tp):
      if arg is type(None):
        continue
      try:
        return _coerce(value, arg, key, err)
      except ConfigError:
        pass
    raise err(key, f"must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
  if origin is list:
    if not isinstance(value, list):
      raise err(key, f"must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    (arg,) = typing.get_args(tp)
    return [_coerce(v, arg, f"{key}[{i}]", err) for i, v in enumerate(value)]
  if origin is dict:
    if not isinstance(value, dict):
      raise err(key, f"must be a table, got {type(value).__name__} {value!r}")
    return dict(value)
  if dataclasses.is_dataclass(tp):
    if not isinstance(value, dict):
      raise err(key, f"must be a table, got {type(value).__name__} {value!r}")
    return _build(tp, value, key, err)
  if tp is bool:
    if not isinstance(value, bool):
      raise err(key, f"must be a boolean (true/false), got {type(value).__name__} {value!r}")
    return value
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise err(key, f"must be an integer, got {type(value).__name__} {value!r}")
    return value
  if tp is float:
    if isinstance(value, bool) or not isinstance(value, int | float):
      raise err(key, f"must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
      raise err(key, f"must be finite, got {value!r}")
    return float(value)
  if tp is str:
    if not isinstance(value, str):
      raise err(key, f"must be a string, got {type(value).__name__} {value!r}")
    return value
  raise TypeError(f"unsupported schema type {tp!r} for {key}")


def _build(cls: Any, table: dict[str, Any], prefix: str, err: Any) -> Any:
  hints = typing.get_type_hints(cls)
  fields = [f for f in dataclasses.fields(cls) if not (cls is Config and f.name in ("name", "source"))]
  known = [f.name for f in fields]
  kwargs = {}
  for key, value in table.items():
    full = f"{prefix}.{key}" if prefix else key
    if key not in known:
      raise err(full, f"unknown key (known: {', '.join(known)})")
    kwargs[key] = _coerce(value, hints[key], full, err)
  missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
  for name in missing:
    if name not in kwargs:
      full = f"{prefix}.{name}" if prefix else name
      raise err(full, "is required")
  return cls(**kwargs)


# ----------------------------------------------------------------------------
# Value checks that need more than one field.


def _validate(cfg: Config, raw: dict[str, Any], err: Any) -> Config:
  from experiments.tasks.base import TASK_NAMES

  if cfg.task.name not in TASK_NAMES:
    raise err("task.name", f"must be one of {', '.join(TASK_NAMES)}, got {cfg.task.name!r}")
  from experiments.tasks import task_params

  known_params = task_params(cfg.task.name)
  for key, value in cfg.task.params.items():
    if key not in known_params:
      raise err(f"task.params.{key}", f"unknown parameter of task {cfg.task.name!r} (known: {', '.join(known_params)})")
    if isinstance(value, bool) or not isinstance(value, int):
      raise err(f"task.params.{key}", f"must be an integer, got {type(value).__name__} {value!r}")

  m = cfg.model
  raw_model = raw.get("model", {})
  if m.mode not in MODES:
    raise err("model.mode", f"must be one of {MODES}, got {m.mode!r}")
  if m.mode == "paper":
    if m.cell not in PAPER_CELLS:
      raise err("model.cell", f"must be one of {PAPER_CELLS} in mode 'paper', got {m.cell!r}")
    for key in MODERN_ONLY:
      if key in raw_model:
        raise err(f"model.{key}", "is only for mode = 'modern'")
    for key in ("blocks", "block_size"):
      if getattr(m, key) < 1:
        raise err(f"model.{key}", f"must be >= 1, got {getattr(m, key)}")
    for key, choices in (
      ("bias", BIAS_CHOICES),
      ("cell_input_squash", CELL_INPUT_SQUASHES),
      ("cell_output_squash", CELL_OUTPUT_SQUASHES),
    ):
      if getattr(m, key) not in choices:
        raise err(f"model.{key}", f"must be one of {choices}, got {getattr(m, key)!r}")
    if m.init_scale < 0:
      raise err("model.init_scale", f"must be >= 0, got {m.init_scale}")
    for key in ("input_gate_bias", "output_gate_bias"):
      values = getattr(m, key)
      if values is not None:
        if len(values) != m.blocks:
          raise err(f"model.{key}", f"must have one value per block ({m.blocks}), got {len(values)}")
        if m.bias == "none":
          raise err(f"model.{key}", "is given but model.bias = 'none'")
    if m.output_gate_bias is not None and not m.output_gate:
      raise err("model.output_gate_bias", "is given but model.output_gate = false")
  else:
    if m.cell not in MODERN_CELLS:
      raise err("model.cell", f"must be one of {MODERN_CELLS} in mode 'modern', got {m.cell!r}")
    for key in PAPER_ONLY:
      if key in raw_model:
        raise err(f"model.{key}", "is only for mode = 'paper'")
    if m.hidden_size < 1:
      raise err("model.hidden_size", f"must be >= 1, got {m.hidden_size}")
    if m.gate_bias is not None:
      gates = GATES[m.cell]
      if not gates:
        raise err("model.gate_bias", f"is given but cell {m.cell!r} has no gates")
      for gate, value in m.gate_bias.items():
        if gate not in gates:
          raise err(f"model.gate_bias.{gate}", f"unknown gate of cell {m.cell!r} (known: {', '.join(gates)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
          raise err(f"model.gate_bias.{gate}", f"must be a finite number, got {type(value).__name__} {value!r}")

  if m.output_activation is not None and m.output_activation not in OUTPUT_ACTIVATIONS:
    raise err("model.output_activation", f"must be one of {OUTPUT_ACTIVATIONS}, got {m.output_activation!r}")
  if m.dtype not in DTYPES:
    raise err("model.dtype", f"must be one of {DTYPES}, got {m.dtype!r}")
  if m.one_hot_inputs not in ONE_HOT_INPUTS:
    raise err("model.one_hot_inputs", f"must be one of {ONE_HOT_INPUTS}, got {m.one_hot_inputs!r}")
  if m.unroll_impl is not None and m.unroll_impl not in UNROLL_IMPLS:
    raise err("model.unroll_impl", f"must be one of {UNROLL_IMPLS}, got {m.unroll_impl!r}")

  t = cfg.train
  if not t.lrs:
    raise err("train.lr", "must not be an empty list")
  if len(set(t.lrs)) != len(t.lrs):
    raise err("train.lr", f"has repeated values {list(t.lrs)}")
  for lr in t.lrs:
    if lr <= 0:
      raise err("train.lr", f"must be > 0, got {lr}")
  for key in ("trials", "batch_size", "max_sequences", "eval_every"):
    if getattr(t, key) < 1:
      raise err(f"train.{key}", f"must be >= 1, got {getattr(t, key)}")
  if t.seed < 0:
    raise err("train.seed", f"must be >= 0, got {t.seed}")
  if t.update_every not in ("sequence", "step"):
    raise err("train.update_every", f"must be 'sequence' or 'step', got {t.update_every!r}")
  if t.update_every == "step":
    if m.mode != "paper" or not m.truncated_gradient:
      raise err("train.update_every", "'step' (truncated RTRL) needs model.mode = 'paper' with truncated_gradient")
    if t.batch_size != 1:
      raise err("train.update_every", f"'step' needs train.batch_size = 1, got {t.batch_size}")
  if t.optimizer not in OPTIMIZERS:
    raise err("train.optimizer", f"must be one of {OPTIMIZERS}, got {t.optimizer!r}")
  if t.clip_norm < 0:
    raise err("train.clip_norm", f"must be >= 0 (0 = no clipping), got {t.clip_norm}")
  if t.eval_every % t.batch_size:
    raise err("train.eval_every", f"must be a multiple of train.batch_size ({t.batch_size}), got {t.eval_every}")

  s = t.stop
  if s.rule not in STOP_RULES:
    raise err("train.stop.rule", f"must be one of {', '.join(STOP_RULES)}, got {s.rule!r}")
  allowed = STOP_RULES[s.rule]
  raw_stop = raw.get("train", {}).get("stop", {})
  filled = {}
  for f in dataclasses.fields(StopConfig):
    if f.name == "rule":
      continue
    if f.name in raw_stop and f.name not in allowed:
      has = ", ".join(allowed) or "none"
      raise err(f"train.stop.{f.name}", f"is not a parameter of rule {s.rule!r} (it has: {has})")
    if f.name in allowed:
      value = getattr(s, f.name)
      if value is None:
        value = allowed[f.name]
        if value is None:
          raise err(f"train.stop.{f.name}", f"is required by rule {s.rule!r}")
      filled[f.name] = value
  for key, value in filled.items():
    if key in ("error", "mean_error") and value <= 0:
      raise err(f"train.stop.{key}", f"must be > 0, got {value}")
    if key in ("window", "count", "check_every", "test_size", "max_count") and value < 1:
      raise err(f"train.stop.{key}", f"must be >= 1, got {value}")
    if key == "max_wrong" and value < 0:
      raise err(f"train.stop.{key}", f"must be >= 0, got {value}")
  if "window" in filled and filled["window"] < t.batch_size:
    raise err("train.stop.window", f"must be >= train.batch_size ({t.batch_size}), got {filled['window']}")
  if "check_every" in filled and filled["check_every"] % t.batch_size:
    raise err(
      "train.stop.check_every", f"must be a multiple of train.batch_size ({t.batch_size}), got {filled['check_every']}"
    )
  stop = dataclasses.replace(s, **filled)

  r = cfg.run
  if r.checkpoint_every < 1:
    raise err("run.checkpoint_every", f"must be >= 1, got {r.checkpoint_every}")
  if r.test_size < 1:
    raise err("run.test_size", f"must be >= 1, got {r.test_size}")

  p = cfg.paper
  if p.success_rate is not None and not 0 <= p.success_rate <= 1:
    raise err("paper.success_rate", f"must be in [0, 1], got {p.success_rate}")
  for key in ("trials", "max_sequences", "weights"):
    if getattr(p, key) is not None and getattr(p, key) < 1:
      raise err(f"paper.{key}", f"must be >= 1, got {getattr(p, key)}")
  return dataclasses.replace(cfg, train=dataclasses.replace(t, stop=stop))


# ----------------------------------------------------------------------------
# Public entry points.


def _error_factory(source: str) -> Any:
  def err(key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {message}")

  return err


def from_dict(raw: dict[str, Any], *, source: str = "<config>", name: str = "") -> Config:
  """Checks a TOML-shaped dict against the schema and returns the :class:`Config`."""
  err = _error_factory(source)
  for key in ("name", "source"):
    if key in raw:
      raise err(key, "unknown key (known: task, model, train, run, paper)")
  cfg = _build(Config, raw, "", err)
  cfg = _validate(cfg, raw, err)
  return dataclasses.replace(cfg, name=name, source=source)


def parse_override(text: str) -> tuple[list[str], Any]:
  """Parses ``key.path=value``; the value is TOML (``0.1``, ``[0.1, 0.5]``, ``true``) or a bare string."""
  if "=" not in text:
    raise ConfigError(f"--set {text}: expected key=value, e.g. train.lr=0.1")
  key, value_text = text.split("=", 1)
  key = key.strip()
  parts = key.split(".")
  if not key or any(not p for p in parts):
    raise ConfigError(f"--set {text}: bad key {key!r}; expected a dotted path such as train.lr")
  try:
    value = tomllib.loads(f"v = {value_text}")["v"]
  except tomllib.TOMLDecodeError:
    value = value_text.strip()
  return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str], *, source: str) -> dict[str, Any]:
  """Returns a copy of ``raw`` with every ``key=value`` of ``overrides`` set, then checked together.

  The check runs once all are set, so keys that must agree can change together (``model.blocks`` and the
  per-block ``model.input_gate_bias``); an error names every ``--set`` given.
  """
  import copy

  raw = copy.deepcopy(raw)
  for text in overrides:
    parts, value = parse_override(text)
    node = raw
    for i, part in enumerate(parts[:-1]):
      child = node.setdefault(part, {})
      if not isinstance(child, dict):
        raise ConfigError(f"{source} (--set {text}): {'.'.join(parts[: i + 1])}: is not a table")
      node = child
    node[parts[-1]] = value
  from_dict(raw, source=f"{source} ({' '.join(f'--set {t}' for t in overrides)})")
  return raw


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
  """Reads a TOML config, applies ``--set`` overrides and validates everything."""
  path = Path(path)
  try:
    raw = tomllib.loads(path.read_text())
  except FileNotFoundError as e:
    raise ConfigError(f"{path}: no such config file") from e
  except tomllib.TOMLDecodeError as e:
    raise ConfigError(f"{path}: not valid TOML: {e}") from e
  from_dict(raw, source=str(path))
  source = str(path)
  if overrides:
    raw = apply_overrides(raw, overrides, source=source)
    source = f"{path} (with --set {' '.join(overrides)})"
  return from_dict(raw, source=source, name=path.stem)


def to_dict(cfg: Config) -> dict[str, Any]:
  """The config as a TOML-shaped dict (None values dropped), the inverse of :func:`from_dict`."""

  def clean(x: Any) -> Any:
    if isinstance(x, dict):
      return {k: clean(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
      return [clean(v) for v in x]
    return x

  d = clean(dataclasses.asdict(cfg))
  d.pop("name", None)
  d.pop("source", None)
  for key in MODERN_ONLY if cfg.model.mode == "paper" else PAPER_ONLY:
    d["model"].pop(key, None)
  return d


def _toml_value(v: Any) -> str:
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, int | float):
    return repr(v)
  if isinstance(v, str):
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
  if isinstance(v, list):
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"
  if isinstance(v, dict):
    return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
  raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(cfg: Config) -> str:
  """The resolved config as TOML text (reads back to an equal config with :func:`from_dict`)."""
  lines = [f"# Resolved config {cfg.name!r}: the file plus every --set, with defaults filled in."]

  def table(prefix: str, d: dict[str, Any]) -> None:
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict) or (prefix == "task" and k == "params")}
    subtables = {k: v for k, v in d.items() if k not in scalars}
    lines.append("")
    lines.append(f"[{prefix}]")
    for k, v in scalars.items():
      if prefix == "task" and k == "params":
        continue
      lines.append(f"{k} = {_toml_value(v)}")
    if prefix == "task":
      lines.append("")
      lines.append("[task.params]")
      for k, v in d.get("params", {}).items():
        lines.append(f"{k} = {_toml_value(v)}")
    for k, v in subtables.items():
      table(f"{prefix}.{k}", v)

  for section, d in to_dict(cfg).items():
    table(section, d)
  return "\n".join(lines) + "\n"
