"""Tests of the task generators against the paper's definitions (Hochreiter & Schmidhuber 1997).

Every property is recomputed independently in numpy from the generated inputs: marker counts and
positions, targets, length ranges, class balance, the Reber grammar (re-walked with its own
automaton), Exp 2c's structure, noise statistics, the copy layout and the baselines. Each task
configuration is compiled once (``_sampler``) to keep the suite fast.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.tasks import BASELINES, TASK_NAMES, Example, Task, baselines, make_task, task_params

# One xdist worker runs the whole module, so each compiled sampler below is shared by its tests.
pytestmark = pytest.mark.xdist_group("tasks")

# The configuration of each task in these tests; the specific tests reuse them so that every
# configuration compiles once (XLA compiles of the samplers dominate the suite's time).
PARAMS = {
  "reber": {},
  "lag2a": {"p": 12},
  "lag2b": {"p": 12},
  "lag2c": {"p": 5, "q": 10, "max_extra": 20},
  "noise3a": {"T": 100, "N": 3},
  "noise3b": {"T": 100, "N": 3},
  "noise3c": {"T": 100, "N": 3},
  "adding": {"T": 100},
  "multiplication": {"T": 100},
  "order6a": {},
  "order6b": {},
  "adding_modern": {"T": 100},
  "copy": {"T": 15, "n_symbols": 8, "copy_length": 10},
}
ONE_HOT_TASKS = ("reber", "lag2a", "lag2b", "lag2c", "order6a", "order6b", "copy")  # symbols in, one-hot
CHUNK = 4096  # every draw and score runs on batches of this size: one compile per configuration


def _key(params: dict) -> tuple:
  return tuple(sorted(params.items()))


@functools.cache
def _task(name: str, params: tuple) -> Task:
  return make_task(name, **dict(params))


def task_of(name: str, **params) -> Task:
  return _task(name, _key(params or PARAMS[name]))


@functools.cache
def _batched(fn):
  return jax.jit(jax.vmap(fn))


def _sampler(name: str, params: tuple, test: bool):
  task = _task(name, params)
  return _batched(task.test_sample if test else task.sample)  # one compile when they are the same


def draw(name: str, chunks: int = 1, seed: int = 0, test: bool = False, **params) -> Example:
  """``chunks * CHUNK`` examples of task ``name`` (default parameters: PARAMS) as numpy arrays."""
  sampler = _sampler(name, _key(params or PARAMS[name]), test)
  keys = jax.random.split(jax.random.key(seed), chunks * CHUNK).reshape(chunks, CHUNK)
  parts = [jax.tree.map(np.asarray, sampler(k)) for k in keys]
  return jax.tree.map(lambda *a: np.concatenate(a), *parts)


@functools.cache
def _scorer(name: str, params: tuple):
  task = _task(name, params)
  return jax.jit(jax.vmap(lambda o, ex: (task.correct(o, ex), task.error(o, ex))))


def score(name: str, outputs: np.ndarray, batch: Example, **params) -> tuple[np.ndarray, np.ndarray]:
  """``(correct (n,), error (n,))`` of batched outputs; ``n`` a multiple of CHUNK."""
  scorer = _scorer(name, _key(params or PARAMS[name]))
  results = []
  for i in range(0, len(batch.length), CHUNK):
    part = jax.tree.map(lambda a: a[i : i + CHUNK], batch)  # noqa: B023
    results.append(scorer(jnp.asarray(outputs[i : i + CHUNK], jnp.float32), part))
  return tuple(np.concatenate([np.asarray(r[j]) for r in results]) for j in range(2))


def z_ok(count: float, n: int, p: float, z: float = 5.0) -> bool:
  """Whether ``count`` successes of ``n`` is within ``z`` binomial standard deviations of ``n p``."""
  return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def chi2_ok(counts: np.ndarray, probs: np.ndarray) -> bool:
  """A chi-square goodness-of-fit check that fails with probability about 1e-6 on a fair generator.

  The threshold is the Wilson-Hilferty approximation of the chi-square 1 - 1e-6 quantile.
  """
  n = counts.sum()
  expected = n * probs
  stat = float(np.sum((counts - expected) ** 2 / expected))
  dof = len(counts) - 1
  z = 4.75  # the standard normal 1 - 1e-6 quantile
  return stat < dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def valid_mask(batch: Example) -> np.ndarray:
  T = batch.xs.shape[1]
  return np.arange(T)[None, :] < batch.length[:, None]


def last(values: np.ndarray, batch: Example) -> np.ndarray:
  """``values[i, length_i - 1]`` for each example i."""
  return values[np.arange(len(batch.length)), batch.length - 1]


# ----------------------------------------------------------------------------
# make_task: names, parameters, validation


def test_task_names_all_constructible_with_defaults():
  assert set(PARAMS) == set(TASK_NAMES)
  for name in TASK_NAMES:
    task = make_task(name)
    assert task.name == name
    assert isinstance(task, Task)
    expected = {"adding_modern": ("linear", "mse"), "copy": ("softmax", "xent")}.get(name, ("sigmoid", "mse"))
    assert (task.output_activation, task.loss) == expected


def test_defaults_are_the_papers_main_rows():
  assert task_params("reber") == {"data_seed": 0, "n_train": 256, "n_test": 256, "legal_targets": 0, "distinct": 0}
  assert task_params("lag2a") == {"p": 100}
  assert task_params("lag2b") == {"p": 100, "last_only": 0}
  assert task_params("lag2c") == {"p": 100, "q": 100, "max_extra": 100}
  for name in ("noise3a", "noise3b", "noise3c"):
    assert task_params(name) == {"T": 100, "N": 3}
  assert task_params("adding") == task_params("multiplication") == {"T": 100}
  assert task_params("order6a") == task_params("order6b") == {"length_min": 100, "length_max": 110}
  assert task_params("copy") == {"T": 100, "n_symbols": 8, "copy_length": 10}
  sizes = {name: (t.input_size, t.output_size, t.max_length) for name in TASK_NAMES for t in [make_task(name)]}
  assert sizes["reber"] == (7, 7, 29)
  assert sizes["lag2a"] == sizes["lag2b"] == (101, 101, 100)
  assert sizes["lag2c"] == (104, 2, 203)
  assert sizes["noise3a"] == (1, 1, 110)
  assert sizes["adding"] == sizes["multiplication"] == (2, 1, 110)
  assert sizes["order6a"] == (8, 4, 110)
  assert sizes["order6b"] == (8, 8, 110)
  assert sizes["adding_modern"] == (2, 1, 100)
  assert sizes["copy"] == (10, 9, 120)


def test_weight_counts_match_the_paper():
  # weights = H (I + H + 1) + K (C S + 1), H = C (S + 2): the paper's checks pin I and K.
  def weights(task, C, S):
    H = C * (S + 2)
    return H * (task.input_size + H + 1) + task.output_size * (C * S + 1)

  assert weights(make_task("adding"), 2, 2) == 93
  assert weights(make_task("multiplication"), 2, 2) == 93
  assert weights(make_task("order6a"), 2, 2) == 156
  assert weights(make_task("order6b"), 3, 2) == 308
  # Exp 1: only gates biased (2 per block), 4x1: 264.
  reber = make_task("reber")
  H = 4 * 3
  assert H * (reber.input_size + H) + 2 * 4 + reber.output_size * 4 == 264
  # Exp 2c: no biases, 2 blocks of 1 cell.
  for p, expected in ((50, 364), (100, 664), (1000, 6064)):
    t = make_task("lag2c", p=p, q=10, max_extra=5)
    assert 6 * (t.input_size + 6) + t.output_size * 2 == expected


def test_unknown_task_name():
  with pytest.raises(ValueError, match="unknown task 'adder'.*adding"):
    make_task("adder")


@pytest.mark.parametrize(
  ("name", "params", "pattern"),
  [
    ("adding", {"p": 3}, r"task 'adding' has no parameter 'p'; allowed parameters: T"),
    ("order6a", {"T": 100}, r"task 'order6a' has no parameter 'T'; allowed parameters: length_min, length_max"),
    ("copy", {"n_symbol": 8}, r"task 'copy' has no parameter 'n_symbol'.*n_symbols"),
    ("reber", {"seed": 1}, r"task 'reber' has no parameter 'seed'.*data_seed"),
    ("adding", {"T": 10}, r"task 'adding': parameter 'T' must be an integer >= 22, got 10"),
    ("multiplication", {"T": 100.0}, r"task 'multiplication': parameter 'T' must be an integer"),
    ("adding_modern", {"T": True}, r"task 'adding_modern': parameter 'T' must be an integer"),
    ("noise3a", {"N": 2}, r"task 'noise3a': parameter 'N' must be one of 1, 3, got 2"),
    ("noise3b", {"T": 3, "N": 3}, r"task 'noise3b': parameter 'T' must be larger than N"),
    ("lag2a", {"p": 1}, r"task 'lag2a': parameter 'p' must be an integer >= 2"),
    ("lag2b", {"last_only": 2}, r"task 'lag2b': parameter 'last_only' must be one of 0, 1, got 2"),
    ("lag2c", {"max_extra": -1}, r"task 'lag2c': parameter 'max_extra' must be an integer >= 0"),
    ("lag2c", {"p": 0}, r"task 'lag2c': parameter 'p'"),
    ("order6b", {"length_min": 70}, r"task 'order6b': parameter 'length_min' must be an integer >= 77"),
    ("order6a", {"length_max": 90}, r"task 'order6a': parameter 'length_max' must be an integer >= 100"),
    ("copy", {"copy_length": 0}, r"task 'copy': parameter 'copy_length' must be an integer >= 1"),
    ("reber", {"n_train": 0}, r"task 'reber': parameter 'n_train'"),
    ("reber", {"n_train": 4000, "n_test": 200}, r"task 'reber': parameter 'n_test' must be an integer in"),
  ],
)
def test_invalid_parameters_raise(name, params, pattern):
  with pytest.raises(ValueError, match=pattern):
    make_task(name, **params)


def test_numpy_integers_are_accepted():
  assert make_task("adding", T=np.int64(40)).max_length == 44


# ----------------------------------------------------------------------------
# Generic contract: shapes, dtypes, padding, jit = vmap, correct on targets


@pytest.mark.parametrize("name", TASK_NAMES)
def test_contract_shapes_padding_and_scoring(name):
  task = task_of(name)
  n = CHUNK
  T, I, K = task.max_length, task.input_size, task.output_size
  for test in (False, True):
    batch = draw(name, seed=1, test=test)
    assert batch.xs.shape == (n, T, I) and batch.xs.dtype == np.float32
    assert batch.targets.shape == (n, T, K) and batch.targets.dtype == np.float32
    assert batch.scored.shape == (n, T) and batch.scored.dtype == np.bool_
    assert batch.length.shape == (n,) and batch.length.dtype == np.int32
    assert batch.legal.shape == (n, T, K) and batch.legal.dtype == np.bool_
    valid = valid_mask(batch)
    assert np.all((batch.length >= 1) & (batch.length <= T))
    assert not np.any(batch.xs[~valid]), "inputs must be zero past length"
    assert not np.any(batch.scored & ~valid), "only valid steps are scored"
    assert np.all(batch.scored.any(axis=1)), "every sequence has a scored step"
    assert not np.any(batch.targets[~batch.scored]), "targets are zero where not scored"
    assert not np.any(batch.legal & ~batch.scored[:, :, None])
    if name not in ("reber", "noise3c"):
      np.testing.assert_array_equal(batch.legal, batch.targets > 0.5)
    # Symbol ids (model.one_hot_inputs = "gather") are the one-hot inputs' indices, -1 past length.
    if name in ONE_HOT_TASKS:
      assert batch.ids.shape == (n, T) and batch.ids.dtype == np.int32
      assert np.all((batch.ids[valid] >= 0) & (batch.ids[valid] < I))
      np.testing.assert_array_equal(batch.ids[~valid], -1)
      np.testing.assert_array_equal(np.eye(I, dtype=np.float32)[batch.ids] * valid[..., None], batch.xs)
    else:
      assert batch.ids is None

  batch = draw(name, seed=1)
  # Different keys give different sequences (lag2a has only two).
  assert len({x.tobytes() for x in batch.xs[:32]}) >= 2

  # The ideal outputs are correct with zero error; Exp 1's ideal outputs are the legal set (its
  # targets are the one actually next symbol); 3c's are the noise-free targets.
  ideal = batch.targets
  if name == "reber":
    ideal = batch.legal.astype(np.float32)
  elif name == "noise3c":
    clean = np.where(batch.xs[:, 0, 0] > 0, 0.8, 0.2)
    ideal = np.where(batch.scored[:, :, None], clean[:, None, None], 0.0)
  c, e = score(name, ideal, batch)
  assert c.all()
  if name != "reber":
    np.testing.assert_allclose(e, 0.0, atol=1e-6)
  # Clearly wrong outputs are rejected.
  shift = np.where(batch.scored[:, :, None], np.where(ideal > 0.5, -0.5, 0.5), 0.0)
  wrong = ideal + shift if name != "copy" else np.roll(batch.targets, 1, axis=-1)
  c, e = score(name, wrong, batch)
  assert not c.any()
  assert np.all(e > 0.1)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sequences_do_not_depend_on_x64(name):
  """A float64 run (``model.dtype``, under ``jax.enable_x64``) trains and tests on the float32 run's sequences."""
  task = task_of(name)
  keys = jax.random.split(jax.random.key(3), 64)
  samplers = (task.sample,) if task.test_sample is task.sample else (task.sample, task.test_sample)
  for sample in samplers:  # each distinct sampler once (a compile each way)
    want = jax.tree.map(np.asarray, jax.jit(jax.vmap(sample))(keys))
    with jax.enable_x64(True):
      got = jax.tree.map(np.asarray, jax.jit(jax.vmap(sample))(keys))
    for field, a, b in zip(Example._fields, want, got, strict=True):
      if a is None:  # ids of a task with real-valued inputs
        assert b is None, field
        continue
      assert a.dtype == b.dtype, field
      np.testing.assert_array_equal(a, b, err_msg=f"{name}: {field}")


@pytest.mark.parametrize("name", ["reber", "lag2c", "noise3b", "order6b", "copy"])
def test_jit_of_one_sample_equals_the_vmapped_batch(name):
  keys = jax.random.split(jax.random.key(1), CHUNK)
  batch = draw(name, seed=1)
  single = jax.jit(task_of(name).sample)
  for i in (0, 3):
    for a, b in zip(single(keys[i]), batch, strict=True):
      if a is None:  # ids of a task with real-valued inputs
        assert b is None
        continue
      np.testing.assert_array_equal(np.asarray(a), b[i])


# (task, tolerance of `correct` on the absolute error)
THRESHOLDS = [
  ("lag2a", 0.25),
  ("lag2c", 0.2),
  ("noise3a", 0.2),
  ("noise3b", 0.2),
  ("adding", 0.04),
  ("multiplication", 0.04),
  ("order6a", 0.3),
  ("order6b", 0.3),
  ("adding_modern", 0.04),
]


@pytest.mark.parametrize(("name", "tol"), THRESHOLDS)
def test_correct_tolerances(name, tol):
  batch = draw(name, seed=1)
  sign = np.where(np.arange(CHUNK) % 2 == 0, 1.0, -1.0)[:, None, None]
  scored = batch.scored[:, :, None]
  for delta, expected in ((0.8 * tol, True), (1.2 * tol, False)):
    outputs = batch.targets + np.where(scored, sign * delta, 0.0)
    c, e = score(name, outputs, batch)
    assert np.all(c == expected), (name, delta)
    if name in ("lag2a", "lag2c", "noise3a", "noise3b"):  # max / absolute error
      np.testing.assert_allclose(e, delta, rtol=1e-4)
    else:  # squared error summed over outputs at the last step
      np.testing.assert_allclose(e, delta**2 * batch.targets.shape[-1], rtol=1e-4)
  # Only one output off (Exp 6: "every output's abs error < 0.3").
  if name.startswith("order"):
    outputs = batch.targets.copy()
    outputs[:, :, -1] += np.where(batch.scored, 0.31, 0.0)
    assert not score(name, outputs, batch)[0].any()


# ----------------------------------------------------------------------------
# Exp 1: embedded Reber grammar

# An independent automaton: (state, symbol) -> state, with the embedded frame as extra states.
_REBER_EDGES = {
  (0, "T"): 1,
  (0, "P"): 2,
  (1, "S"): 1,
  (1, "X"): 3,
  (2, "T"): 2,
  (2, "V"): 4,
  (3, "X"): 2,
  (3, "S"): 5,
  (4, "P"): 3,
  (4, "V"): 5,
}
_SYMBOLS = "BTPSXVE"


def _walk_embedded(string: str) -> list[set[str]]:
  """Checks ``string`` is an embedded Reber string; returns the legal next symbols after each prefix."""
  assert string[0] == "B" and string[1] in "TP" and string[2] == "B" and string[-1] == "E"
  o = string[1]
  assert string[-2] == o, "the second o must repeat the first"
  assert string[-3] == "E"
  legal = [{"T", "P"}, {"B"}, {"T", "P"}]
  state = 0
  for symbol in string[3:-3]:
    assert (state, symbol) in _REBER_EDGES, f"illegal {symbol} in state {state}: {string}"
    state = _REBER_EDGES[(state, symbol)]
    legal.append({"E"} if state == 5 else {s for (st, s) in _REBER_EDGES if st == state})
  assert state == 5, f"inner string does not reach the end: {string}"
  legal += [{o}, {"E"}, set()]
  return legal


def _decode(example_set: Example) -> list[str]:
  strings = []
  for xs, targets, length in zip(example_set.xs, example_set.targets, example_set.length, strict=True):
    codes = list(np.argmax(xs[:length], axis=-1)) + [int(np.argmax(targets[length - 1]))]
    strings.append("".join(_SYMBOLS[c] for c in codes))
  return strings


def _check_encoded_strings(data: Example, max_length: int) -> list[str]:
  """Walks every string of an encoded set through the grammar and checks its encoding; returns them."""
  strings = _decode(data)
  for i, string in enumerate(strings):
    L = len(string) - 1
    assert data.length[i] == L and 8 <= L <= max_length
    legal = _walk_embedded(string)
    for t in range(L):
      assert data.xs[i, t].sum() == 1 and _SYMBOLS[np.argmax(data.xs[i, t])] == string[t]
      assert data.targets[i, t].sum() == 1 and _SYMBOLS[np.argmax(data.targets[i, t])] == string[t + 1]
      assert {_SYMBOLS[k] for k in np.flatnonzero(data.legal[i, t])} == legal[t]
    assert data.scored[i, :L].all() and not data.scored[i, L:].any()
  return strings


def test_reber_sets_are_the_papers_grammar_draws():
  # The paper: the training set is generated randomly (repeats possible); test strings are generated
  # randomly too, but never one already in the training set.
  task = make_task("reber")
  train = jax.tree.map(np.asarray, task.train_set)
  test = jax.tree.map(np.asarray, task.test_set)
  assert train.xs.shape == (256, 29, 7) and test.xs.shape == (256, 29, 7)
  train_strings = _check_encoded_strings(train, task.max_length)
  test_strings = _check_encoded_strings(test, task.max_length)
  assert not set(train_strings) & set(test_strings), "no test string is a training string"
  # Independent draws: each of the four shortest strings, B o B T X S E o E and B o B P V V E o E, has
  # probability 1/2 (o) * 1/2 * 1/2 * 1/2 (three branches) = 1/16, so they make up about 1/4 of the training
  # set, and the set repeats strings (256 distinct ones would have a chance below 1e-20).
  shortest = [s for s in train_strings if len(s) == 9]
  assert set(shortest) <= {f"B{o}B{inner}E{o}E" for o in "TP" for inner in ("TXS", "PVV")}
  assert z_ok(len(shortest), 256, 1 / 4)
  assert len(set(train_strings)) < 200
  assert z_ok(sum(s[1] == "T" for s in train_strings), 256, 0.5)
  # The test set lacks the training set's (frequent, short) strings, so its strings are longer.
  assert np.mean([len(s) for s in test_strings]) > np.mean([len(s) for s in train_strings]) + 2


def test_reber_distinct_sets_have_no_repeats_and_are_disjoint():
  task = make_task("reber", distinct=1)
  sets = [_check_encoded_strings(jax.tree.map(np.asarray, d), task.max_length) for d in (task.train_set, task.test_set)]
  for strings in sets:
    assert len(set(strings)) == len(strings) == 256, "no string twice in a set"
  assert not set(sets[0]) & set(sets[1]), "training and test sets are disjoint"
  # Both outer symbols occur with about equal frequency, and the sets hold long strings too.
  firsts = [s[1] for s in sets[0] + sets[1]]
  assert z_ok(firsts.count("T"), 512, 0.5)
  assert max(len(s) for s in sets[0] + sets[1]) > 20
  with pytest.raises(ValueError, match="distinct"):
    make_task("reber", distinct=2)


def test_reber_legal_targets_mark_every_legal_next_symbol():
  one_hot, legal = make_task("reber"), make_task("reber", legal_targets=1)
  for a, b in ((one_hot.train_set, legal.train_set), (one_hot.test_set, legal.test_set)):
    np.testing.assert_array_equal(a.xs, b.xs)
    np.testing.assert_array_equal(a.legal, b.legal)
    np.testing.assert_array_equal(b.targets, np.asarray(b.legal, np.float32))
    # The drawn next symbol is always one of the legal ones.
    assert np.all(np.asarray(b.targets)[np.asarray(a.targets) == 1] == 1)
  with pytest.raises(ValueError, match="legal_targets"):
    make_task("reber", legal_targets=2)


def test_reber_sets_are_deterministic_in_data_seed():
  a, b, c = make_task("reber", data_seed=3), make_task("reber", data_seed=3), make_task("reber", data_seed=4)
  np.testing.assert_array_equal(a.train_set.xs, b.train_set.xs)
  np.testing.assert_array_equal(a.test_set.xs, b.test_set.xs)
  assert set(_decode(jax.tree.map(np.asarray, a.train_set))) != set(_decode(jax.tree.map(np.asarray, c.train_set)))
  small = make_task("reber", n_train=10, n_test=5)
  assert small.train_set.xs.shape[0] == 10 and small.test_set.xs.shape[0] == 5


def test_reber_sample_draws_from_the_sets():
  task = make_task("reber")
  train = set(_decode(jax.tree.map(np.asarray, task.train_set)))
  test = set(_decode(jax.tree.map(np.asarray, task.test_set)))
  drawn = _decode(draw("reber"))
  drawn_test = _decode(draw("reber", test=True))
  assert set(drawn) <= train and set(drawn_test) <= test
  assert set(drawn) == train and set(drawn_test) == test  # 4096 uniform draws hit every string


def test_reber_correct_is_the_most_active_rule():
  batch = draw("reber")
  n = CHUNK
  # The squared-error optimum, the next-symbol probabilities, is correct.
  probs = batch.legal / np.maximum(batch.legal.sum(-1, keepdims=True), 1)
  assert score("reber", probs, batch)[0].all()
  # The one-hot target alone is not: the other legal symbol is no more active than illegal ones.
  assert not score("reber", batch.targets, batch)[0].any()
  # Forgetting the outer symbol (both T and P at 0.5 at the second-to-last step) is wrong.
  forgetful = probs.copy()
  t_o = batch.length - 2  # the step after the inner E, whose legal next symbol is o only
  forgetful[np.arange(n), t_o, 1] = 0.5
  forgetful[np.arange(n), t_o, 2] = 0.5
  assert not score("reber", forgetful, batch)[0].any()
  # Padding steps are ignored.
  padded = probs + np.where(batch.scored[:, :, None], 0.0, 5.0 * (np.arange(7) % 2))
  assert score("reber", padded, batch)[0].all()


# ----------------------------------------------------------------------------
# Exp 2


def _symbols(batch: Example) -> np.ndarray:
  return np.argmax(batch.xs, axis=-1)


def test_lag2a_sequences():
  p = 12
  batch = draw("lag2a")
  n = CHUNK
  X, Y = p - 1, p
  seq = np.concatenate([_symbols(batch), np.argmax(batch.targets[:, -1:], axis=-1)], axis=1)  # (n, p + 1)
  assert np.all(batch.xs.sum(-1) == 1) and np.all(batch.length == p)
  assert np.all(np.isin(seq[:, 0], [X, Y])) and np.all(seq[:, -1] == seq[:, 0])
  np.testing.assert_array_equal(seq[:, 1:-1], np.broadcast_to(np.arange(p - 1), (n, p - 1)))
  np.testing.assert_array_equal(np.argmax(batch.targets, -1), seq[:, 1:])  # next-symbol targets
  assert batch.scored.all()
  assert z_ok((seq[:, 0] == X).sum(), n, 0.5)


def test_lag2b_random_middle_scored_at_the_end():
  p = 12
  batch = draw("lag2b")
  seq = np.concatenate([_symbols(batch), np.argmax(batch.targets[:, -1:], axis=-1)], axis=1)
  assert np.all(seq[:, -1] == seq[:, 0]) and np.all(np.isin(seq[:, 0], [p - 1, p]))
  middle = seq[:, 1:-1]
  assert middle.max() <= p - 2
  assert chi2_ok(np.bincount(middle.ravel(), minlength=p - 1), np.full(p - 1, 1 / (p - 1)))
  assert z_ok((seq[:, 0] == p - 1).sum(), CHUNK, 0.5)
  # Every step is trained, but only the last step decides success and error.
  assert batch.scored.all()
  wrong_middle = batch.targets.copy()
  wrong_middle[:, 3] = 1.0 - wrong_middle[:, 3]
  c, e = score("lag2b", wrong_middle, batch)
  assert c.all() and np.all(e == 0.0)
  wrong_last = batch.targets.copy()
  wrong_last[:, -1] = 1.0 - wrong_last[:, -1]
  c, e = score("lag2b", wrong_last, batch)
  assert not c.any() and np.all(e == 1.0)
  # last_only=1: the same sequences, trained on the last step only.
  last = draw("lag2b", p=p, last_only=1)
  np.testing.assert_array_equal(last.xs, batch.xs)
  np.testing.assert_array_equal(last.targets[:, -1], batch.targets[:, -1])
  assert not last.scored[:, :-1].any() and last.scored[:, -1].all()


def test_lag2c_structure_and_geometric_tail():
  p, q, m = 5, 10, 20
  batch = draw("lag2c", chunks=2)
  n = 2 * CHUNK
  E, B, X, Y = p, p + 1, p + 2, p + 3
  sym = _symbols(batch)
  valid = valid_mask(batch)
  L = batch.length
  assert np.all(batch.xs.sum(-1) == valid)
  assert np.all(sym[:, 0] == B) and np.all(np.isin(sym[:, 1], [X, Y]))
  assert np.all(last(sym, batch) == E)
  idx = np.arange(batch.xs.shape[1])[None, :]
  middle = (idx >= 2) & (idx < L[:, None] - 1)
  assert np.all(sym[middle] < p), "only distractors between the second symbol and e"
  assert np.all((sym == E) == (idx == L[:, None] - 1)), "e occurs once, at the end"
  assert chi2_ok(np.bincount(sym[middle], minlength=p), np.full(p, 1 / p))
  # Only the step reading e is scored; its target repeats the second symbol.
  np.testing.assert_array_equal(batch.scored, idx == L[:, None] - 1)
  np.testing.assert_array_equal(np.argmax(last(batch.targets, batch), -1), sym[:, 1] - X)
  assert np.all(last(batch.targets, batch).sum(-1) == 1)
  assert z_ok((sym[:, 1] == X).sum(), n, 0.5)
  # The tail: P(k) proportional to 0.9^k 0.1 for k = 0..m (at least q distractors).
  k = L - q - 3
  assert k.min() >= 0 and k.max() <= m
  probs = 0.9 ** np.arange(m + 1) * 0.1
  probs /= probs.sum()
  assert chi2_ok(np.bincount(k, minlength=m + 1), probs)
  assert abs(k.mean() - (probs * np.arange(m + 1)).sum()) < 0.15


def test_lag2c_default_cap_cuts_little_mass():
  task = make_task("lag2c")
  assert task.max_length == 100 + 3 + 100
  assert 0.9**101 < 3e-5


# ----------------------------------------------------------------------------
# Exp 3


@pytest.mark.parametrize("N", [1, 3])
def test_noise3a_signal_then_noise(N):
  T, n = 100, CHUNK
  batch = draw("noise3a", T=T, N=N)
  L = batch.length
  assert L.min() >= T and L.max() <= T + T // 10
  assert chi2_ok(np.bincount(L - T, minlength=11), np.full(11, 1 / 11))
  x = batch.xs[:, :, 0]
  class1 = x[:, 0] > 0
  np.testing.assert_array_equal(x[:, :N], np.where(class1, 1.0, -1.0)[:, None] * np.ones(N))
  noise = x[:, N:][valid_mask(batch)[:, N:]]
  assert abs(noise.mean()) < 0.005
  assert abs(noise.var() - 0.2) < 0.004
  assert abs(np.mean(np.abs(noise) > 2 * math.sqrt(0.2)) - 0.0455) < 0.003  # Gaussian tails
  np.testing.assert_array_equal(last(batch.targets, batch)[:, 0], class1.astype(np.float32))
  np.testing.assert_array_equal(batch.scored, np.arange(T + T // 10)[None] == L[:, None] - 1)
  assert z_ok(class1.sum(), n, 0.5)


def test_noise3b_noisy_signal():
  N, n = 3, CHUNK
  batch = draw("noise3b")
  x = batch.xs[:, :, 0]
  target = last(batch.targets, batch)[:, 0]
  assert set(np.unique(target)) == {0.0, 1.0}
  signal = np.where(target == 1.0, 1.0, -1.0)[:, None]
  residual = x[:, :N] - signal
  assert abs(residual.var() - 0.2) < 0.02 and abs(residual.mean()) < 0.02
  noise = x[:, N:][valid_mask(batch)[:, N:]]
  assert abs(noise.var() - 0.2) < 0.004
  assert z_ok((target == 1.0).sum(), n, 0.5)


def test_noise3c_noisy_targets_scored_against_clean_ones():
  N, n = 3, CHUNK
  batch = draw("noise3c")
  x = batch.xs[:, :, 0]
  class1 = x[:, 0] > 0
  np.testing.assert_array_equal(np.abs(x[:, :N]), 1.0)
  clean = np.where(class1, 0.8, 0.2)
  target_noise = last(batch.targets, batch)[:, 0] - clean
  assert abs(target_noise.var() - 0.1) < 0.01 and abs(target_noise.mean()) < 0.03
  np.testing.assert_array_equal(last(batch.legal, batch)[:, 0], class1)
  outputs = np.zeros_like(batch.targets)
  for delta, expected in ((0.09, True), (-0.09, True), (0.11, False), (-0.11, False)):
    outputs[np.arange(n), batch.length - 1, 0] = clean + delta
    c, e = score("noise3c", outputs, batch)
    assert np.all(c == expected)
    np.testing.assert_allclose(e, abs(delta), rtol=1e-4)
  # Reproducing the noisy target itself is usually wrong (|noise| > 0.1 has probability ~0.75).
  c, _ = score("noise3c", batch.targets, batch)
  assert abs(c.mean() - math.erf(0.1 / math.sqrt(0.2))) < 0.03


# ----------------------------------------------------------------------------
# Exp 4 and 5


def _check_markers(batch: Example, T: int) -> tuple[np.ndarray, np.ndarray]:
  """Checks the 1997 marker layout; returns the two marked positions (sorted) of each sequence."""
  n, T_max = batch.length.shape[0], batch.xs.shape[1]
  markers = batch.xs[:, :, 1]
  L = batch.length
  assert L.min() >= T and L.max() <= T + T // 10
  marked = markers == 1.0
  assert np.all(marked.sum(1) == 2), "exactly two markers 1.0"
  pos = np.sort(np.argwhere(marked)[:, 1].reshape(n, 2), axis=1)
  assert np.all(pos[:, 0] < 10), "one mark among the first 10 pairs"
  assert np.all(pos[:, 1] <= T // 2 - 2), "both marks among the first T/2 - 1 pairs"
  idx = np.arange(T_max)[None, :]
  ends = (idx == 0) | (idx == L[:, None] - 1)
  expected = np.where(marked, 1.0, np.where(ends & valid_mask(batch), -1.0, 0.0))
  np.testing.assert_array_equal(markers, expected)  # -1 at the unmarked ends, 0 elsewhere
  assert np.all(markers[:, 0] != 0.0)  # the first pair is marked or -1
  assert np.all(last(markers, batch) == -1.0)  # the last pair is never marked
  np.testing.assert_array_equal(batch.scored, idx == L[:, None] - 1)
  return pos, marked


def test_adding_markers_targets_and_baseline():
  T, n = 100, 5 * CHUNK
  batch = draw("adding", chunks=5)
  pos, marked = _check_markers(batch, T)
  values = batch.xs[:, :, 0]
  v = values[valid_mask(batch)]
  assert v.min() >= -1.0 and v.max() <= 1.0 and abs(v.mean()) < 0.01
  x1x2 = np.take_along_axis(values, pos, axis=1)
  target = last(batch.targets, batch)[:, 0]
  np.testing.assert_allclose(target, 0.5 + x1x2.sum(1) / 4.0, atol=1e-6)
  # The X1 = 0 rule: the first pair holds X1 with probability 1/10, and then its value is 0.
  rule = marked[:, 0] & (values[:, 0] == 0.0)
  assert z_ok(rule.sum(), n, 0.1)
  assert z_ok(marked[:, 0].sum(), n, 0.1 + 0.9 / (T // 2 - 2))  # X2 may land there too
  # The second mark is spread over the whole window (48 of 49 pairs... all appear).
  assert set(np.unique(pos[:, 1])) >= set(range(10, T // 2 - 1))
  assert chi2_ok(np.bincount(batch.length - T, minlength=11), np.full(11, 1 / 11))
  # Baselines: the best constant predictor (the mean) has MSE = the targets' variance.
  mse = np.mean((target - target.mean()) ** 2)
  assert abs(mse - BASELINES["adding"]["constant_mse_exact"]) < 0.05 * 19 / 480
  assert abs(mse - BASELINES["adding"]["constant_mse"]) < 0.1 / 24  # the paper's "about 1/24"
  no_rule = target[~rule]
  assert abs(np.var(no_rule) - 1 / 24) < 0.05 / 24  # 1/24 exactly without the rule
  # A net that outputs the constant is correct only by chance.
  outputs = np.full_like(batch.targets, 0.5)
  assert score("adding", outputs, batch)[0].mean() < 0.2


def test_multiplication_markers_targets_and_baseline():
  T, n = 100, 5 * CHUNK
  batch = draw("multiplication", chunks=5)
  pos, marked = _check_markers(batch, T)
  values = batch.xs[:, :, 0]
  v = values[valid_mask(batch)]
  assert v.min() >= 0.0 and v.max() <= 1.0 and abs(v.mean() - 0.5) < 0.01
  target = last(batch.targets, batch)[:, 0]
  np.testing.assert_allclose(target, np.prod(np.take_along_axis(values, pos, axis=1), axis=1), atol=1e-6)
  rule = marked[:, 0] & (values[:, 0] == 1.0)  # X1 = 1.0 when X1 is the first pair
  assert z_ok(rule.sum(), n, 0.1)
  assert not np.any(~marked[:, 0] & (values[:, 0] == 1.0))
  mse = np.var(target)
  assert abs(mse - BASELINES["multiplication"]["constant_mse_exact"]) < 0.06 * 277 / 4800
  assert abs(np.var(target[~rule]) - 7 / 144) < 0.06 * 7 / 144  # the quoted 7/144 without the rule


# ----------------------------------------------------------------------------
# Exp 6


@pytest.mark.parametrize(
  ("name", "windows"), [("order6a", ((10, 20), (50, 60))), ("order6b", ((10, 20), (33, 43), (66, 76)))]
)
def test_temporal_order(name, windows):
  n = 2 * CHUNK
  batch = draw(name, chunks=2)
  a, X, Y, B, E = 0, 4, 5, 6, 7
  sym = _symbols(batch)
  L = batch.length
  assert L.min() == 100 and L.max() == 110
  assert chi2_ok(np.bincount(L - 100, minlength=11), np.full(11, 1 / 11))
  assert np.all(batch.xs.sum(-1) == valid_mask(batch))
  assert np.all(sym[:, 0] == E) and np.all(last(sym, batch) == B)
  idx = np.arange(110)[None, :]
  relevant = (sym == X) | (sym == Y)
  assert np.all(relevant.sum(1) == len(windows))
  inner = (idx > 0) & (idx < L[:, None] - 1) & ~relevant
  assert np.all((sym[inner] >= a) & (sym[inner] <= 3))
  cls = np.zeros(n, int)
  for i, (first, final) in enumerate(windows):
    # 1-based positions first..final hold the i-th X/Y: 0-based first-1..final-1.
    pos = np.argwhere(relevant)[:, 1].reshape(n, len(windows))[:, i]
    assert pos.min() == first - 1 and pos.max() == final - 1
    assert chi2_ok(np.bincount(pos - first + 1, minlength=final - first + 1), np.full(11, 1 / 11))
    cls = 2 * cls + (sym[np.arange(n), pos] == Y)
  target = last(batch.targets, batch)
  assert np.all(target.sum(1) == 1)
  np.testing.assert_array_equal(np.argmax(target, 1), cls)
  k = 2 ** len(windows)
  assert chi2_ok(np.bincount(cls, minlength=k), np.full(k, 1 / k))
  assert BASELINES[name]["chance_accuracy"] == 1 / k
  np.testing.assert_array_equal(batch.scored, idx == L[:, None] - 1)


# ----------------------------------------------------------------------------
# Modern tasks


def test_adding_modern():
  T, n = 100, 5 * CHUNK
  batch = draw("adding_modern", chunks=5)
  assert np.all(batch.length == T)
  values, markers = batch.xs[:, :, 0], batch.xs[:, :, 1]
  assert set(np.unique(markers)) == {0.0, 1.0}
  assert values.min() >= 0.0 and values.max() <= 1.0
  pos = np.argwhere(markers == 1.0)[:, 1].reshape(n, 2)
  assert np.all(pos[:, 0] < T // 2) and np.all(pos[:, 1] >= T // 2)
  assert pos[:, 0].min() == 0 and pos[:, 1].max() == T - 1
  target = batch.targets[:, -1, 0]
  np.testing.assert_allclose(target, np.take_along_axis(values, pos, 1).sum(1), atol=1e-6)
  assert batch.scored[:, -1].all() and batch.scored.sum() == n
  mse = np.mean((target - 1.0) ** 2)  # the constant 1.0 (the mean)
  assert abs(mse - BASELINES["adding_modern"]["constant_mse"]) < 0.03 / 6
  assert abs(np.var(target) - 1 / 6) < 0.03 / 6


@pytest.mark.parametrize(("T", "n_symbols", "copy_length"), [(15, 8, 10), (30, 4, 3)])
def test_copy_layout_and_baseline(T, n_symbols, copy_length):
  params = {"T": T, "n_symbols": n_symbols, "copy_length": copy_length}
  task = task_of("copy", **params)
  batch = draw("copy", **params)
  length = T + 2 * copy_length
  assert task.max_length == length and np.all(batch.length == length)
  assert task.input_size == n_symbols + 2 and task.output_size == n_symbols + 1
  blank, delimiter = 0, n_symbols + 1
  inputs = _symbols(batch)
  assert np.all(batch.xs.sum(-1) == 1)
  to_copy = inputs[:, :copy_length]
  assert to_copy.min() >= 1 and to_copy.max() <= n_symbols
  assert chi2_ok(np.bincount(to_copy.ravel() - 1, minlength=n_symbols), np.full(n_symbols, 1 / n_symbols))
  assert np.all(inputs[:, copy_length : T + copy_length - 1] == blank)
  assert np.all(inputs[:, T + copy_length - 1] == delimiter)
  assert np.all(inputs[:, T + copy_length :] == blank)
  outputs = np.argmax(batch.targets, -1)
  assert np.all(batch.targets.sum(-1) == 1)
  assert np.all(outputs[:, : T + copy_length] == blank)
  np.testing.assert_array_equal(outputs[:, T + copy_length :], to_copy)
  assert batch.scored.all()
  # The memoryless strategy: blank with certainty, then uniform over the symbols.
  memoryless = np.zeros_like(batch.targets)
  memoryless[:, : T + copy_length, blank] = 1.0
  memoryless[:, T + copy_length :, 1:] = 1.0 / n_symbols
  c, e = score("copy", memoryless, batch, **params)
  expected = baselines("copy", **params)["memoryless_xent"]
  assert expected == pytest.approx(copy_length * math.log(n_symbols) / (T + 2 * copy_length))
  np.testing.assert_allclose(e, expected, rtol=1e-5)
  # One wrong copied symbol makes the sequence wrong; wrong blanks do not.
  probs = batch.targets.copy()
  probs[:, 0] = np.roll(probs[:, 0], 1, axis=-1)
  assert score("copy", probs, batch, **params)[0].all()
  probs[:, -1] = np.roll(probs[:, -1], 1, axis=-1)
  assert not score("copy", probs, batch, **params)[0].any()


def test_baselines_table():
  assert BASELINES["adding"]["constant_mse"] == pytest.approx(0.042, abs=5e-4)
  assert BASELINES["multiplication"]["constant_mse"] == pytest.approx(0.049, abs=5e-4)
  assert BASELINES["adding_modern"]["constant_mse"] == pytest.approx(0.167, abs=5e-4)
  assert BASELINES["noise3a"]["chance_accuracy"] == 0.5
  assert BASELINES["copy"]["memoryless_xent"] == pytest.approx(10 * math.log(8) / 120)
  # The exact values follow from the X1 rule's probability 1/10.
  assert BASELINES["adding"]["constant_mse_exact"] == pytest.approx(0.9 / 24 + 0.1 / 48)
  mean = 0.1 * 0.5 + 0.9 * 0.25
  second = 0.1 / 3 + 0.9 / 9
  assert BASELINES["multiplication"]["constant_mse_exact"] == pytest.approx(second - mean**2)
  assert baselines("reber") == {}
  with pytest.raises(ValueError, match="copy"):
    baselines("copy", t=3)
