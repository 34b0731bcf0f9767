"""Each decoding control alone, with stubbed logits, then the whole sampler.

The stub models prefer exactly what a control must prevent (loops, training
text, short or long lines, lines that do not rhyme), so a control that
stopped working fails here.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.data.vocab import build_vocabulary
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.generation import controls as decoding
from jaylyrics_jax.generation import lyrics
from jaylyrics_jax.generation import processors
from jaylyrics_jax.generation import sampler as sampling
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.scoring import realism

# ' ' is id 0; 天 边 前 rhyme (an group), 你 雨 rhyme (i group), the rest not.
CHARS = (' ', '天', '边', '前', '你', '雨', '我', '他', '的', '风', '花')
VOCAB = Vocabulary(CHARS)
V = len(CHARS)
SPACE = 0


def _run(step_fn, chain, tables, first=1, length=120, key=0):
  tokens, _, _ = jax.jit(
      lambda k: sampling.generate(step_fn, jnp.zeros((), jnp.int32), first, k,
                                  length,
                                  chain, tables))(jax.random.key(key))
  return VOCAB.decode(np.asarray(tokens))


def _random_step(carry, token):
  """Stub model: random logits each step (a key folded from the step)."""
  logits = jax.random.normal(jax.random.fold_in(jax.random.key(9), carry),
                             (V,)) * 2.0
  return logits, carry + 1


def _looping_step(carry, token):
  """Stub model: always wants the next character of '天边我他的' again."""
  loop = jnp.array([1, 2, 6, 7, 8])
  nxt = loop[(jnp.argmax(loop == token) + 1) % 5]
  return jnp.where(jnp.arange(V) == nxt, 8.0, 0.0), carry + 1


def test_line_form_bounds_every_line():
  chain = processors.Chain((processors.LineForm(SPACE, 3, 5),))
  for key in range(5):
    text = _run(_random_step, chain, (None,), key=key)
    lines = realism.complete_lines(text)[1:]  # The first follows the seed.
    assert lines and all(3 <= len(line) <= 5 for line in lines), text


def test_forced_rhyme_ends_every_line_on_the_rhyme():
  table = jnp.asarray(rhyme.rhyme_table(CHARS))
  an = rhyme.group_of('天')
  chain = processors.Chain((processors.LineForm(SPACE, 2, 6),
                            processors.Rhyme(SPACE, 2, 3, 6, 2.0)))
  tables = (None, processors.RhymeTables(table, jnp.int32(an)))
  for key in range(5):
    text = _run(_random_step, chain, tables, key=key)
    lines = realism.complete_lines(text)
    assert len(lines) >= 5
    assert all(rhyme.group_of(line[-1]) == an for line in lines), text
    # Never the same rhyming character twice in a row, except where the
    # line had to stop (LineForm's longest line wins).
    assert all(a[-1] != b[-1] or len(b) == 6
               for a, b in zip(lines, lines[1:])), text


def test_auto_rhyme_takes_the_first_lines_rhyme():
  table = jnp.asarray(rhyme.rhyme_table(CHARS))
  chain = processors.Chain((processors.LineForm(SPACE, 2, 6),
                            processors.Rhyme(SPACE, 2, 3, 6, 2.0)))
  tables = (None, processors.RhymeTables(table, jnp.int32(-1)))
  checked = 0
  for key in range(10):
    lines = realism.complete_lines(_run(_random_step, chain, tables, key=key))
    first = rhyme.group_of(lines[0][-1])
    if sum(rhyme.group_of(ch) == first for ch in CHARS) < 2:
      continue  # A group of one character cannot change its line ends.
    checked += 1
    assert {rhyme.group_of(line[-1]) for line in lines} == {first}, lines
  assert checked >= 3


def test_without_rhyme_the_stub_does_not_rhyme():
  """The stub is not rhyming by itself: the test above is not vacuous."""
  chain = processors.Chain((processors.LineForm(SPACE, 2, 6),))
  lines = realism.complete_lines(_run(_random_step, chain, (None,)))
  an = rhyme.group_of('天')
  assert sum(rhyme.group_of(line[-1]) == an for line in lines) < len(lines)


def _repeated_ngrams(text, n):
  flat = text.replace(' ', '')
  grams = [flat[i:i + n] for i in range(len(flat) - n + 1)]
  return len(grams) - len(set(grams))


@pytest.mark.parametrize('n', [2, 3, 4])
def test_no_repeat_never_repeats_an_ngram(n):
  assert _repeated_ngrams(_run(_looping_step, processors.Chain(), ()), n) > 0
  chain = processors.Chain((processors.NoRepeat(n, SPACE, 256, 0),))
  for first in (1, 3):
    text = _run(_looping_step, chain, (None,), first=first, length=60)
    assert _repeated_ngrams(text, n) == 0, text


def _chorus_step(carry, token):
  """Stub model: wants the line 天边我的 over and over."""
  line = jnp.array([1, 2, 6, 8, SPACE])
  pos = carry % 5
  return jnp.where(jnp.arange(V) == line[pos], 8.0, 0.0), carry + 1


@pytest.mark.parametrize('repeats', [0, 1, 2])
def test_a_whole_line_may_come_back_as_a_chorus(repeats):
  chain = processors.Chain((processors.NoRepeat(3, SPACE, 256, repeats),))
  text = _run(_chorus_step, chain, (None,), first=SPACE, length=60)
  lines = [line for line in text.split(' ') if line]
  assert lines[0] == '天边我的'
  assert lines.count('天边我的') == 1 + repeats, text
  assert max(lines.count(line) for line in lines) == 1 + repeats, text
  if not repeats:
    assert _repeated_ngrams(text, 3) == 0, text


def test_max_copy_never_writes_a_longer_training_run():
  train = '天边我他的风花 你雨前天边我他 的风花你雨前 '
  train_ids = VOCAB.encode(train)
  flat_train = train.replace(' ', '')

  def reciting_step(carry, token):
    """Stub model: wants the training text, character after character."""
    nxt = jnp.asarray(train_ids)[(carry + 1) % len(train_ids)]
    return jnp.where(jnp.arange(V) == nxt, 8.0, 0.0), carry + 1

  def longest_copy(text):
    flat = text.replace(' ', '')
    return max(k for k in range(1, 12) if any(
        flat[i:i + k] in flat_train for i in range(len(flat) - k + 1)))

  plain = _run(reciting_step, processors.Chain(), (), first=int(train_ids[0]))
  assert longest_copy(plain) > 8
  for n in (2, 3, 5):
    tables, width = decoding.copy_tables(train_ids, V, n, SPACE)
    chain = processors.Chain((processors.MaxCopy(n, SPACE, V, width),))
    text = _run(reciting_step, chain, (tables,), first=int(train_ids[0]))
    assert longest_copy(text) <= n, (n, text)


def test_a_chain_never_bans_every_character():
  """LineForm forces a space at 2 characters; a Rhyme that can never be met
  (no character of group 0) would ban that space too: it gives way."""
  table = jnp.full((V,), 3, jnp.int32).at[SPACE].set(-1)
  chain = processors.Chain((processors.LineForm(SPACE, 1, 2),
                            processors.Rhyme(SPACE, 1, 1, 2, 2.0)))
  tables = (None, processors.RhymeTables(table, jnp.int32(0)))
  text = _run(_random_step, chain, tables, length=30)
  # Every line, the unfinished last one too: without the rule the first
  # ban of everything draws a character where the space was forced, and
  # the line never ends.
  lines = text.split(' ')
  assert len(lines) >= 10 and all(len(line) <= 2 for line in lines), text


@pytest.fixture(scope='module')
def tiny_model():
  vocab = build_vocabulary('春夏秋冬 风花雪月 天边前 你雨 ')
  config = ModelConfig(vocab_size=vocab.size, embedding_size=8, rnn_size=16,
                       num_layers=1)
  return vocab, config, init_params(config, jax.random.key(0))


def _old_sampler(params, config, seed_ids, key, length, sampling_config,
                 space_id):
  """The sampler before decoding controls (choose/filter_logits), for the
  bit-identity test."""
  from jaylyrics_jax.models.charlm import CharLM, zero_carries  # pylint: disable=g-import-not-at-top
  model = CharLM(config)

  def filter_logits(logits, c):
    logits = logits / c.temperature
    if c.top_k:
      kth = jax.lax.top_k(logits, min(c.top_k, logits.shape[-1]))[0][-1]
      logits = jnp.where(logits < kth, -jnp.inf, logits)
    if c.top_p < 1.0:
      order = jnp.argsort(-logits)
      probs = jax.nn.softmax(logits[order])
      keep_sorted = (jnp.cumsum(probs) - probs) < c.top_p
      keep = jnp.zeros_like(keep_sorted).at[order].set(keep_sorted)
      logits = jnp.where(keep, logits, -jnp.inf)
    return logits

  def choose(logits, k, prev):
    greedy = jnp.argmax(logits).astype(jnp.int32)
    if sampling_config.mode == 'argmax':
      return greedy
    drawn = sampling.draw(k, filter_logits(logits, sampling_config))
    if sampling_config.mode == 'weighted':
      return drawn
    return jnp.where(prev == space_id, drawn, greedy)

  @jax.jit
  def run(params, seed_ids, keys):
    carry = zero_carries(config, 1)
    _, carry = model.apply({'params': params}, seed_ids[None, :-1], carry)

    def one(k):
      def body(state, step_key):
        carry, token = state
        logits, carry = model.apply({'params': params}, token[None, None],
                                    carry)
        token = choose(logits[0, 0], step_key, token)
        return (carry, token), token
      return jax.lax.scan(body, (carry, seed_ids[-1]),
                          jax.random.split(k, length))[1]
    return jax.vmap(one)(keys)

  return np.asarray(run(params, jnp.asarray(seed_ids),
                        jax.random.split(key, 3)))


@pytest.mark.parametrize('kwargs', [
    dict(mode='weighted', temperature=1.0),
    dict(mode='weighted', temperature=0.8, top_k=5),
    dict(mode='weighted', temperature=0.7, top_p=0.9),
    dict(mode='argmax'),
    dict(mode='combined', temperature=1.0)])
def test_every_control_off_is_bit_identical_to_the_plain_sampler(
    tiny_model, kwargs):
  vocab, config, params = tiny_model
  c = SamplingConfig(**kwargs).controls_off()
  seed_ids = vocab.encode('春夏')
  decoder = decoding.build_decoder(c, vocab)
  new, _ = sampling.sample_tokens(params, config, seed_ids, jax.random.key(4),
                                  50, decoder.chain, decoder.tables, 3)
  old = _old_sampler(params, config, seed_ids, jax.random.key(4), 50, c,
                     vocab.chars.index(' '))
  np.testing.assert_array_equal(new, old)


def test_chunks_give_the_text_of_one_scan(tiny_model):
  vocab, config, params = tiny_model
  train = '春夏秋冬 风花雪月 天边前 你雨 春夏 '
  args = (params, config, vocab, '春', jax.random.key(2), 50,
          SamplingConfig(lines=0), 2)
  one = lyrics.sample_text(*args, train_text=train, writer=None)
  done = []
  chunked = lyrics.sample_text(*args, train_text=train, chunk=7, writer=None,
                               on_chunk=done.append)
  assert chunked == one
  assert done == [7, 14, 21, 28, 35, 42, 49, 50]


def test_same_key_same_lyrics_and_lines_cut(tiny_model):
  vocab, config, params = tiny_model
  c = SamplingConfig(lines=3, min_line=2, max_line=4)
  write = lambda k: lyrics.sample_text(params, config, vocab, '春',
                                       jax.random.key(k), 60, c,
                                       num_samples=2, writer=None)
  assert write(1) == write(1) != write(2)
  for text in write(1):
    assert text.count(' ') == 3 and text.endswith(' ')
    assert all(2 <= len(line) <= 4 for line in text.split(' ')[:-1])


def test_best_of_keeps_the_best_scoring_candidate(tiny_model):
  vocab, config, params = tiny_model
  train = '春夏秋冬 风花雪月 天边前 你雨 春夏 '
  c = SamplingConfig(best_of=5, lines=4)
  groups = lyrics.sample_candidates(params, config, vocab, '春',
                                    jax.random.key(3), 40, c, num_samples=2,
                                    train_text=train, writer=None)
  judge = realism.make_judge(train, vocab, fluency=False)
  for group in groups:
    assert len(group) == 5
    scores = [lyrics.candidate_score(g.text, g.mean_log_prob, judge, True)
              for g in group]
    assert scores == [g.score for g in group]
    assert scores[0] == max(scores) and len(set(scores)) > 1
  texts = lyrics.sample_text(params, config, vocab, '春', jax.random.key(3),
                             40, c, num_samples=2, train_text=train,
                             writer=None)
  assert texts == [group[0].text for group in groups]
  # The candidates are the rows of one draw of 2 x 5 with the same key.
  decoder = decoding.build_decoder(dataclasses.replace(c, best_of=1), vocab,
                                   train, 41)
  rows, _ = sampling.sample_tokens(params, config, vocab.encode('春'),
                                   jax.random.key(3), 40, decoder.chain,
                                   decoder.tables, 10)
  drawn = {'春' + vocab.decode(row[:lyrics.cut_tokens(row, '春', vocab.chars.index(' '), 4)])
           for row in rows}
  assert {g.text for group in groups for g in group} == drawn


def test_padded_seeds_share_one_program_and_write_the_same(tiny_model):
  vocab, config, params = tiny_model
  decoder = decoding.build_decoder(
      SamplingConfig(mode='argmax', min_line=2, max_line=5), vocab, None, 64)
  before = sampling._compiled.cache_info().misses  # pylint: disable=protected-access
  for seed in ('春', '春夏', '春夏秋冬 风花'):
    ids = vocab.encode(seed)
    plain, _ = sampling.sample_tokens(params, config, ids, jax.random.key(0),
                                      24, decoder.chain, decoder.tables)
    padded, _ = sampling.sample_tokens(params, config, ids, jax.random.key(0),
                                       24, decoder.chain, decoder.tables,
                                       pad_seed_to=32)
    np.testing.assert_array_equal(plain, padded)
  # Three seed lengths: three plain programs, one padded one.
  assert sampling._compiled.cache_info().misses - before == 4  # pylint: disable=protected-access
  with pytest.raises(Exception, match='pad_seed_to=1'):
    sampling.sample_tokens(params, config, vocab.encode('春夏'),
                           jax.random.key(0), 8, decoder.chain,
                           decoder.tables, pad_seed_to=1)
