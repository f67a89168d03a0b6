"""Exp 1: the embedded Reber grammar (next-symbol prediction), Hochreiter & Schmidhuber (1997), Sect. 5.1.

The Reber automaton starts with ``B``; ``s0: T->s1, P->s2``; ``s1: S->s1, X->s3``; ``s2: T->s2,
V->s4``; ``s3: X->s2, S->s5``; ``s4: P->s3, V->s5``; ``s5`` emits ``E``; every branch has probability
1/2. An embedded string is ``B o <Reber string> o E`` with ``o`` in ``{T, P}`` (9 symbols at least).
The net reads one symbol per step and predicts the next one; only the second ``o`` needs memory
(the lag is the inner string's length plus one).

Choices:

* Choice: symbols are indexed ``B T P S X V E`` = 0..6, one-hot for the 7 inputs and 7 outputs.
* Choice: a string of ``L`` symbols gives ``L - 1`` steps: step ``t`` reads symbol ``t`` and its
  target is symbol ``t + 1`` one-hot (the symbol that actually follows, as "predict the next symbol"
  says); the final ``E`` is never read. A squared-error net then learns the next-symbol
  probabilities, which are largest exactly on the legal symbols. Every valid step is scored.
* Choice: ``legal_targets = 1`` trains instead on every legal next symbol (target 1 on each of them,
  0 elsewhere; the paper's criterion names "the possible next symbol(s)"), a deterministic target:
  the one-hot target of the drawn successor is a coin flip at most steps, whose noise dominates the
  per-step updates. Measured (LSTM 3x2, 40,000-50,000 sequences, 2-4 trials): with one-hot targets
  the nets do not learn even the local grammar (~500 of 512 strings wrong); with ``legal_targets``
  at lr 0.1/0.2 they learn it within ~6,000 sequences (only the long-lag step wrong, ~260 of 512).
  The default stays 0 (the actual next symbol).
* Choice: ``legal`` holds every symbol the embedded grammar allows after the prefix (two inside the
  Reber string, the single matching ``o`` after the inner ``E``); ``correct`` asks, at every valid
  step, that the smallest output over legal symbols exceed the largest over illegal ones ("the
  outputs of the legal next symbols are the most active ones").
* Choice: ``error`` is the squared error summed over the 7 outputs and averaged over the valid
  steps (the training loss); success itself is read from ``correct``.
* Choice: the sets are drawn once with ``numpy.random.default_rng(data_seed)``, as the paper says
  ("the training set is generated randomly; ... test sequences are generated randomly, too, but
  sequences already used in the training set are not used for testing"): the ``n_train`` training
  strings are independent draws from the grammar, repeats kept (256 draws hold about 100 distinct
  strings, mean length 12 symbols), and the ``n_test`` test strings are further draws, skipping any
  string of the training set (repeats among them kept). Strings longer than :data:`MAX_STRING_LENGTH`
  are skipped in both. ``distinct = 1`` draws instead ``n_train + n_test`` distinct strings, shuffles
  them and splits them (no string twice in either set; mean length 18, so longer lags): the sets of
  the runs made before 2026-11-23 (results/NOTES.md compares the two).
* Choice: :data:`MAX_STRING_LENGTH` = 30 symbols (29 steps, the padded ``T``): 0.13% of grammar
  draws are longer and are rejected (the second ``o`` is then at most 27 symbols after the first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tasks import _common
from experiments.tasks.base import Example, Task

SYMBOLS = "BTPSXVE"  # index of each symbol in the one-hot code
MAX_STRING_LENGTH = 30  # longest embedded string in the sets, in symbols
_MAX_SET_SIZE = 4096  # n_train + n_test: far below the 48,858 distinct strings of <= 30 symbols (for distinct)

# The Reber automaton: state -> ((symbol, next state), (symbol, next state)); state 5 emits E.
_REBER = {
  0: (("T", 1), ("P", 2)),
  1: (("S", 1), ("X", 3)),
  2: (("T", 2), ("V", 4)),
  3: (("X", 2), ("S", 5)),
  4: (("P", 3), ("V", 5)),
}


def _draw_string(rng: np.random.Generator) -> tuple[str, list[str]]:
  """One embedded Reber string and, per symbol, the set of symbols legal after it (as a string)."""
  o = "TP"[rng.integers(2)]
  symbols = ["B", o, "B"]
  legal = ["TP", "B", "TP"]
  state = 0
  while state != 5:
    symbol, state = _REBER[state][rng.integers(2)]
    symbols.append(symbol)
    legal.append("E" if state == 5 else "".join(s for s, _ in _REBER[state]))
  symbols += ["E", o, "E"]
  legal += [o, "E", ""]
  return "".join(symbols), legal


def _draw_sets(data_seed: int, n_train: int, n_test: int, distinct: bool) -> list[tuple[str, list[str]]]:
  """``n_train`` training then ``n_test`` test strings of at most MAX_STRING_LENGTH symbols.

  With ``distinct``, no string occurs twice in either set (the strings are shuffled, then split).
  Without it, the training strings are independent draws from the grammar (repeats kept) and the test
  strings are draws that are not in the training set (repeats among them kept), as the paper says.
  """
  rng = np.random.default_rng(data_seed)
  if distinct:
    found: dict[str, list[str]] = {}
    while len(found) < n_train + n_test:
      string, legal = _draw_string(rng)
      if len(string) <= MAX_STRING_LENGTH and string not in found:
        found[string] = legal
    order = rng.permutation(n_train + n_test)
    items = list(found.items())
    return [items[i] for i in order]
  train: list[tuple[str, list[str]]] = []
  while len(train) < n_train:
    string, legal = _draw_string(rng)
    if len(string) <= MAX_STRING_LENGTH:
      train.append((string, legal))
  seen = {string for string, _ in train}
  test: list[tuple[str, list[str]]] = []
  while len(test) < n_test:
    string, legal = _draw_string(rng)
    if len(string) <= MAX_STRING_LENGTH and string not in seen:
      test.append((string, legal))
  return train + test


def _encode(strings: list[tuple[str, list[str]]], legal_targets: bool = False) -> Example:
  """Batched, padded examples of the strings: leading axis ``len(strings)``, ``T = MAX_STRING_LENGTH - 1``."""
  n, T, K = len(strings), MAX_STRING_LENGTH - 1, len(SYMBOLS)
  xs = np.zeros((n, T, K), np.float32)
  ids = np.full((n, T), -1, np.int32)
  targets = np.zeros((n, T, K), np.float32)
  legal = np.zeros((n, T, K), bool)
  scored = np.zeros((n, T), bool)
  length = np.zeros((n,), np.int32)
  for i, (string, legal_after) in enumerate(strings):
    codes = [SYMBOLS.index(s) for s in string]
    L = len(codes) - 1
    xs[i, np.arange(L), codes[:-1]] = 1.0
    ids[i, :L] = codes[:-1]
    targets[i, np.arange(L), codes[1:]] = 1.0
    for t in range(L):
      legal[i, t, [SYMBOLS.index(s) for s in legal_after[t]]] = True
    scored[i, :L] = True
    length[i] = L
  if legal_targets:
    targets = legal.astype(np.float32)
  return Example(
    xs=jnp.asarray(xs),
    targets=jnp.asarray(targets),
    scored=jnp.asarray(scored),
    length=jnp.asarray(length),
    legal=jnp.asarray(legal),
    ids=jnp.asarray(ids),
  )


def step_correct(outputs: jax.Array, example: Example) -> jax.Array:
  """Whether, at each step, the legal next symbols' outputs are the most active ones.

  Args:
    outputs: ``(..., T, 7)`` the net's sigmoid outputs.
    example: the string(s), with ``legal (..., T, 7)``.

  Returns:
    ``(..., T)`` bool: ``min(outputs[legal]) > max(outputs[~legal])``; padding steps count as correct.
  """
  outputs = jnp.asarray(outputs)
  low_legal = jnp.min(jnp.where(example.legal, outputs, jnp.inf), axis=-1)
  high_illegal = jnp.max(jnp.where(example.legal, -jnp.inf, outputs), axis=-1)
  return jnp.where(example.scored, low_legal > high_illegal, True)


def correct(outputs: jax.Array, example: Example) -> jax.Array:
  """Whether, at every scored step, the legal next symbols' outputs are the most active ones.

  Args:
    outputs: ``(T, 7)`` the net's sigmoid outputs.
    example: the string, with ``legal (T, 7)``.

  Returns:
    ``()`` bool: :func:`step_correct` at every step.
  """
  return jnp.all(step_correct(outputs, example))


def make_reber(
  *, data_seed: int = 0, n_train: int = 256, n_test: int = 256, legal_targets: int = 0, distinct: int = 0
) -> Task:
  """Exp 1: the embedded Reber grammar with a fixed training set and a disjoint test set.

  Args:
    data_seed: the numpy seed that draws both sets.
    n_train: training strings (the paper: 256).
    n_test: test strings (the paper: 256).
    legal_targets: 0: the target is the next symbol, one-hot; 1: every legal next symbol is a target.
    distinct: 0: the paper's sets (training strings drawn from the grammar, repeats kept; test strings
      drawn likewise but never one of the training set); 1: no string twice in either set.

  Returns:
    The :class:`Task`; ``sample`` / ``test_sample`` draw a string uniformly from ``train_set`` /
    ``test_set`` (batched Examples of ``n_train`` / ``n_test`` strings, ``T = 29``).

  >>> import jax
  >>> task = make_reber()
  >>> ex = task.sample(jax.random.key(0))
  >>> ex.xs.shape, task.train_set.xs.shape
  ((29, 7), (256, 29, 7))
  """
  data_seed = _common.check_int("reber", "data_seed", data_seed, minimum=0)
  n_train = _common.check_int("reber", "n_train", n_train, minimum=1, maximum=_MAX_SET_SIZE - 1)
  n_test = _common.check_int("reber", "n_test", n_test, minimum=1, maximum=_MAX_SET_SIZE - n_train)
  legal_targets = _common.check_int("reber", "legal_targets", legal_targets, choices=(0, 1))
  distinct = _common.check_int("reber", "distinct", distinct, choices=(0, 1))
  strings = _draw_sets(data_seed, n_train, n_test, bool(distinct))
  train_set = _encode(strings[:n_train], bool(legal_targets))
  test_set = _encode(strings[n_train:], bool(legal_targets))

  def draw(key: jax.Array, data: Example, n: int) -> Example:
    i = _common.randint(key, (), 0, n)
    return jax.tree.map(lambda a: a[i], data)

  def sample(key: jax.Array) -> Example:
    return draw(key, train_set, n_train)

  def test_sample(key: jax.Array) -> Example:
    return draw(key, test_set, n_test)

  return Task(
    name="reber",
    input_size=len(SYMBOLS),
    output_size=len(SYMBOLS),
    max_length=MAX_STRING_LENGTH - 1,
    output_activation="sigmoid",
    loss="mse",
    sample=sample,
    test_sample=test_sample,
    correct=correct,
    error=_common.squared_error,
    train_set=train_set,
    test_set=test_set,
  )
