"""`TrainConfig.grad_clip` reaches the update a train step applies.

Adam divides each gradient by its own running scale, so a clipped first step
looks like an unclipped one; clipping shows from the second step on, where
it rescales two gradients of different norms by different factors. The runs
below go through the public surface (`make_optimizer`, `make_train_step`,
`create_train_state`) and are compared with `optax.clip_by_global_norm` +
`optax.adam` applied by hand to the very gradients each step computed.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaylyrics_jax as jl

MODEL = jl.ModelConfig(vocab_size=11, embedding_size=8, rnn_size=8,
                       num_layers=1)
LR = 1e-2
CLIP = 0.05   # Below both steps' gradient norms.
LOOSE = 1e3   # Above them: never clips.


def _batches():
  """Two windows whose gradients differ clearly in norm: random characters,
  then one character over and over."""
  rng = np.random.default_rng(0)
  noisy = rng.integers(0, 11, (2, 7)).astype(np.int32)
  flat = np.full((2, 7), 3, np.int32)
  return [(b[:, :-1], b[:, 1:]) for b in (noisy, flat)]


def _copy(tree):
  """A copy for the donating step to consume, leaving `tree` usable."""
  return jax.tree.map(jnp.copy, tree)


# An optax transformation that applies nothing and keeps the gradients it
# is given as its state: a step with it reads back the step's own gradients.
RECORDER = optax.GradientTransformation(
    lambda params: jax.tree.map(jnp.zeros_like, params),
    lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads),
                                       grads))


@functools.lru_cache(maxsize=None)
def _run(grad_clip):
  """Two steps of `make_optimizer`'s run: (params before and after each
  step, the gradients each step computed, each step's metrics)."""
  config = jl.TrainConfig(batch_size=2, seq_length=6, learning_rate=LR,
                          grad_clip=grad_clip)
  tx = jl.make_optimizer(config, steps_per_epoch=100)
  step = jl.make_train_step(MODEL, tx)
  record = jl.make_train_step(MODEL, RECORDER)
  state = jl.create_train_state(MODEL, tx, 2, jax.random.key(0))
  params, grads, metrics = [_copy(state.params)], [], []
  for batch in _batches():
    probe = _copy(state.replace(opt_state=RECORDER.init(state.params)))
    grads.append(record(probe, batch, jax.random.key(1))[0].opt_state)
    state, m = step(state, batch, jax.random.key(1))
    params.append(_copy(state.params))
    metrics.append({k: float(v) for k, v in m.items()})
  return params, grads, metrics


def _by_hand(tx, grads, params0):
  """Parameters after applying `tx` to `grads` in turn, from `params0`."""
  params, state, out = params0, tx.init(params0), [params0]
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append(params)
  return out


def _max_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_clipped_step_applies_clip_then_adam():
  params, grads, metrics = _run(CLIP)
  norms = [float(optax.tree.norm(g)) for g in grads]
  # metrics['grad_norm'] is the norm before clipping, above grad_clip.
  np.testing.assert_allclose([m['grad_norm'] for m in metrics], norms,
                             rtol=1e-5)
  assert min(norms) > 4 * CLIP and max(norms) > 1.5 * min(norms), norms
  clipped = _by_hand(optax.chain(optax.clip_by_global_norm(CLIP),
                                 optax.adam(LR)), grads, params[0])
  for got, want in zip(params[1:], clipped[1:]):
    assert _max_diff(got, want) < 1e-6
  # Adam alone on the same gradients lands elsewhere: clipping shows.
  plain = _by_hand(optax.adam(LR), grads, params[0])
  assert _max_diff(plain[2], clipped[2]) > 1e-4


def test_grad_clip_changes_the_update():
  clipped, _, _ = _run(CLIP)
  loose, grads, metrics = _run(LOOSE)
  assert all(m['grad_norm'] < LOOSE for m in metrics)
  assert _max_diff(clipped[2], loose[2]) > 1e-4
  # Never clipped, the run is Adam alone on its gradients.
  plain = _by_hand(optax.adam(LR), grads, loose[0])
  assert _max_diff(loose[2], plain[2]) < 1e-6
