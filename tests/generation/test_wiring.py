"""`SamplingConfig` and `LineConfig` fields reach what `sample_text` writes.

The processors have their own tests (test_processors.py); these check the
connections: a config field to the processor `build_decoder` makes of it,
and best-of's score to the candidate it keeps. The model is a real `CharLM`
whose output layer is set by hand, so its distribution is known exactly:
uniform over a chosen set of characters (every text of them equally
likely), optionally with more spaces.
"""

import collections
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaylyrics_jax as jl
from jaylyrics_jax.generation import lyrics
from jaylyrics_jax.scoring import realism

CHARS = ' 春夏秋冬风花雪月天地你我'
VOCAB = jl.Vocabulary(tuple(CHARS))
MODEL = jl.ModelConfig(vocab_size=VOCAB.size, embedding_size=8, rnn_size=8,
                       num_layers=1)
OFF = jl.SamplingConfig(temperature=1.0).controls_off()
SEED = '我'


def _made_up_text(chars, num_lines, seed):
  """Lines of 3..8 characters drawn from `chars` (no corpus text)."""
  rng = np.random.default_rng(seed)
  return ''.join(''.join(rng.choice(list(chars), rng.integers(3, 9))) + ' '
                 for _ in range(num_lines))


# The training text for max_copy and the copy penalty: 6 of the 12
# characters, so a ban after a training n-gram never covers every character.
TRAIN = _made_up_text('春夏秋冬风花', 60, 0)


@pytest.fixture(scope='module')
def uniform():
  """params(allowed, space_weight): the model's next character is uniform
  over `allowed` (with the space `space_weight` times as likely), whatever
  it has read."""
  base = jl.init_params(MODEL, jax.random.key(0))

  def params(allowed=CHARS, space_weight=1.0):
    bias = np.full(VOCAB.size, -40.0, np.float32)
    bias[VOCAB.encode(allowed)] = 0.0
    bias[VOCAB.encode(' ')] = math.log(space_weight)
    out = {'kernel': jnp.zeros_like(base['output']['kernel']),
           'bias': jnp.asarray(bias)}
    return dict(base, output=out)

  return params


def _longest_training_run(text, train=TRAIN):
  """Length of the longest run of `text` (spaces removed) found verbatim in
  the training text (spaces removed)."""
  flat, flat_train = text.replace(' ', ''), train.replace(' ', '')
  longest = 0
  for i in range(len(flat)):
    k = longest + 1
    while i + k <= len(flat) and flat[i:i + k] in flat_train:
      longest, k = k, k + 1
  return longest


# ------------------------------------------------------------- line form


def test_min_and_max_line_bound_every_line_and_both_are_reached(uniform):
  m, big = 3, 6
  config = dataclasses.replace(OFF, min_line=m, max_line=big)
  texts = jl.sample_text(uniform(space_weight=3.0), MODEL, VOCAB, SEED,
                         jax.random.key(0), 400, config, num_samples=2, writer=None)
  lengths = [len(line) for text in texts
             for line in realism.complete_lines(text)]
  assert len(lengths) > 100
  assert min(lengths) == m and max(lengths) == big, sorted(set(lengths))
  # The same model without the bounds writes shorter and longer lines.
  free = jl.sample_text(uniform(space_weight=3.0), MODEL, VOCAB, SEED,
                        jax.random.key(0), 400, OFF, num_samples=2, writer=None)
  free_lengths = [len(line) for text in free
                  for line in realism.complete_lines(text)]
  assert min(free_lengths) < m and max(free_lengths) > big


# ------------------------------------------------------------- max_copy


def test_unbounded_sampling_copies_long_runs(uniform):
  """Without max_copy the model writes long training runs: the test below
  is not vacuous. (These tests write a character at a time, writer=None:
  the per-character controls are what they wire.)"""
  text = jl.sample_text(uniform(), MODEL, VOCAB, SEED, jax.random.key(1),
                        600, OFF, train_text=TRAIN, writer=None)[0]
  assert _longest_training_run(text) >= 4


@pytest.mark.parametrize('n', [2, 3])
def test_max_copy_allows_runs_of_n_never_n_plus_1(uniform, n):
  config = dataclasses.replace(OFF, max_copy=n)
  text = jl.sample_text(uniform(), MODEL, VOCAB, SEED, jax.random.key(1),
                        600, config, train_text=TRAIN, writer=None)[0]
  assert _longest_training_run(text) == n, text


# ------------------------------------------------------------- no-repeat


def _repeated_ngrams(text, n):
  """How many n-grams of the text (spaces removed) occurred before in it."""
  flat = text.replace(' ', '')
  grams = [flat[i:i + n] for i in range(len(flat) - n + 1)]
  return len(grams) - len(set(grams))


def test_no_repeat_ngram_reaches_the_text(uniform):
  params = uniform('春夏秋')  # Three characters: repeats come fast.
  plain = jl.sample_text(params, MODEL, VOCAB, '春', jax.random.key(2), 80,
                         OFF, writer=None)[0]
  assert _repeated_ngrams(plain, 4) > 5
  for n in (3, 4):
    config = dataclasses.replace(OFF, no_repeat_ngram=n)
    text = jl.sample_text(params, MODEL, VOCAB, '春', jax.random.key(2), 80,
                          config, writer=None)[0]
    assert _repeated_ngrams(text, n) == 0, text


# --------------------------------------------------------------- best-of


def _penalty(text, judge, rhyme):
  """The realism penalty `candidate_score` documents, from `realism.report`."""
  fig = realism.report([text], judge)
  names = ['self_repetition', 'training_copies', 'one_char_lines']
  total = sum(0.0 if math.isnan(fig[k]) else fig[k] for k in names)
  if rhyme and not math.isnan(fig['rhyme_rate']):
    total += 1.0 - fig['rhyme_rate']
  return total


def test_best_of_keeps_the_least_penalised_of_equally_likely_candidates(
    uniform):
  """Every text of the allowed characters is equally likely, so best-of
  must keep the candidate with the fewest loops, copies and one-character
  lines."""
  params = uniform('春夏秋冬')
  config = dataclasses.replace(OFF, best_of=8, lines=6)
  judge = realism.make_judge(TRAIN, VOCAB, fluency=False)
  groups = jl.sample_candidates(params, MODEL, VOCAB, '春', jax.random.key(3),
                                80, config, num_samples=3, train_text=TRAIN, writer=None)
  for group in groups:
    np.testing.assert_allclose([c.mean_log_prob for c in group],
                               -math.log(5), rtol=1e-5)
    penalties = [_penalty(c.text, judge, rhyme=False) for c in group]
    assert penalties[0] == min(penalties) < max(penalties), penalties
  texts = jl.sample_text(params, MODEL, VOCAB, '春', jax.random.key(3), 80,
                         config, num_samples=3, train_text=TRAIN, writer=None)
  assert texts == [group[0].text for group in groups]


def test_a_loop_or_a_copy_loses_to_clean_lines_of_equal_likelihood():
  judge = realism.make_judge(TRAIN, VOCAB, fluency=False)
  score = lambda text, rhyme=False: lyrics.candidate_score(
      text, -2.0, judge, rhyme)
  clean = '天地你我 雪月风花 秋冬我地 '
  loop = '天地你我 天地你我 天地你我 '
  copy = TRAIN.replace(' ', '')[:10] + ' 雪月 天地你我 '
  one_char = '天 地 你 我 '
  assert _longest_training_run(copy) >= realism.COPY_N
  for worse in (loop, copy, one_char):
    assert score(worse) < score(clean), worse
  assert score(clean) == -2.0  # Nothing to penalise.
  # With rhyme on, lines that rhyme (边 天 前) beat lines that do not.
  rhymed, unrhymed = '风花边 雪月天 秋冬前 ', '风花我 雪月冬 秋冬花 '
  assert score(rhymed, True) == -2.0 > score(unrhymed, True)
  assert score(unrhymed, False) == -2.0


# ------------------------------------------------------------ line writer


def _written_lines(text):
  """The complete lines of a line writer's text (the seed's first one
  included), the trailing break dropped."""
  assert text.endswith(' ')
  return text[:-1].split(' ')


def test_length_weight_reaches_the_line_writer(uniform):
  """Every character equally likely and a break 3 times as likely: a line's
  mean log-probability per character is highest for the shortest line, so
  with length_weight=0 the writer keeps one-character lines (two-character
  ones once those are used up), and with the weight on it keeps the
  training text's only line length, 5."""
  params = uniform(space_weight=3.0)
  train = _made_up_text('春夏秋冬风花', 60, 1)
  train = ' '.join(line[:5] for line in train.split(' ') if len(line) >= 5)
  config = dataclasses.replace(OFF, max_line=10, lines=9)
  lengths = {}
  for weight in (0.0, 1.0):
    writer = jl.LineConfig(candidates=64, rhyme_scheme='free',
                           length_weight=weight)
    text, = jl.sample_text(params, MODEL, VOCAB, SEED, jax.random.key(5),
                           120, config, train_text=train + ' ',
                           writer=writer)
    lengths[weight] = [len(line) for line in _written_lines(text)]
    assert len(lengths[weight]) == 9, text
  assert max(lengths[0.0]) <= 2, lengths
  assert lengths[1.0].count(5) >= 8, lengths


def test_rhyme_scheme_reaches_the_line_writer(uniform):
  """rhyme='i' (地 你 of these characters): with the AAAA scheme every line
  ends on it, alternating 地 and 你 (a rhyme differs from the last line's
  end); with the free scheme the line ends follow the model (each of the
  six characters as likely)."""
  params = uniform('春夏秋冬地你', space_weight=2.0)
  config = dataclasses.replace(OFF, rhyme='i', max_line=8, lines=12)
  ends = {}
  for scheme in ('AAAA', 'free'):
    writer = jl.LineConfig(candidates=64, rhyme_scheme=scheme,
                           rhyme_weight=math.inf)
    text, = jl.sample_text(params, MODEL, VOCAB, SEED, jax.random.key(6),
                           150, config, train_text=TRAIN, writer=writer)
    ends[scheme] = [line[-1] for line in _written_lines(text)]
    assert len(ends[scheme]) == 12, text
  assert set(ends['AAAA']) == {'地', '你'}, ends
  assert all(a != b for a, b in zip(ends['AAAA'], ends['AAAA'][1:])), ends
  assert sum(end in '地你' for end in ends['free']) <= 8, ends


def test_rhyme_weight_reaches_the_line_writer(uniform):
  """Every line of one length is as likely, so a line's score is set by its
  length (no penalty for lines near the training text's). rhyme_weight=0:
  rhyme only breaks ties, so nearly every line has the best-scoring length
  (not all: 64 candidates may not reach it) and some do not rhyme; inf:
  every line rhymes (地 你), whatever its length."""
  params = uniform('春夏秋冬地你', space_weight=2.0)
  config = dataclasses.replace(OFF, rhyme='i', max_line=8, lines=12)
  lines = {}
  for weight in (0.0, math.inf):
    writer = jl.LineConfig(candidates=64, rhyme_scheme='AAAA',
                           rhyme_weight=weight, recital_penalty=0.0,
                           bent_penalty=0.0)
    text, = jl.sample_text(params, MODEL, VOCAB, SEED, jax.random.key(6),
                           150, config, train_text=TRAIN, writer=writer)
    lines[weight] = _written_lines(text)[1:]
    assert len(lines[weight]) == 11, text
  same_length = {w: max(collections.Counter(map(len, ls)).values())
                 for w, ls in lines.items()}
  assert same_length[0.0] >= 9 > same_length[math.inf], lines
  assert all(line[-1] in '地你' for line in lines[math.inf]), lines
  assert sum(line[-1] in '地你' for line in lines[0.0]) <= 8, lines


def test_seek_bonus_reaches_the_line_writer(uniform):
  """Two candidates, a line kept rhyming whenever one rhymes: about half
  the lines rhyme without seekers (each candidate ends on 地 or 你 one
  time in three); with one seeker drawing them 7.4 times as often as
  another character (a bonus of 2 logits), most do."""
  params = uniform('春夏秋冬地你', space_weight=2.0)
  config = dataclasses.replace(OFF, rhyme='i', max_line=8, lines=12)
  rhyming = {}
  for bonus in (0.0, 2.0):
    writer = jl.LineConfig(candidates=2, rhyme_scheme='AAAA',
                           rhyme_weight=math.inf, seek_bonus=bonus)
    texts = jl.sample_text(params, MODEL, VOCAB, SEED, jax.random.key(2),
                           150, config, num_samples=4, train_text=TRAIN,
                           writer=writer)
    lines = [line for text in texts for line in _written_lines(text)[1:]
             if line]  # (When neither is allowed, one may be empty.)
    rhyming[bonus] = sum(line[-1] in '地你' for line in lines) / len(lines)
  print(rhyming)
  assert rhyming[2.0] > rhyming[0.0] + 0.2, rhyming


def test_a_right_to_left_model_rhymes_its_line_ends(uniform):
  """A right-to-left model draws each line from its end, so the rhyme
  (and the seekers' bonus) falls on the first character drawn, which is
  the line's last once turned back: most lines end on 地 or 你, far more
  than start on them (wired the other way round, it is the reverse)."""
  params = uniform('春夏秋冬地你', space_weight=2.0)
  config = dataclasses.replace(OFF, rhyme='i', max_line=8, lines=12)
  writer = jl.LineConfig(candidates=2, rhyme_scheme='AAAA',
                         rhyme_weight=math.inf, seek_bonus=2.0)
  texts = jl.sample_text(params, dataclasses.replace(MODEL, right_to_left=True),
                         VOCAB, SEED, jax.random.key(2), 150, config,
                         num_samples=4, train_text=TRAIN, writer=writer)
  lines = [line for text in texts for line in _written_lines(text)[1:]
           if line]
  ends = sum(line[-1] in '地你' for line in lines) / len(lines)
  starts = sum(line[0] in '地你' for line in lines) / len(lines)
  assert ends > 0.6 and ends > starts + 0.15, (ends, starts)


def test_text_key_folds_the_seed_text_into_the_rng_seed():
  data = lambda key: jax.random.key_data(key).tolist()
  assert data(jl.text_key(3, '从前')) == data(jl.text_key(3, '从前'))
  assert data(jl.text_key(3, '从前')) != data(jl.text_key(3, '天空'))
  assert data(jl.text_key(3, '从前')) != data(jl.text_key(4, '从前'))
  assert data(jl.text_key(3, '从前')) != data(jax.random.key(3))
