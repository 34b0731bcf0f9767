"""The sampler: stubbed logits give exact outputs; keys make it reproducible."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data.vocab import build_vocabulary
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation.controls import build_decoder
from jaylyrics_jax.scoring.realism import copy_rate
from jaylyrics_jax.generation.lyrics import sample_text
from jaylyrics_jax.generation.sampler import generate
from jaylyrics_jax.generation.sampler import sample_tokens
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.models.charlm import zero_carries

V = 5
SPACE = 0
STUB_VOCAB = Vocabulary((' ', 'a', 'b', 'c', 'd'))  # ' ' is id 0 = SPACE.


def _generate(step_fn, first_token, key, length, config):
  """generate() with the chain of `config` (controls off) on the stub vocab."""
  decoder = build_decoder(config.controls_off(), STUB_VOCAB)
  return generate(step_fn, jnp.zeros(()), first_token, key, length,
                  decoder.chain, decoder.tables)[0]


def _filter(logits, config):
  """The sampling processors of `config` applied to one step's logits."""
  decoder = build_decoder(config.controls_off(), STUB_VOCAB)
  states = decoder.chain.init(decoder.tables)
  return decoder.chain.update(logits, states, jnp.int32(1),
                              decoder.tables)[0]


def _cycle_step(carry, token):
  """Stub model: the next token is token + 1 (mod V) with certainty-ish."""
  logits = jnp.where(jnp.arange(V) == (token + 1) % V, 10.0, 0.0)
  return logits, carry + 1


def test_argmax_with_stub_gives_exact_sequence():
  tokens = _generate(_cycle_step, 2, jax.random.key(0), 7,
                     SamplingConfig(mode='argmax'))
  np.testing.assert_array_equal(tokens, [3, 4, 0, 1, 2, 3, 4])


def test_weighted_with_top_k_one_is_argmax():
  tokens = _generate(_cycle_step, 0, jax.random.key(3), 6,
                     SamplingConfig(mode='weighted', temperature=50.0,
                                    top_k=1))
  np.testing.assert_array_equal(tokens, [1, 2, 3, 4, 0, 1])


def _flat_step(carry, token):
  """Stub model: token 3 slightly ahead of token 4; after 3 or 4 comes a space."""
  after_word = jnp.where(jnp.arange(V) == SPACE, 10.0, -10.0)
  choice = jnp.array([-10.0, -10.0, -10.0, 0.1, 0.0])
  is_word = (token == 3) | (token == 4)
  return jnp.where(is_word, after_word, choice), carry


def test_combined_draws_after_space_only():
  config = SamplingConfig(mode='combined', temperature=1.0)
  runs = np.stack([_generate(_flat_step, 2, jax.random.key(k), 8, config)
                   for k in range(30)])
  # After token 2 (not a space) the argmax 3 is taken; spaces follow words.
  assert (runs[:, 0] == 3).all()
  assert (runs[:, 1::2] == SPACE).all()
  # After a space the draw picks 3 or 4, and both happen.
  drawn = runs[:, 2::2]
  assert set(np.unique(drawn)) == {3, 4}


def test_argmax_mode_never_draws():
  runs = np.stack([_generate(_flat_step, SPACE, jax.random.key(k), 4,
                             SamplingConfig(mode='argmax'))
                   for k in range(5)])
  assert (runs == [3, 0, 3, 0]).all()


def test_top_p_keeps_smallest_set():
  logits = jnp.log(jnp.array([0.1, 0.5, 0.25, 0.15, 0.0]))
  kept = lambda p: np.isfinite(_filter(logits, SamplingConfig(
      temperature=1.0, top_p=p)))
  np.testing.assert_array_equal(kept(0.7), [False, True, True, False, False])
  np.testing.assert_array_equal(kept(0.75), [False, True, True, False, False])
  np.testing.assert_array_equal(kept(0.76), [False, True, True, True, False])
  np.testing.assert_array_equal(kept(0.01), [False, True, False, False, False])


def test_top_p_equals_the_sorted_nucleus_on_a_real_sized_vocabulary():
  # The search without a sort keeps what sorting and cumulating would.
  rng = np.random.default_rng(0)
  for trial in range(40):
    scale = (0.3, 1.0, 3.0, 8.0)[trial % 4]
    logits = rng.normal(size=2311).astype(np.float32) * scale
    logits[rng.integers(0, 2311, 50)] = -np.inf  # Banned by a control.
    top_p = float(rng.uniform(0.05, 0.999))
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind='stable')
    before = np.cumsum(probs[order]) - probs[order]
    want = np.zeros(2311, bool)
    want[order[before < top_p]] = True
    got = np.isfinite(_filter(jnp.asarray(logits), SamplingConfig(
        temperature=1.0, top_p=top_p)))
    # Float sums may differ at the very edge: allow only the crossing
    # character itself to differ, and only when its mass sits on top_p.
    diff = np.flatnonzero(got != want)
    assert len(diff) <= 1, (trial, diff)
    if len(diff):
      edge = np.cumsum(probs[order])[np.flatnonzero(order == diff[0])[0]]
      assert abs(edge - top_p) < 1e-5


def test_top_k_and_temperature():
  logits = jnp.array([1.0, 4.0, 3.0, 2.0, 0.0])
  out = _filter(logits, SamplingConfig(temperature=2.0, top_k=2))
  np.testing.assert_allclose(out, [-np.inf, 2.0, 1.5, -np.inf, -np.inf])


@pytest.mark.parametrize('kwargs, match', [
    ({'mode': 'greedy'}, 'mode'), ({'temperature': 0.0}, 'temperature'),
    ({'top_p': 0.0}, 'top_p'), ({'top_p': 1.5}, 'top_p'),
    ({'top_k': -1}, 'top_k'), ({'no_repeat_ngram': 1}, 'no_repeat_ngram'),
    ({'min_line': 5, 'max_line': 3}, 'min_line'), ({'best_of': 0}, 'best_of'),
    ({'max_copy': -1}, 'max_copy'), ({'rhyme': ''}, 'rhyme')])
def test_bad_sampling_config(kwargs, match):
  with pytest.raises(JaylyricsError, match=match) as e:
    SamplingConfig(**kwargs)
  assert '--' not in str(e.value)


@pytest.fixture(scope='module')
def tiny_model():
  vocab = build_vocabulary('春夏秋冬 风花雪月 ')
  config = ModelConfig(vocab_size=vocab.size, embedding_size=8, rnn_size=16,
                       num_layers=2)
  return vocab, config, init_params(config, jax.random.key(0))


def test_same_key_same_sample_other_key_other_sample(tiny_model):
  vocab, config, params = tiny_model
  draw = lambda seed: sample_text(params, config, vocab, '春夏',
                                  jax.random.key(seed), length=40,
                                  writer=None)[0]
  assert draw(1) == draw(1)
  assert draw(1) != draw(2)
  assert draw(1).startswith('春夏') and len(draw(1)) == 42


def test_many_samples_in_one_call_match_their_keys(tiny_model):
  vocab, config, params = tiny_model
  seed_ids = vocab.encode('春夏')
  key = jax.random.key(7)
  decoder = build_decoder(SamplingConfig(), vocab, None, 32)
  many, log_probs = sample_tokens(params, config, seed_ids, key, 30,
                                  decoder.chain, decoder.tables, 3)
  assert many.shape == log_probs.shape == (3, 30)
  assert (log_probs <= 0).all()
  assert len({tuple(row) for row in many}) == 3
  again = sample_tokens(params, config, seed_ids, key, 30, decoder.chain,
                        decoder.tables, 3)[0]
  np.testing.assert_array_equal(many, again)



def test_seed_is_primed_once_without_repeating_its_last_character(tiny_model):
  vocab, config, params = tiny_model
  seed_ids = vocab.encode('春夏秋')
  decoder = build_decoder(SamplingConfig(mode='argmax').controls_off(), vocab)
  tokens = sample_tokens(params, config, seed_ids, jax.random.key(0), 5,
                         decoder.chain, decoder.tables)[0][0]
  apply = jax.jit(CharLM(config).apply)
  carry = zero_carries(config, 1)
  for t in seed_ids[:-1]:  # Every seed character but the last, once each.
    _, carry = apply({'params': params}, jnp.array([[t]]), carry)
  token, expected = int(seed_ids[-1]), []
  for _ in range(5):
    logits, carry = apply({'params': params}, jnp.array([[token]]), carry)
    token = int(jnp.argmax(logits[0, 0]))
    expected.append(token)
  np.testing.assert_array_equal(tokens, expected)


def test_unknown_seed_characters(tiny_model):
  vocab, config, params = tiny_model
  with pytest.raises(JaylyricsError, match="'晴'"):
    sample_text(params, config, vocab, '晴春', jax.random.key(0), length=5)
  text = sample_text(params, config, vocab, '晴春', jax.random.key(0),
                     length=5, unknown='skip', writer=None)[0]
  assert text.startswith('春') and len(text) == 6
  with pytest.raises(JaylyricsError, match='empty'):
    sample_text(params, config, vocab, '晴', jax.random.key(0), length=5,
                unknown='skip')
  with pytest.raises(JaylyricsError, match='empty'):
    sample_text(params, config, vocab, '', jax.random.key(0), length=5)
  with pytest.raises(JaylyricsError, match='length'):
    sample_text(params, config, vocab, '春', jax.random.key(0), length=0)


def test_inverse_cdf_draw_matches_the_distribution():
  from jaylyrics_jax.generation.sampler import draw  # pylint: disable=g-import-not-at-top
  probs = np.array([0.05, 0.5, 0.0, 0.3, 0.15])
  logits = jnp.log(jnp.asarray(probs))
  keys = jax.random.split(jax.random.key(0), 20_000)
  tokens = np.asarray(jax.vmap(lambda k: draw(k, logits))(keys))
  freq = np.bincount(tokens, minlength=5) / len(tokens)
  np.testing.assert_allclose(freq, probs, atol=0.01)
  assert freq[2] == 0.0  # A masked character is never drawn.


def test_copy_rate():
  train = '春天来了 花开了 '
  assert copy_rate('春天来了', train) == 1.0
  # Spaces are ignored on both sides: 春天来了 and 天来了花 both occur.
  assert copy_rate('春天 来了花', train) == 1.0
  assert copy_rate('春天来了冬', train) == 0.5  # 天来了冬 does not.
  assert copy_rate('冬冬冬冬冬', train) == 0.0
  assert np.isnan(copy_rate('春天', train))


@pytest.mark.parametrize('vocab_size', [1, 2, 7, 50, 2311])
def test_two_level_draw_is_exact_at_every_vocabulary_size(vocab_size):
  """Every block shape: the frequencies match, and masked entries (the
  padding of the last block, -inf logits) are never drawn."""
  from jaylyrics_jax.generation.sampler import draw  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(vocab_size)
  logits = rng.normal(size=vocab_size) * 2
  logits[rng.uniform(size=vocab_size) < 0.3] = -np.inf
  logits[-1] = 1.0 if vocab_size < 50 else -np.inf  # A masked last entry too.
  logits[0] = 0.5
  probs = np.exp(logits - logits.max())
  probs /= probs.sum()
  n = 40_000
  keys = jax.random.split(jax.random.key(vocab_size), n)
  tokens = np.asarray(jax.jit(jax.vmap(lambda k: draw(
      k, jnp.asarray(logits, jnp.float32))))(keys))
  freq = np.bincount(tokens, minlength=vocab_size) / n
  assert (freq[probs == 0] == 0).all()
  # Within 5 standard errors everywhere (plus 3 draws, for the characters
  # so rare that the normal approximation does not hold).
  np.testing.assert_array_less(np.abs(freq - probs),
                               5 * np.sqrt(probs * (1 - probs) / n) + 3 / n)


def test_two_level_draw_gives_the_plain_inversions_tokens():
  """The fast draw picks what inverting one full CDF picks from the same
  uniform number, except where float rounding moves a boundary."""
  from jaylyrics_jax.generation.sampler import draw  # pylint: disable=g-import-not-at-top

  def plain(key, logits):
    cdf = jnp.cumsum(jax.nn.softmax(logits))
    u = jax.random.uniform(key, dtype=cdf.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side='right'),
                       logits.shape[-1] - 1)

  logits = jax.random.normal(jax.random.key(0), (2311,)) * 3
  keys = jax.random.split(jax.random.key(1), 5000)
  fast = jax.jit(jax.vmap(lambda k: draw(k, logits)))(keys)
  slow = jax.jit(jax.vmap(lambda k: plain(k, logits)))(keys)
  assert np.mean(np.asarray(fast) == np.asarray(slow)) > 0.995
