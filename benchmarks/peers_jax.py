"""A flax.nnx, equinox, Haiku or Keras model's recurrence: its own loop against ``jaxrnn.unroll`` of the same cell.

Usage::

  python -m benchmarks.peers_jax [--cells lstm,gru,elman] [--shapes 64x100x32x128,16x1000x8x64] [--rounds 7]

A model built on ``flax.nnx`` keeps its parameters in an nnx cell (``OptimizedLSTMCell``, ``GRUCell``,
``SimpleCell``); ``jaxrnn.interop.from_nnx`` reads them, differentiably, so the model can run its recurrence with
``jaxrnn.unroll`` instead of ``nnx.RNN``. This times, in one process with :func:`benchmarks.timing.measure`
(interleaved blocks), the training step (the gradient of ``mean(ys ** 2)`` with respect to each contestant's
params) and the forward pass, all on the nnx cell's weights, of

* ``jaxrnn``: ``jaxrnn.unroll`` of ``from_nnx(cell)`` (the fast path), differentiated with respect to the nnx
  cell's state (as ``nnx.split`` gives it);
* ``nnx``: ``nnx.RNN(cell)``, flax.nnx's scan over the cell;
* ``equinox``: equinox's own loop (the one its documentation gives: ``lax.scan`` of the unbatched
  ``eqx.nn.LSTMCell`` or ``GRUCell`` step, ``vmap``-ed over the batch; ``interop.to_equinox``); equinox has no
  Elman cell;
* ``haiku``: ``hk.dynamic_unroll`` of ``hk.LSTM`` (``interop.to_haiku``); Haiku's GRU resets before the
  recurrent product and its VanillaRNN is relu, other cells than nnx's, so only the LSTM;
* ``keras``: Keras 3's ``SimpleRNN``, ``GRU`` or ``LSTM`` layer on the JAX backend through
  ``layer.stateless_call`` (``interop.to_keras``), batch-major as Keras takes its input (the transposes are
  inside the timed functions).

nnx's GRU has no recurrent bias, so neither have the others' (``b_hn`` zero). It first checks that jaxrnn's
outputs and gradients equal nnx's and its outputs equal every other contestant's, then prints medians in
milliseconds and each time over jaxrnn's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import jaxrnn
from benchmarks import models, timing
from jaxrnn import interop

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras: its layers here run on jax
VARIANTS = ("jaxrnn", "nnx", "equinox", "haiku", "keras")


def _nnx_cell(cell_name: str, I: int, H: int) -> Any:
  from flax import nnx

  cls = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell, "elman": nnx.SimpleCell}[cell_name]
  return cls(I, H, rngs=nnx.Rngs(0))


def _equinox_outputs(module: Any) -> Callable[[Any, jax.Array], jax.Array]:
  """``outputs(module, xs)`` of equinox's documented loop over an unbatched cell, batched by ``vmap``."""
  import equinox as eqx

  lstm = isinstance(module, eqx.nn.LSTMCell)

  def outputs(m: Any, xs: jax.Array) -> jax.Array:
    def one(x: jax.Array) -> jax.Array:  # one sequence (T, I)
      h0 = jnp.zeros(m.hidden_size, x.dtype)

      def step(state: Any, x_t: jax.Array) -> tuple[Any, jax.Array]:
        state = m(x_t, state)
        return state, state[0] if lstm else state

      return jax.lax.scan(step, (h0, h0) if lstm else h0, x)[1]

    return jax.vmap(one, in_axes=1, out_axes=1)(xs)

  return outputs


def _haiku_outputs(B: int, H: int) -> Callable[[Any, jax.Array], jax.Array]:
  """``outputs(hk_params, xs)`` of ``hk.dynamic_unroll`` over ``hk.LSTM(H)`` (time-major, as jaxrnn's)."""
  import haiku as hk

  def forward(xs: jax.Array) -> jax.Array:
    core = hk.LSTM(H)
    return hk.dynamic_unroll(core, xs, core.initial_state(B))[0]

  model: Any = hk.without_apply_rng(hk.transform(forward))
  return model.apply


def _keras_contestant(params: Any) -> tuple[Callable[[Any, jax.Array], jax.Array], list[jax.Array]]:
  """``(outputs(weights, xs), weights)`` of the Keras layer computing ``params``, through ``stateless_call``."""
  layer = interop.to_keras(params, return_sequences=True)
  frozen = [jnp.asarray(v.value) for v in layer.non_trainable_variables]  # the dropout seed

  def outputs(weights: list[jax.Array], xs: jax.Array) -> jax.Array:
    ys, _ = layer.stateless_call(weights, frozen, jnp.swapaxes(xs, 0, 1))
    return jnp.swapaxes(ys, 0, 1)

  return outputs, [jnp.asarray(v.value) for v in layer.trainable_variables]


def time_shape(cell_name: str, B: int, T: int, I: int, H: int, rounds: int) -> dict[str, float]:
  """Median seconds of ``train <variant>`` and ``infer <variant>``, after checking the variants agree."""
  from flax import nnx

  graphdef, state = nnx.split(_nnx_cell(cell_name, I, H))
  xs = jnp.asarray(models.make_inputs(B, T, I))
  carry0 = nnx.merge(graphdef, state).initialize_carry((B, I), rngs=nnx.Rngs(0))

  def jaxrnn_outputs(state: Any, xs: jax.Array) -> jax.Array:
    cell, params = interop.from_nnx(nnx.merge(graphdef, state))
    return jaxrnn.unroll(cell, params, xs)[1]

  def nnx_outputs(state: Any, xs: jax.Array) -> jax.Array:
    rnn = nnx.RNN(nnx.merge(graphdef, state), time_major=True, rngs=False)
    return rnn(xs, initial_carry=carry0)

  contestants: dict[str, tuple[Callable[..., jax.Array], Any]] = {
    "jaxrnn": (jaxrnn_outputs, state),
    "nnx": (nnx_outputs, state),
  }
  params = interop.from_nnx(nnx.merge(graphdef, state))[1]
  if cell_name != "elman":
    module = interop.to_equinox(params)
    contestants["equinox"] = (_equinox_outputs(module), module)
  if cell_name == "lstm":
    contestants["haiku"] = (_haiku_outputs(B, H), interop.to_haiku(params))
  contestants["keras"] = _keras_contestant(params)

  calls, results = {}, {}
  for name, (outputs, own) in contestants.items():  # own: the contestant's params, in its layout
    grad, fwd = models.step_and_forward(outputs)
    results[name] = (fwd(own, xs), grad(own, xs))
    calls[f"train {name}"], calls[f"infer {name}"] = models.blocking_calls(grad, fwd, own, xs)
  models.assert_agree(results["jaxrnn"], results["nnx"])
  for name in set(results) - {"jaxrnn", "nnx"}:
    models.assert_agree((results["jaxrnn"][0], ()), (results[name][0], ()))
  return timing.measure(calls, rounds=rounds)


def main(argv: list[str] | None = None) -> None:
  timing.variant_table_main(
    "peers_jax", __doc__, VARIANTS, time_shape, base="jaxrnn", unratioed=("jaxrnn",), argv=argv, cells="lstm,gru,elman"
  )


if __name__ == "__main__":
  main()
