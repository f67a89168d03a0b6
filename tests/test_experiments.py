"""The training engine (experiments.train), its checkpoints and resume (experiments.runner).

Tiny budgets throughout: each test compiles a small program and runs a few updates.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity_helpers import scan_products

import jaxrnn
from experiments import checkpoint, cli, config, numpy_reference, train
from experiments.tasks import make_task
from experiments.tasks.base import Example, Task
from jaxrnn._src import fused

# ----------------------------------------------------------------------------
# A stand-in task: one real input, a class signal at step 0, the target at the last step.


def stand_in_task(T: int = 5, *, fixed: Example | None = None) -> Task:
  def sample(key: jax.Array) -> Example:
    if fixed is not None:
      return fixed
    k_class, k_noise = jax.random.split(key)
    cls = jax.random.bernoulli(k_class)
    noise = 0.3 * jax.random.normal(k_noise, (T,), jnp.float32)
    xs = jnp.where(jnp.arange(T) == 0, jnp.where(cls, 1.0, -1.0), noise)[:, None]
    scored = jnp.arange(T) == T - 1
    targets = jnp.where(scored, jnp.where(cls, 0.8, 0.2), 0.0)[:, None]
    return Example(xs, targets, scored, jnp.int32(T), (targets > 0.5))

  def error(outputs: jax.Array, ex: Example) -> jax.Array:
    return jnp.max(jnp.where(ex.scored[:, None], jnp.abs(outputs - ex.targets), 0.0))

  def correct(outputs: jax.Array, ex: Example) -> jax.Array:
    return error(outputs, ex) < 0.25

  return Task(
    name="noise3a",
    input_size=1,
    output_size=1,
    max_length=T,
    output_activation="sigmoid",
    loss="mse",
    sample=sample,
    test_sample=sample,
    correct=correct,
    error=error,
  )


def paper_cfg(**train_overrides: object) -> config.Config:
  raw = {
    "task": {"name": "noise3a"},
    "model": {
      "mode": "paper",
      "blocks": 2,
      "block_size": 1,
      "init_scale": 0.5,
      "input_gate_bias": [-1.0, -2.0],
    },
    "train": {"lr": 0.5, "trials": 2, "max_sequences": 40, "eval_every": 10, "stop": {"rule": "st3", "error": 0.05}},
    "run": {"test_size": 20, "fast_compile": True},
  }
  raw["train"].update(train_overrides)
  return config.from_dict(raw, source="<test>", name="test")


@pytest.mark.parametrize(("mode", "want"), [("paper", "reference"), ("modern", "auto")])
def test_unroll_impl_defaults_to_the_path_the_committed_rows_were_made_with(mode: str, want: str):
  """Unset, model.unroll_impl trains bit for bit as the path each mode's committed rows were made with, and the
  other path differs by rounding (so the check can tell them apart)."""
  params = {}
  for impl in (None, "auto", "reference"):
    if mode == "paper":
      model = {"mode": "paper", "blocks": 2, "block_size": 2, "init_scale": 0.5, "input_gate_bias": [-1.0, -2.0]}
    else:
      model = {"mode": "modern", "cell": "lstm", "hidden_size": 6}
    if impl is not None:
      model["unroll_impl"] = impl
    raw = {
      "task": {"name": "noise3a"},
      "model": model,
      "train": {"lr": 0.5, "trials": 2, "max_sequences": 40, "eval_every": 20, "stop": {"rule": "none"}},
      "run": {"test_size": 4, "fast_compile": True},
    }
    exp = train.build(config.from_dict(raw, source="<test>", name="test"), stand_in_task(T=30))
    params[impl] = exp.run_chunk(exp.init_state()).trials.params
  other = "auto" if want == "reference" else "reference"
  chex.assert_trees_all_equal(params[None], params[want])
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params[None]), jax.tree.leaves(params[other])))


def test_engine_sizes_fast_path_chunks_for_one_sequence(monkeypatch):
  """The engine vmaps its trials and each update's batch of sequences; jaxrnn.unroll under vmap sizes its
  chunks for every mapped row (fused.mapped_size), but the engine traces under fused.chunks_per_example, as
  when the committed rows were made (the chunk length changes how weight gradients are summed)."""
  rows = []
  length = fused.chunk_length
  monkeypatch.setattr(fused, "chunk_length", lambda T, B, H, scale=1: rows.append(B) or length(T, B, H, scale))
  raw = {
    "task": {"name": "noise3a"},
    "model": {"mode": "modern", "cell": "gru", "hidden_size": 6},
    "train": {"lr": 0.01, "trials": 3, "batch_size": 4, "max_sequences": 8, "eval_every": 8, "stop": {"rule": "none"}},
    "run": {"test_size": 4, "fast_compile": True},
  }
  exp = train.build(config.from_dict(raw, source="<test>", name="test"), stand_in_task(T=30))
  exp.run_chunk(exp.init_state())
  assert rows and set(rows) == {1}  # one sequence's rows, not 3 trials x 4 sequences


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "mgu"])
def test_engine_evaluates_with_two_products_per_step(cell_name):
  """jaxrnn's LSTM and GRU evaluate with one product of [x, h] per step (fused._xh_joint, fused._joint_reset_after); the
  engine's models take two, under fused.two_products_per_step, so the committed rows' test scores are computed as
  when they were made. Outside the engine the same cell takes one."""
  raw = {
    "task": {"name": "noise3a"},
    "model": {"mode": "modern", "cell": cell_name, "hidden_size": 6},
    "train": {"lr": 0.01, "trials": 1, "batch_size": 1, "max_sequences": 8, "eval_every": 8, "stop": {"rule": "none"}},
    "run": {"test_size": 4, "fast_compile": True},
  }
  task = stand_in_task(T=7)
  model = train.build_model(config.from_dict(raw, source="<test>", name="test"), task)
  params = model.init(jax.random.key(0))
  xs = jnp.ones((7, task.input_size), jnp.float32)
  assert scan_products(lambda p: model.apply(p, xs), params) == [2]
  cell = getattr(jaxrnn, cell_name)(6)
  assert scan_products(lambda p: jaxrnn.unroll(cell, p, xs[:, None])[1], params.cell) == [1]


def test_output_activation_override_is_the_readout_without_its_sigmoid():
  task = stand_in_task(6)
  xs = jax.random.normal(jax.random.key(1), (6, 1), jnp.float32)
  raw = config.to_dict(paper_cfg())
  default = train.build_model(paper_cfg(), task)
  raw["model"]["output_activation"] = "linear"
  linear = train.build_model(config.from_dict(raw, source="<test>"), task)
  params = default.init(jax.random.key(0))  # same layout for both models
  out_sigmoid, z_sigmoid = default.apply(params, xs)
  out_linear, z_linear = linear.apply(params, xs)
  np.testing.assert_allclose(z_linear, z_sigmoid, rtol=1e-6)  # the same net input
  np.testing.assert_allclose(out_linear, z_linear, rtol=1e-6)  # linear: outputs are the net input
  np.testing.assert_allclose(out_sigmoid, 1.0 / (1.0 + np.exp(-np.asarray(z_sigmoid))), rtol=1e-5)
  assert np.max(np.abs(np.asarray(out_linear) - np.asarray(out_sigmoid))) > 0.1
  with pytest.raises(ValueError, match="squared-error tasks"):
    train.build_model(config.from_dict(raw, source="<test>"), task._replace(loss="xent"))


# ----------------------------------------------------------------------------
# model.one_hot_inputs = "gather" trains as the one-hot matrix product does.

# (config, overrides of [train]): the truncated gradient through a sequence (Exp 2c), the per-step RTRL
# (Exp 1), inputs also wired to the outputs (Exp 2a), and a modern cell on the fast path (GRU, Exp 6a).
# Paper mode scored at the last step, paper mode updated at every step, and modern mode with a batch.
GATHER_CASES = {
  "exp2c_q50_p50": {"task": {"p": 20, "q": 8, "max_extra": 10}},
  "exp1_reber_3x2_lr0p5": {"train": {"update_every": "step"}},
  "modern_gru_order6a": {"train": {"batch_size": 4}},
}


def _shrunk(name: str, one_hot_inputs: str, overrides: dict) -> config.Config:
  raw = tomllib.loads((Path(__file__).resolve().parent.parent / f"configs/{name}.toml").read_text())
  raw["task"].setdefault("params", {}).update(overrides.get("task", {}))
  batch = overrides.get("train", {}).get("batch_size", 1)
  raw["train"].update(trials=2, max_sequences=4 * batch, eval_every=2 * batch, stop={"rule": "none"})
  raw["train"].update(overrides.get("train", {}))
  raw["model"]["one_hot_inputs"] = one_hot_inputs
  raw["run"].update(test_size=4, fast_compile=True, checkpoint_every=2 * batch)
  return config.from_dict(raw, source="<test>", name=name)


@pytest.mark.parametrize("name", list(GATHER_CASES))
def test_gather_inputs_equal_the_one_hot_matrix_product(name: str):
  """The same net inputs bit for bit, and the same training up to the order in which gradients are summed."""
  exps = {}
  for mode in ("matmul", "gather"):
    cfg = _shrunk(name, mode, GATHER_CASES[name])
    exps[mode] = train.build(cfg, make_task(cfg.task.name, **cfg.task.params))
  matmul, gather = exps["matmul"], exps["gather"]
  s_matmul, s_gather = matmul.init_state(), gather.init_state()
  chex.assert_trees_all_equal(s_matmul.trials.params, s_gather.trials.params)
  ex = jax.vmap(matmul.task.sample)(jax.random.split(jax.random.key(5), 3))
  assert ex.ids is not None and ex.ids.dtype == jnp.int32
  params = train.trial_params(s_matmul, 0)
  # The forward pass: equal outputs (the gathered row times an identity matrix is the row exactly).
  want = jax.vmap(matmul.model.apply, in_axes=(None, 0))(params, matmul.model.inputs(ex))
  got = jax.vmap(gather.model.apply, in_axes=(None, 0))(params, gather.model.inputs(ex))
  chex.assert_trees_all_equal(got, want)
  # Training: two chunks; the weight changes agree to float32 rounding.
  before = s_matmul.trials.params
  for _ in range(2):
    s_matmul, s_gather = matmul.run_chunk(s_matmul), gather.run_chunk(s_gather)
  delta = {
    mode: jax.tree.map(jnp.subtract, s.trials.params, before)
    for mode, s in (("matmul", s_matmul), ("gather", s_gather))
  }
  scale = max(float(jnp.max(jnp.abs(d))) for d in jax.tree.leaves(delta["matmul"]))
  assert scale > 1e-5  # the weights moved
  chex.assert_trees_all_close(delta["gather"], delta["matmul"], rtol=1e-4, atol=1e-3 * scale)


def test_gather_inputs_need_a_one_hot_task():
  raw = config.to_dict(paper_cfg())
  raw["model"]["one_hot_inputs"] = "gather"
  with pytest.raises(ValueError, match=r"model.one_hot_inputs = 'gather' needs a task whose inputs are one-hot"):
    train.build_model(config.from_dict(raw, source="<test>"), stand_in_task())


# ----------------------------------------------------------------------------
# Online truncated-gradient SGD equals the paper's algorithm computed by hand.


def _sig(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _hand_update(p: train.ModelParams, ex: Example, lr: float, per_step: bool = False) -> dict[str, np.ndarray]:
  """One online step of the 1997 LSTM (one block, one cell) by the paper's truncated RTRL, in float64.

  Units: [cell, input gate, output gate]. Each net input sees src(t) = [x(t), y(t-1), 1]; truncation
  treats src as constant, so only the cell state carries derivatives through time:
    ds/dθ_c(t) = ds/dθ_c(t-1) + y_in g'(net_c) src,  ds/dθ_in(t) = ds/dθ_in(t-1) + g(net_c) y_in (1 - y_in) src.
  per_step: change the weights after every scored step (the paper's online truncated RTRL), else once with
  the gradient summed over the sequence.
  """
  f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
  w_x, w_h = f64(p.cell.w_x), f64(p.cell.w_h)
  b = np.concatenate([f64(p.cell.b_cell), f64(p.cell.b_in), f64(p.cell.b_out)])
  W = np.concatenate([w_x, w_h, b[None]], axis=0)  # (I + U + 1, U): rows = src, columns = units
  w_o, b_o = f64(p.out.w), f64(p.out.b)
  xs, targets, scored = f64(ex.xs), f64(ex.targets), np.asarray(ex.scored)
  n_src = W.shape[0]
  y_prev, s = np.zeros(3), 0.0
  ds_c, ds_in = np.zeros(n_src), np.zeros(n_src)
  gW, gw_o, gb_o = np.zeros_like(W), np.zeros_like(w_o), np.zeros_like(b_o)
  for t in range(xs.shape[0]):
    src = np.concatenate([xs[t], y_prev, [1.0]])
    net = src @ W
    y_in, y_out = _sig(net[1]), _sig(net[2])
    g = 4 * _sig(net[0]) - 2
    g_prime = 4 * _sig(net[0]) * (1 - _sig(net[0]))
    s = s + y_in * g
    h = 2 * _sig(s) - 1
    h_prime = 2 * _sig(s) * (1 - _sig(s))
    y_c = y_out * h
    ds_c = ds_c + y_in * g_prime * src
    ds_in = ds_in + g * y_in * (1 - y_in) * src
    out = _sig(y_c * w_o[0] + b_o)
    if scored[t]:
      delta = (out - targets[t]) * out * (1 - out)  # dE/dnet_k of E = 1/2 sum (y - d)^2
      gw_o[0] += delta * y_c
      gb_o += delta
      e_c = float(np.sum(delta * w_o[0]))  # dE/dy_c
      gW[:, 0] += e_c * y_out * h_prime * ds_c
      gW[:, 1] += e_c * y_out * h_prime * ds_in
      gW[:, 2] += e_c * h * y_out * (1 - y_out) * src
    y_prev = np.array([y_c, y_in, y_out])
    if per_step:
      W, w_o, b_o = W - lr * gW, w_o - lr * gw_o, b_o - lr * gb_o
      gW, gw_o, gb_o = np.zeros_like(W), np.zeros_like(w_o), np.zeros_like(b_o)
  W_new = W - lr * gW
  I = w_x.shape[0]
  return {
    "w_x": W_new[:I],
    "w_h": W_new[I:-1],
    "b": W_new[-1],
    "w_o": w_o - lr * gw_o,
    "b_o": b_o - lr * gb_o,
  }


# (train.update_every, model.unroll_impl): the per-sequence gradient through the plain scan and through the fast path
# (fused.py's lstm1997 kernel), and the per-step RTRL (which does not unroll through jaxrnn.unroll).
UPDATE_CASES = [("sequence", "reference"), ("sequence", "auto"), ("step", "reference")]


@pytest.mark.parametrize(("update_every", "unroll_impl"), UPDATE_CASES)
def test_online_truncated_sgd_equals_hand_computed_update(update_every: str, unroll_impl: str):
  T = 4
  ex = Example(
    xs=jnp.asarray([[1.0], [-0.5], [0.3], [0.8]], jnp.float32),
    targets=jnp.asarray([[0.0], [1.0], [0.0], [1.0]], jnp.float32),
    scored=jnp.asarray([False, True, True, True]),
    length=jnp.int32(T),
    legal=jnp.zeros((T, 1), bool),
  )
  cfg = config.from_dict(
    {
      "task": {"name": "noise3a"},
      "model": {
        "mode": "paper",
        "blocks": 1,
        "block_size": 1,
        "init_scale": 0.8,
        "input_gate_bias": [-0.5],
        "unroll_impl": unroll_impl,
      },
      "train": {
        "lr": 5.0,  # large, so that changing weights within the sequence matters
        "trials": 1,
        "max_sequences": 1,
        "eval_every": 1,
        "update_every": update_every,
        "stop": {"rule": "none"},
      },
      "run": {"test_size": 1, "fast_compile": True},
    },
    source="<test>",
  )
  exp = train.build(cfg, stand_in_task(T, fixed=ex))
  state = exp.init_state()
  before = train.trial_params(state, 0)
  after = train.trial_params(exp.run_chunk(state), 0)
  want = _hand_update(before, ex, 5.0, per_step=update_every == "step")
  other = _hand_update(before, ex, 5.0, per_step=update_every != "step")
  for k in ("w_h", "b", "w_o"):  # the test tells the two rules apart
    assert np.max(np.abs(want[k] - other[k])) > 1e-3
  assert not np.allclose(before.cell.w_h, after.cell.w_h)  # the update is not trivially zero
  b = np.concatenate([after.cell.b_cell, after.cell.b_in, after.cell.b_out])
  np.testing.assert_allclose(after.cell.w_x, want["w_x"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(after.cell.w_h, want["w_h"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(b, want["b"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(after.out.w, want["w_o"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(after.out.b, want["b_o"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("update_every", "unroll_impl"), UPDATE_CASES)
def test_engine_trains_the_exp1_3x2_net_as_the_numpy_reference(update_every: str, unroll_impl: str):
  """Blocks of two cells sharing their gates, gate-only biases: the engine against the numpy reference."""
  raw = tomllib.loads((Path(__file__).resolve().parent.parent / "configs/exp1_reber_3x2_lr0p5.toml").read_text())
  raw["train"].update(trials=1, max_sequences=1, eval_every=1, update_every=update_every, stop={"rule": "none"})
  raw["model"]["unroll_impl"] = unroll_impl
  raw["run"].update(test_size=1, fast_compile=True, checkpoint_every=1)
  cfg = config.from_dict(raw, source="<test>")
  task = make_task("reber")
  fixed = jax.tree.map(lambda a: a[3], task.train_set)
  exp = train.build(cfg, task._replace(sample=lambda key: fixed))
  state = exp.init_state()
  before = train.trial_params(state, 0)
  after = train.trial_params(exp.run_chunk(state), 0)

  f64 = lambda a: np.array(a, np.float64)  # noqa: E731
  C, CS = 3, 6
  b = np.concatenate([np.zeros(CS), f64(before.cell.b_in), f64(before.cell.b_out)])
  net = numpy_reference.Net(
    np.concatenate([f64(before.cell.w_x), f64(before.cell.w_h), b[None]]), f64(before.out.w), C, 2
  )
  n = int(fixed.length)
  numpy_reference.run_sequence(net, f64(fixed.xs)[:n], f64(fixed.targets)[:n], lr=0.5, update_every=update_every)
  assert np.max(np.abs(net.W[:7] - f64(before.cell.w_x))) > 1e-3  # the sequence changed the weights
  np.testing.assert_allclose(after.cell.w_x, net.W[:7], atol=2e-6)
  np.testing.assert_allclose(after.cell.w_h, net.W[7:-1], atol=2e-6)
  np.testing.assert_allclose(after.cell.b_in, net.W[-1, CS : CS + C], atol=2e-6)
  np.testing.assert_allclose(after.cell.b_out, net.W[-1, CS + C :], atol=2e-6)
  np.testing.assert_allclose(after.out.w, net.W_out, atol=2e-6)
  assert after.cell.b_cell is None and after.out.b is None  # the paper's 276 weights


def test_numpy_reference_trains_and_checks_like_the_paper():
  """The reference's own training loop: a 4x1 net's weights move, the check counts all 512 strings."""
  result = numpy_reference.train_trial(0, blocks=4, block_size=1, lr=0.5, max_sequences=20, check_every=20)
  assert result.solved_at is None and 0 < result.wrong <= 512  # 20 sequences never solve it
  assert result.max_abs_state > 0.0
  net = numpy_reference.init_net(np.random.default_rng(0), 4, 1)
  assert net.W.size - 4 + net.W_out.size == 264  # the paper's count; the bias row's 4 cell slots stay 0, unused
  np.testing.assert_array_equal(net.W[-1, 4:8] == 0.0, False)  # random input-gate biases
  np.testing.assert_array_equal(net.W[-1, 8:], [-1.0, -2.0, -3.0, -4.0])


def test_numpy_reference_command_line(capsys):
  numpy_reference.main(
    ["--blocks", "2", "--block-size", "1", "--trials", "2", "--max-sequences", "5"]
    + ["--check-every", "5", "--workers", "1"]
  )
  out = capsys.readouterr().out
  assert out.count("unsolved, ") == 2 and "2x1 lr 0.5 input-gate bias random update every step: 0 of 2 solved" in out
  with pytest.raises(SystemExit):
    numpy_reference.main(["--input-gate-bias", "low"])
  assert "--input-gate-bias must be 'random' or a number, got 'low'" in capsys.readouterr().err
  with pytest.raises(ValueError, match="needs targets"):
    numpy_reference.run_sequence(numpy_reference.init_net(np.random.default_rng(0), 1, 1), np.zeros((2, 7)), lr=0.1)


# ----------------------------------------------------------------------------
# vmap over trials equals the trials one by one; the chunk compiles once.


def test_vmapped_trials_equal_trials_run_one_by_one():
  task = stand_in_task()
  exp = train.build(paper_cfg(lr=[0.1, 0.5], trials=2, seed=3), task)
  state = exp.init_state()
  alone = train.build(paper_cfg(lr=0.5, trials=1, seed=4), task)
  s1 = alone.init_state()
  for _ in range(3):
    state, s1 = exp.run_chunk(state), alone.run_chunk(s1)
  assert [(d["lr"], d["seed"]) for d in exp.trial_info] == [(0.1, 3), (0.1, 4), (0.5, 3), (0.5, 4)]
  got = jax.tree.map(lambda a: a[3], state.trials)
  want = jax.tree.map(lambda a: a[0], s1.trials)
  chex.assert_trees_all_close(got.params, want.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_equal(got.stats.sequences, want.stats.sequences)
  chex.assert_trees_all_equal(got.stats.streak, want.stats.streak)
  chex.assert_trees_all_equal(got.key, want.key)
  # Trials with other learning rates or seeds did differ.
  assert not np.allclose(state.trials.params.out.w[1], state.trials.params.out.w[3])
  assert not np.allclose(state.trials.params.out.w[2], state.trials.params.out.w[3])


def test_evaluations_too_large_for_one_batch_score_in_batches_alike(monkeypatch):
  # The final test and Exp 3's periodic check, with a memory cap that allows 3 sequences per batch (so
  # 20 test sequences are 7 batches, the last padded, and the check's 7 are 3), equal the same
  # evaluations scored in one batch: the same sequences, the same wrong counts and errors (to float32
  # rounding: the batches sum in another order, which on GPU moves the mean error by a few ulps).
  task = stand_in_task()
  stop = {"rule": "st12", "check_every": 10, "test_size": 7, "max_wrong": 0, "mean_error": 0.001}
  cfg = paper_cfg(trials=2, max_sequences=40, eval_every=10, stop=stop)
  whole = train.build(cfg, task)
  monkeypatch.setattr(train, "EVAL_BYTES", 3 * 2 * train.eval_sequence_bytes(cfg, task))
  assert train.eval_batch_size(cfg, task, 20, 2) == 3
  batched = train.build(cfg, task)
  s1, s2 = whole.run_chunk(whole.init_state()), batched.run_chunk(batched.init_state())
  c1, c2 = s1.trials.stats, s2.trials.stats
  assert np.all(np.asarray(c1.check_wrong) >= 0)  # a check ran
  np.testing.assert_array_equal(c1.check_wrong, c2.check_wrong)
  np.testing.assert_allclose(c1.check_error, c2.check_error, rtol=1e-5)
  t1, t2 = whole.test(s1.trials.params), batched.test(s2.trials.params)
  np.testing.assert_array_equal(t1["wrong"], t2["wrong"])
  np.testing.assert_allclose(t1["error"], t2["error"], rtol=1e-5)
  np.testing.assert_allclose(t1["mse"], t2["mse"], rtol=1e-5)
  # And both count the test's wrong sequences as the task's own rule does, sequence by sequence.
  model, (_, _, test_keys) = whole.model, train._trial_keys(whole.trial_info)

  @jax.jit
  def wrong_one_by_one(params, keys):
    def one(key):
      ex = task.test_sample(key)
      return ~task.correct(model.apply(params, ex.xs)[0], ex)

    return jnp.sum(jax.vmap(one)(keys))

  for i in range(2):
    wrong = wrong_one_by_one(train.trial_params(s1, i), jax.random.split(test_keys[i], 20))
    assert int(t1["wrong"][i]) == int(wrong)


@pytest.fixture(scope="module")
def solvable():
  """An experiment the stand-in task solves quickly, and its chunk jitted under a trace counter.

  Every test that uses this fixture calls the same jitted chunk: together they check it is traced
  (so compiled) once, however many chunks run.
  """
  cfg = paper_cfg(lr=1.0, trials=2, max_sequences=3000, eval_every=100, stop={"rule": "st3", "error": 0.5, "window": 5})
  exp = train.build(cfg, stand_in_task())
  yield exp, jax.jit(chex.assert_max_traces(exp.chunk_fn, n=1))
  chex.clear_trace_counter()


def test_solved_trials_freeze_and_record_success(solvable):
  # A tiny ST3 window and a loose threshold: the stand-in task is solved within the budget.
  exp, run_chunk = solvable
  state = exp.init_state()
  for _ in range(30):
    state = run_chunk(state)
    if bool(jnp.all(state.trials.stats.solved)):
      break
  stats = state.trials.stats
  assert bool(jnp.all(stats.solved))
  assert bool(jnp.all(stats.solved_at == stats.sequences))
  assert bool(jnp.all(stats.streak >= 5))
  frozen = state.trials
  state = run_chunk(state)
  chex.assert_trees_all_equal(frozen, state.trials)
  assert int(state.step) >= 2 * exp.chunk_updates  # several chunks, one trace (assert_max_traces)


# ----------------------------------------------------------------------------
# Checkpoints and resume.


def test_checkpoint_round_trip(tmp_path: Path, solvable):
  exp, run_chunk = solvable
  state = run_chunk(exp.init_state())
  checkpoint.save(tmp_path / "c.npz", state, {"step": 7})
  restored, meta = checkpoint.load(tmp_path / "c.npz", exp.init_state())
  assert meta["step"] == 7
  chex.assert_trees_all_equal(restored, state)
  chex.assert_trees_all_equal(run_chunk(restored), run_chunk(state))  # same shapes and dtypes: no retrace
  with np.load(tmp_path / "c.npz", allow_pickle=False) as data:  # no pickled objects inside
    assert all(data[k].dtype != object for k in data.files)
  bigger = jax.tree.map(lambda a: jnp.concatenate([a, a[:1]]), exp.init_state().trials)
  with pytest.raises(ValueError, match="another config"):
    checkpoint.load(tmp_path / "c.npz", train.State(jnp.int32(0), bigger))


RESUME_CONFIG = """
[task]
name = "noise3a"
[task.params]
T = 8
N = 1
[model]
mode = "paper"
blocks = 2
block_size = 1
init_scale = 0.3
input_gate_bias = [-1.0, -2.0]
output_bias = false
[train]
lr = [0.5, 1.0]
trials = 2
max_sequences = 600
eval_every = 50
[train.stop]
rule = "st12"
check_every = 50
test_size = 16
max_wrong = 2
mean_error = 0.3
[run]
checkpoint_every = 100
test_size = 64
fast_compile = true
"""

_VOLATILE = {"wall_s", "train_wall_s", "trial_sequences_per_s", "compile_s", "command"}  # command: its --out differs


def _stable(summary: dict) -> dict:
  return {k: v for k, v in summary.items() if k not in _VOLATILE}


def _metrics(run: Path) -> list[dict]:
  lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in x.items() if k != "wall_s"} for x in lines]


class Interrupt:
  """A hook that raises ``exc`` at the first chunk after ``after_checkpoints`` checkpoints (+ ``extra`` chunks)."""

  def __init__(self, exc: BaseException, extra: int = 0):
    self.exc, self.extra, self.armed = exc, extra, None

  def __call__(self, event: dict) -> None:
    if self.armed is None and event["checkpointed"]:
      self.armed = self.extra
    elif self.armed is not None:
      self.armed -= 1
    if self.armed is not None and self.armed <= 0:
      raise self.exc


def test_resume_after_interrupt_or_kill_gives_the_same_summary(tmp_path: Path):
  path = tmp_path / "resume.toml"
  path.write_text(RESUME_CONFIG)
  full = tmp_path / "full"
  assert cli.main(["run", str(path), "--out", str(full), "--no-progress"]) == 0
  want = json.loads((full / "summary.json").read_text())

  # Ctrl-C right after the first checkpoint: a checkpoint is saved, exit status 130, then --resume.
  cut = tmp_path / "ctrl_c"
  argv = ["run", str(path), "--out", str(cut), "--no-progress"]
  assert cli.main(argv, hook=Interrupt(KeyboardInterrupt())) == 130
  assert not (cut / "summary.json").exists()
  # A run folder written before a config field existed (here: model.dtype, at its default) still resumes.
  resolved = (cut / "config.toml").read_text()
  assert 'dtype = "float32"\n' in resolved
  (cut / "config.toml").write_text(resolved.replace('dtype = "float32"\n', ""))
  assert cli.main([*argv, "--resume"]) == 0
  assert _stable(json.loads((cut / "summary.json").read_text())) == _stable(want)
  assert _metrics(cut) == _metrics(full)

  # A hard kill two chunks after the first checkpoint (no chance to save): resume redoes those chunks.
  killed = tmp_path / "killed"
  argv = ["run", str(path), "--out", str(killed), "--no-progress"]
  with pytest.raises(SystemExit):
    cli.main(argv, hook=Interrupt(SystemExit(9), extra=2))
  assert cli.main(argv) == 2  # a checkpoint is there: refuse to start over without --resume
  assert cli.main([*argv, "--resume"]) == 0
  assert _stable(json.loads((killed / "summary.json").read_text())) == _stable(want)
  assert _metrics(killed) == _metrics(full)

  # Resuming with another config is refused; running a finished run again without --resume starts over.
  assert cli.main([*argv, "--resume", "--set", "train.lr=0.2"]) == 2
  assert cli.main(argv) == 0
  assert _stable(json.loads((killed / "summary.json").read_text())) == _stable(want)


def test_resume_after_sigkill_of_the_cli_process(tmp_path: Path):
  """A real `python -m experiments run` killed with SIGKILL mid-run, resumed, ends as an uninterrupted run."""
  import os
  import signal
  import subprocess
  import sys
  import time

  path = tmp_path / "long.toml"
  # No stopping rule, so the run trains for the whole budget and the kill lands mid-training.
  stop = RESUME_CONFIG[RESUME_CONFIG.index("[train.stop]") : RESUME_CONFIG.index("[run]")]
  text = RESUME_CONFIG.replace(stop, '[train.stop]\nrule = "none"\n')
  path.write_text(text.replace("max_sequences = 600", "max_sequences = 3000"))
  killed = tmp_path / "killed"
  repo = Path(__file__).resolve().parent.parent
  proc = subprocess.Popen(
    [sys.executable, "-m", "experiments", "run", str(path), "--out", str(killed), "--no-progress"],
    cwd=repo,
    env={**os.environ, "PYTHONPATH": str(repo)},
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 120
  while not (killed / "checkpoint.npz").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (killed / "checkpoint.npz").exists() and not (killed / "summary.json").exists()
  with np.load(killed / "checkpoint.npz", allow_pickle=False) as data:
    assert 0 < json.loads(bytes(data["meta"]))["sequences"] < 3000  # killed mid-training
  argv = ["run", str(path), "--out", str(killed), "--no-progress", "--resume"]
  assert cli.main(argv) == 0
  full = tmp_path / "full"
  assert cli.main(["run", str(path), "--out", str(full), "--no-progress"]) == 0
  assert _stable(json.loads((killed / "summary.json").read_text())) == _stable(
    json.loads((full / "summary.json").read_text())
  )
  assert _metrics(killed) == _metrics(full)


def test_float64_run_has_float64_weights_and_follows_the_float32_run(tmp_path: Path):
  """``model.dtype = "float64"``: weights and data in float64 under a scoped ``jax.enable_x64``."""
  path = tmp_path / "f64.toml"
  path.write_text(RESUME_CONFIG)
  runs = {}
  for dtype in ("float32", "float64"):
    out = tmp_path / dtype
    argv = ["run", str(path), "--out", str(out), "--no-progress", "--set", f"model.dtype={dtype}"]
    argv += ["--set", "train.max_sequences=100"]
    assert cli.main(argv) == 0
    runs[dtype] = _metrics(out)
    with np.load(out / "checkpoint.npz", allow_pickle=False) as data:
      # The weight matrices, stacked over trials: (trials, inputs, units) (the metrics buffers are 2-D).
      matrices = [data[k].dtype for k in data.files if data[k].ndim == 3]
    assert len(matrices) >= 3 and set(matrices) == {np.dtype(dtype)}
  assert jnp.zeros(()).dtype == jnp.float32  # the float64 run left the process's default alone
  # The same seeds give the same initial weights and sequences: the two runs' training errors agree
  # to float32's precision over the first updates.
  for a, b in zip(runs["float32"], runs["float64"], strict=True):
    np.testing.assert_allclose(a["train_error"], b["train_error"], rtol=1e-4, atol=1e-6)


def test_fast_compile_keeps_the_options_xla_knows_and_trains_alike(monkeypatch):
  known = dict(train._FAST_COMPILE)
  monkeypatch.setattr(train, "_FAST_COMPILE", {**known, "xla_no_such_option_in_any_version": True})
  train.fast_compile_options.cache_clear()
  try:
    assert train.fast_compile_options() == known
    # The options change how fast the program compiles and runs, not what it computes.
    states = []
    for fast in ("false", "true"):
      sets = ["train.trials=2", "train.eval_every=40", "train.max_sequences=40", f"run.fast_compile={fast}"]
      cfg = config.load(Path("configs/default.toml"), sets)
      exp = train.build(cfg, make_task(cfg.task.name, **cfg.task.params))
      states.append(exp.run_chunk(exp.init_state()))
  finally:
    train.fast_compile_options.cache_clear()
  assert int(states[0].trials.stats.sequences[0]) == 40
  chex.assert_trees_all_close(states[0].trials.params, states[1].trials.params, rtol=1e-5, atol=1e-6)
