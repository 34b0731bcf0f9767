"""The jitted train and eval steps."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.training.steps import create_train_state
from jaylyrics_jax.training.steps import make_optimizer
from jaylyrics_jax.training.steps import make_train_step

MODEL = ModelConfig(vocab_size=13, embedding_size=8, rnn_size=16, num_layers=2,
                    dropout=0.1)


_STEPS = {}


def _setup(config=TrainConfig(batch_size=4, seq_length=6), steps_per_epoch=100):
  """A fresh state and a step function compiled once per configuration."""
  key = (config, steps_per_epoch)
  if key not in _STEPS:
    tx = make_optimizer(config, steps_per_epoch)
    _STEPS[key] = tx, make_train_step(MODEL, tx)
  tx, step = _STEPS[key]
  return create_train_state(MODEL, tx, config.batch_size,
                            jax.random.key(0)), step


def _batch(seed=0):
  ids = np.random.default_rng(seed).integers(0, 13, (4, 7)).astype(np.int32)
  return ids[:, :-1], ids[:, 1:]


def test_every_parameter_changes_after_one_step():
  state, step = _setup()
  before = jax.tree.map(np.array, state.params)
  state, metrics = step(state, _batch(), jax.random.key(1))
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before,
                         state.params)
  assert all(jax.tree.leaves(changed)), changed
  assert int(state.step) == 1 and int(state.nonfinite_step) == -1
  assert set(metrics) == {'loss', 'grad_norm', 'lr'}


def test_old_state_is_donated():
  state, step = _setup()
  old_embedding = state.params['embed']['embedding']
  step(state, _batch(), jax.random.key(1))
  assert old_embedding.is_deleted()


def test_overfits_a_tiny_periodic_corpus():
  state, step = _setup(TrainConfig(batch_size=4, seq_length=6,
                                   learning_rate=1e-2))
  period = np.arange(13, dtype=np.int32)
  ids = np.tile(period, 4)[:28].reshape(4, 7)
  for _ in range(150):
    state, metrics = step(state, (ids[:, :-1], ids[:, 1:]), jax.random.key(1))
  assert float(metrics['loss']) < 0.1  # From ln(13) = 2.56 at the start.


def test_no_recompilation_on_later_steps():
  config = TrainConfig(batch_size=4, seq_length=6, learning_rate=3e-3)
  state, step = _setup(config)
  state, _ = step(state, _batch(0), jax.random.key(1))
  assert step._cache_size() == 1
  for seed in range(1, 4):
    state, _ = step(state, _batch(seed), jax.random.key(seed))
  assert step._cache_size() == 1


def test_learning_rate_decays_per_epoch():
  state, step = _setup(TrainConfig(batch_size=4, seq_length=6, decay_rate=0.5),
                       steps_per_epoch=2)
  lrs = []
  for _ in range(5):
    state, metrics = step(state, _batch(), jax.random.key(1))
    lrs.append(float(metrics['lr']))
  np.testing.assert_allclose(lrs, [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4], rtol=1e-6)


def test_gradient_clipping_bounds_the_update():
  config = TrainConfig(batch_size=4, seq_length=6, grad_clip=1e-3)
  tx = make_optimizer(config, 100)
  params = {'w': jnp.ones(3)}
  grads = {'w': jnp.full(3, 100.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step is lr * sign(g) whatever the scale: clipping must not
  # change that, but it must leave a finite, bounded update.
  np.testing.assert_allclose(updates['w'], -1e-3, rtol=1e-3)


def test_each_step_draws_its_own_dropout_masks():
  """The dropout key is folded with the step count: the same state and
  batch at another count draw other masks (another loss), at the same count
  the same ones (which is what lets a resumed run continue exactly)."""
  state, step = _setup()
  loss = lambda s: float(step(s, _batch(), jax.random.key(1))[1]['loss'])
  copy = lambda: jax.tree.map(jnp.copy, state)
  at_zero = loss(copy())
  assert loss(copy()) == at_zero
  assert loss(copy().replace(step=jnp.asarray(5, jnp.int32))) != at_zero


def test_the_carry_goes_on_to_the_next_window():
  """After a step, state.carry is the hidden state at the end of the window:
  where the next window starts (truncated backpropagation through time)."""
  model = dataclasses.replace(MODEL, dropout=0.0)
  tx = make_optimizer(TrainConfig(batch_size=4, seq_length=6), 100)
  state = create_train_state(model, tx, 4, jax.random.key(0))
  params = jax.tree.map(jnp.copy, state.params)
  inputs, targets = _batch()
  state, _ = make_train_step(model, tx)(state, (inputs, targets),
                                        jax.random.key(1))
  _, want = CharLM(model).apply({'params': params}, inputs,
                                zero_carries(model, 4))
  assert jax.tree.structure(state.carry) == jax.tree.structure(want)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               state.carry, want)
  assert float(jnp.max(jnp.abs(state.carry[0][0]))) > 0.01


def test_nonfinite_step_is_recorded():
  state, step = _setup()
  state, _ = step(state, _batch(), jax.random.key(1))
  bad_params = jax.tree.map(lambda a: a * jnp.nan, state.params)
  state = state.replace(params=bad_params)
  state, _ = step(state, _batch(), jax.random.key(1))
  state, _ = step(state, _batch(), jax.random.key(1))
  assert int(state.nonfinite_step) == 1


def test_jitted_initial_state_equals_eager_init():
  from jaylyrics_jax.models.charlm import init_params  # pylint: disable=g-import-not-at-top
  state, _ = _setup()
  eager = init_params(MODEL, jax.random.key(0))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               state.params, eager)
