"""The default inference on the device: equal to the numpy scorers, step by
step, and sampling from it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaylyrics_jax as jl
from jaylyrics_jax.config import InferenceConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation import lyrics
from jaylyrics_jax.scoring import mixture as mixture_step
from jaylyrics_jax.scoring import ngram
from jaylyrics_jax.scoring import stream as evaluation
from jaylyrics_jax.scoring import tuning as inference
from conftest import synthetic_lyrics

CONFIG = jl.ModelConfig(vocab_size=0, embedding_size=8, rnn_size=16,
                        num_layers=1, attn_length=24, attn_size=8)


@pytest.fixture(scope='module')
def setup():
  """A randomly initialised attention model, its training ids and a text."""
  text = jl.clean_text(synthetic_lyrics(num_lines=80, seed=3))
  train, valid = jl.split_train_valid(text, 0.2)
  vocab = jl.build_vocabulary(text)
  config = dataclasses.replace(CONFIG, vocab_size=vocab.size)
  params = jl.init_params(config, jax.random.key(0))
  model = jl.LoadedModel(params, config, vocab, meta={}, step=0)
  return model, vocab.encode(train), valid[:300]


def _teacher_forced(model, spec, train_ids, text, min_distance=1):
  """Each target's probability under the step, feeding the stream's inputs."""
  mix = mixture_step.device_mixture(
      spec, inference.kneser_ney(train_ids, model.vocab.size,
                                 spec.ngram_order)
      if spec.ngram_order else None)
  step = mixture_step.make_mixture_step(model.model_config, spec,
                                        min_distance)
  arrays = evaluation.stream_arrays(text, model.vocab)
  carry = mixture_step.initial_carry(model.model_config, spec,
                                     len(arrays.inputs))

  def body(c, xy):
    log_p, c = step(model.params, mix.tables, c, xy[0])
    return c, (log_p[xy[1]], jnp.sum(jnp.exp(log_p)))

  _, (log_p, total) = jax.jit(lambda c: jax.lax.scan(
      body, c, (jnp.asarray(arrays.inputs), jnp.asarray(arrays.targets))))(
          carry)
  return np.exp(np.asarray(log_p, np.float64)), np.asarray(total), arrays


SPEC = mixture_step.MixtureSpec(weights=(0.4, 0.2, 0.25, 0.15), cache_size=50,
                             theta=10.0, ngram_order=4, ngram_cache_order=3)


@pytest.mark.parametrize('component', inference.COMPONENTS + ('mixture',))
def test_step_equals_the_numpy_scorers(setup, component):
  model, train_ids, text = setup
  spec = SPEC
  if component != 'mixture':
    weights = [float(c == component) for c in inference.COMPONENTS]
    spec = dataclasses.replace(SPEC, weights=tuple(weights))
  got, total, arrays = _teacher_forced(model, spec, train_ids, text)
  comps = inference.component_probs(model, text, train_ids, SPEC.ngram_order,
                                    SPEC.ngram_cache_order)
  comps['cache'] = inference.cache_probs(comps, SPEC.cache_size, SPEC.theta)
  want = sum(w * comps[name]
             for name, w in zip(inference.COMPONENTS, spec.weights) if w)
  np.testing.assert_allclose(got[arrays.mask], want, rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(total, 1.0, rtol=1e-4)  # Normalised.


def test_min_distance_hides_the_recent_past(setup):
  """Caches that skip the last d positions: brute force on the same stream."""
  model, _, text = setup
  d, vocab_size = 5, model.vocab.size
  wb_spec = mixture_step.MixtureSpec(weights=(0.0, 0.0, 0.0, 1.0),
                                  ngram_cache_order=3)
  got, _, arrays = _teacher_forced(model, wb_spec, None, text, d)
  history = arrays.inputs.tolist()
  for t in range(0, len(history), 7):  # Witten-Bell counts, by hand.
    p = np.full(vocab_size, 1.0 / vocab_size)
    for k in range(1, 4):
      context = history[t - k + 2:t + 1] if k > 1 else []
      if len(context) < k - 1:
        break
      counts = np.zeros(vocab_size)
      for j in range(k - 1, t + 2 - d):  # Tokens read >= d steps before.
        if history[j - k + 1:j] == context:
          counts[history[j]] += 1
      if not counts.sum():
        break
      types = np.count_nonzero(counts)
      p = (types * p + counts) / (counts.sum() + types)
    np.testing.assert_allclose(got[t], p[arrays.targets[t]], rtol=2e-5)
  cache_spec = mixture_step.MixtureSpec(weights=(0.0, 1.0, 0.0, 0.0),
                                     cache_size=20, theta=3.0)
  got, _, arrays = _teacher_forced(model, cache_spec, None, text, d)
  nll, hidden = evaluation.stream_outputs(model.params, model.model_config,
                                          arrays)
  keys = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
  for t in range(0, len(history), 7):
    past = range(max(0, t - 20), t - d + 1)
    if not past:  # Nothing usable yet: the model's own probability.
      np.testing.assert_allclose(got[t], np.exp(-nll[t]), rtol=2e-5)
      continue
    w = np.array([np.exp(3.0 * keys[t] @ keys[i]) for i in past])
    hit = sum(wi for wi, i in zip(w, past)
              if arrays.targets[i] == arrays.targets[t])
    np.testing.assert_allclose(got[t], hit / w.sum(), rtol=2e-5, atol=1e-7)


def test_kneser_ney_tables_match_the_model_at_every_context():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 9, 400)
  ids[200:260] = ids[100:160]  # A repeat, so long contexts are seen.
  kn = ngram.fit_kneser_ney(ids, 11, order=5)  # Ids 9 and 10 never occur.
  tables = mixture_step.kneser_ney_tables(kn)
  gram_ids = jnp.full((4,), -1, jnp.int32)
  for i, token in enumerate(ids[:300]):
    p, gram_ids = mixture_step.kneser_ney_step(tables, gram_ids, int(token))
    np.testing.assert_allclose(p, kn.distribution(ids[:i + 1]), rtol=1e-5)


def test_kneser_ney_log_prob_is_the_step_distribution_at_its_token():
  rng = np.random.default_rng(1)
  ids = rng.integers(0, 9, 400)
  ids[200:260] = ids[100:160]
  kn = ngram.fit_kneser_ney(ids, 11, order=5)
  tables = mixture_step.kneser_ney_tables(kn)
  gram_ids = jnp.full((4,), -1, jnp.int32)
  for i, token in enumerate(ids[:120]):
    gram_ids = mixture_step.kneser_ney_step(tables, gram_ids, int(token))[1]
    # The next character as in the stream, an unseen one, and another.
    for nxt in {int(ids[i + 1]), 10, int(rng.integers(0, 9))}:
      got = mixture_step.kneser_ney_log_prob(tables, gram_ids, nxt)
      want = np.log(kn.distribution(ids[:i + 1])[nxt])
      np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sampling_with_a_mixture(setup):
  model, train_ids, _ = setup
  mix = inference.device_mixture_for(
      InferenceConfig(
          cache_size=50, mix_cache_size=50, ngram_order=4, ngram_cache_order=3,
          full_weights=SPEC.weights),
      model.vocab.size, train_ids)
  assert mix.spec.weights == SPEC.weights
  key = jax.random.key(7)
  sample = lambda k, m, config=SamplingConfig(): lyrics.sample_text(
      model.params, model.model_config, model.vocab, '春风', k, length=40,
      config=config, num_samples=3, mixture=m, writer=None)
  one = sample(key, mix)
  assert one == sample(key, mix) != sample(jax.random.key(8), mix)
  assert len(set(one)) == 3 and all(len(t) == 42 for t in one)
  assert one != sample(key, None)
  # Argmax from the mixture = the argmax of the teacher-forced steps.
  argmax = SamplingConfig(mode='argmax', min_copy_distance=0).controls_off()
  text = sample(key, mix, argmax)[0]
  step = mixture_step.make_mixture_step(model.model_config, mix.spec)
  ids = model.vocab.encode(text)
  carry = mixture_step.initial_carry(model.model_config, mix.spec, len(ids))
  for i, token in enumerate(ids[:-1]):
    log_p, carry = step(model.params, mix.tables, carry, token)
    if i >= 1:  # From the seed's last character on.
      assert int(jnp.argmax(log_p)) == ids[i + 1]


def test_model_only_settings_sample_from_the_model(setup):
  model, train_ids, _ = setup
  mix = inference.device_mixture_for(InferenceConfig(),
                                  model.vocab.size, train_ids)
  assert mix.spec.weights == (1.0, 0.0, 0.0, 0.0) and mix.tables is None
  key = jax.random.key(3)
  args = (model.params, model.model_config, model.vocab, '春', key, 30)
  assert (lyrics.sample_text(*args, mixture=mix) ==
          lyrics.sample_text(*args))


def test_mixture_errors():
  spec = mixture_step.MixtureSpec(weights=(0.5, 0.0, 0.5, 0.0), ngram_order=3)
  with pytest.raises(JaylyricsError, match='KneserNey'):
    mixture_step.device_mixture(spec)
  kn = ngram.fit_kneser_ney(np.arange(5), 5, order=2)
  with pytest.raises(JaylyricsError, match='3-gram'):
    mixture_step.device_mixture(spec, kn)
  with pytest.raises(JaylyricsError, match='min_distance'):
    mixture_step.make_mixture_step(CONFIG, spec, 0)


def test_tables_too_large_for_int32_are_refused():
  rng = np.random.default_rng(0)
  ids = rng.integers(2**20 - 3000, 2**20, 5000)  # n-gram keys past 2**31.
  kn = ngram.fit_kneser_ney(ids, 2**20, order=2)
  with pytest.raises(JaylyricsError, match='lower --ngram_order'):
    mixture_step.kneser_ney_tables(kn)
