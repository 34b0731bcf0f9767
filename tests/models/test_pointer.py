"""Attention/copy over the model's own past."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.generation.processors import Chain
from jaylyrics_jax.generation.processors import Temperature
from jaylyrics_jax.generation.sampler import sample_tokens
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.training.steps import create_train_state
from jaylyrics_jax.training.steps import make_optimizer
from jaylyrics_jax.training.steps import make_train_step

CONFIG = ModelConfig(vocab_size=11, embedding_size=4, rnn_size=8,
                     num_layers=2, attn_length=5, attn_size=4)


@pytest.fixture(scope='module')
def apply_and_params():
  return jax.jit(CharLM(CONFIG).apply), init_params(CONFIG, jax.random.key(1))


def test_step_by_step_and_chunks_equal_whole_window(apply_and_params):
  apply, params = apply_and_params
  tokens = jax.random.randint(jax.random.key(2), (2, 13), 0, 11)
  whole, whole_carry = apply({'params': params}, tokens,
                             zero_carries(CONFIG, 2))
  for cuts in ([(t, t + 1) for t in range(13)],
               [(0, 4), (4, 7), (7, 13)]):  # The last chunk outgrows memory.
    carry, parts = zero_carries(CONFIG, 2), []
    for a, b in cuts:
      log_probs, carry = apply({'params': params}, tokens[:, a:b], carry)
      parts.append(log_probs)
    np.testing.assert_allclose(jnp.concatenate(parts, 1), whole, atol=2e-6)
    np.testing.assert_array_equal(carry[-1].count, whole_carry[-1].count)


def test_generation_memory_gives_the_same_outputs(apply_and_params):
  # Each entry's key projected once when written (zero_carries(...,
  # generation=True)) scores as the plain memory, also after the ring wraps.
  apply, params = apply_and_params
  tokens = jax.random.randint(jax.random.key(4), (2, 13), 0, 11)
  whole, _ = apply({'params': params}, tokens, zero_carries(CONFIG, 2))
  for cuts in ([(t, t + 1) for t in range(13)], [(0, 4), (4, 7), (7, 13)]):
    carry, parts = zero_carries(CONFIG, 2, generation=True), []
    for a, b in cuts:
      log_probs, carry = apply({'params': params}, tokens[:, a:b], carry)
      parts.append(log_probs)
    np.testing.assert_allclose(jnp.concatenate(parts, 1), whole, atol=2e-6)
    assert carry[-1].proj.shape == (2, CONFIG.attn_length, CONFIG.attn_size)


def test_output_is_a_distribution(apply_and_params):
  apply, params = apply_and_params
  tokens = jax.random.randint(jax.random.key(3), (3, 9), 0, 11)
  log_probs, _ = apply({'params': params}, tokens, zero_carries(CONFIG, 3))
  np.testing.assert_allclose(jnp.exp(log_probs).sum(-1), 1.0, atol=1e-5)


def test_attention_learns_to_copy_repeated_lines():
  """Random lines, each sung twice: only copying predicts the repeat."""
  rng = np.random.default_rng(0)
  lines = [rng.integers(1, 20, 7) for _ in range(400)]
  ids = np.concatenate([np.concatenate([l, [0], l, [0]]) for l in lines])
  losses = {}
  for attn_length in (0, 32):
    config = ModelConfig(vocab_size=20, embedding_size=16, rnn_size=32,
                         num_layers=1, attn_length=attn_length, attn_size=16)
    train = TrainConfig(batch_size=8, seq_length=16, learning_rate=1e-2)
    tx = make_optimizer(train, 100)
    state = create_train_state(config, tx, 8, jax.random.key(0))
    step = make_train_step(config, tx)
    n = (len(ids) - 1) // (8 * 16)
    x = ids[:n * 128].reshape(8, n, 16).transpose(1, 0, 2)
    y = ids[1:n * 128 + 1].reshape(8, n, 16).transpose(1, 0, 2)
    for epoch in range(5):
      state = state.replace(carry=zero_carries(config, 8))
      total = 0.0
      for i in range(n):
        state, metrics = step(state, (x[i], y[i]), jax.random.key(1))
        total += float(metrics['loss'])
    losses[attn_length] = total / n
  # Half the characters are copies: a copying model gains > 0.4 nats/char.
  assert losses[32] < losses[0] - 0.4, losses


def test_sampling_with_attention_is_reproducible(apply_and_params):
  _, params = apply_and_params
  chain = Chain((Temperature(),))
  draw = lambda k: sample_tokens(
      params, CONFIG, np.array([1, 2, 3], np.int32), jax.random.key(k), 20,
      chain, (np.float32(SamplingConfig().temperature),), num_samples=2,
      min_copy_distance=SamplingConfig().min_copy_distance)[0]
  np.testing.assert_array_equal(draw(0), draw(0))
  assert draw(0).shape == (2, 20)


def test_evaluate_reports_the_model_without_its_attention():
  from jaylyrics_jax.scoring import tuning as inference  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.config import InferenceConfig  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.runs.store import LoadedModel  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.data.vocab import build_vocabulary  # pylint: disable=g-import-not-at-top
  vocab = build_vocabulary('春夏秋冬 风花雪月 ')
  config = ModelConfig(vocab_size=vocab.size, embedding_size=4, rnn_size=8,
                       num_layers=1, attn_length=6, attn_size=4)
  model = LoadedModel(init_params(config, jax.random.key(0)), config, vocab,
                      {}, 0)
  text = '春夏秋冬 风花雪月 春夏秋冬 '
  scores = inference.evaluate_components(model, text, None,
                                         InferenceConfig())
  assert scores['bpc_model_no_attention'] != scores['bpc_model']
  assert scores['components'] == ['model']


def test_softmax_loss_weight_trains_the_softmax_but_logs_the_model_loss():
  x = jax.random.randint(jax.random.key(4), (2, 6), 0, 11)
  results = {}
  for weight in (0.0, 1.0):
    config = ModelConfig(vocab_size=11, embedding_size=4, rnn_size=8,
                         num_layers=1, attn_length=5, attn_size=4,
                         softmax_loss_weight=weight)
    tx = make_optimizer(TrainConfig(batch_size=2, seq_length=5), 10)
    state = create_train_state(config, tx, 2, jax.random.key(0))
    state, metrics = make_train_step(config, tx)(state, (x[:, :-1], x[:, 1:]),
                                                 jax.random.key(1))
    results[weight] = (float(metrics['loss']), float(metrics['grad_norm']))
  assert results[0.0][0] == pytest.approx(results[1.0][0], rel=1e-6)
  assert results[0.0][1] != pytest.approx(results[1.0][1], rel=1e-3)


def test_min_copy_distance_hides_recent_positions_consistently():
  import dataclasses  # pylint: disable=g-import-not-at-top
  far = dataclasses.replace(CONFIG, attn_min_distance=3)
  params = init_params(CONFIG, jax.random.key(1))
  apply = jax.jit(CharLM(far).apply)
  tokens = jax.random.randint(jax.random.key(5), (2, 12), 0, 11)
  whole, _ = apply({'params': params}, tokens, zero_carries(far, 2))
  carry, parts = zero_carries(far, 2), []
  for t in range(12):
    log_probs, carry = apply({'params': params}, tokens[:, t:t + 1], carry)
    parts.append(log_probs)
  np.testing.assert_allclose(jnp.concatenate(parts, 1), whole, atol=2e-6)
  near, _ = CharLM(CONFIG).apply({'params': params}, tokens,
                                 zero_carries(CONFIG, 2))
  # Hiding the two nearest positions changes what can be copied.
  assert not np.allclose(near[:, 3:], whole[:, 3:])
  np.testing.assert_allclose(jnp.exp(whole).sum(-1), 1.0, atol=1e-5)
