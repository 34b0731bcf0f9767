"""The line writer: whole candidate lines, one kept by its documented score.

Stub models give every candidate a different line from the same state, so
each test can recompute, on the host, which candidate the documented rule
must keep, and check that the writer kept it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaylyrics_jax as jl
from jaylyrics_jax.config import LineConfig
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.generation import line_writer
from jaylyrics_jax.generation import processors
from jaylyrics_jax.generation.songwriter import Songwriter
from jaylyrics_jax.generation.sampler import DecodeState
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.scoring import mixture
from jaylyrics_jax.scoring import ngram
from jaylyrics_jax.scoring import realism

# ' ' is id 0; 天 边 前 rhyme (an group), 你 雨 rhyme (i group), the rest not.
CHARS = (' ', '天', '边', '前', '你', '雨', '我', '他', '的', '风', '花')
VOCAB = Vocabulary(CHARS)
V = len(CHARS)
MAX_LEN = 6
TRAIN = '我的天 你的雨 他的风 风花雪 我和你的天边 天 我他你 花的前 '
BREAK_WEIGHT = 0.5
NGRAM = ngram.fit_kneser_ney(VOCAB.encode(TRAIN, unknown='skip'), V, order=3)
NGRAM_TABLES = mixture.kneser_ney_tables(NGRAM)


def _stub(break_logit):
  """Random logits from the step count and the token just read (so the
  candidates differ), with the line break at `break_logit`."""
  def step(carry, token):
    key = jax.random.fold_in(jax.random.key(7), carry * V + token)
    logits = jax.random.normal(key, (V,)) * 1.5
    return logits.at[0].set(break_logit), carry + 1
  return step


def _tables(first_group=-1, avoid=(), weight=1.0, recited=(), penalty=0.0,
            likelihood=1.0, novelty=0.0, bent=0.0, rhyme_weight=np.inf,
            seek=0.0):
  """recited: lines (id tuples) that count as training lines, each as
  many times as it is listed."""
  prior = line_writer.length_prior(TRAIN, MAX_LEN)
  avoid_ids = np.full(MAX_LEN + 1, -1, np.int32)
  avoid_ids[:len(avoid)] = avoid
  lines = ' '.join(VOCAB.decode(np.asarray(line)) for line in recited)
  hashes, weights = line_writer.training_line_hashes(lines + ' ', VOCAB,
                                                     MAX_LEN)
  return line_writer.LineTables(
      rhyme_of=jnp.asarray(rhyme.rhyme_table(CHARS)),
      length_prior=jnp.asarray(prior),
      likelihood_weight=jnp.float32(likelihood),
      length_weight=jnp.float32(weight),
      break_weight=jnp.float32(BREAK_WEIGHT),
      targets=jnp.asarray([first_group, -1], jnp.int32),
      avoid=jnp.asarray(avoid_ids),
      train_lines=jnp.asarray(hashes),
      recital_weights=jnp.asarray(weights),
      recital_penalty=jnp.float32(penalty),
      train_deletions=jnp.asarray(line_writer.training_deletion_hashes(
          lines + ' ', VOCAB, MAX_LEN)),
      bent_penalty=jnp.float32(bent),
      novelty_weight=jnp.float32(novelty),
      rhyme_weight=jnp.float32(rhyme_weight),
      seek_bonus=jnp.float32(seek),
      ngram=NGRAM_TABLES if novelty else None)


def _write(step, key, tables, pattern=(), k=8, line_len=0, prev_end=-1,
           min_len=1, chain=processors.Chain(), reverse=False):
  spec = line_writer.LineSpec(0, MAX_LEN, k, pattern, min_len,
                              float(tables.seek_bonus) > 0, reverse)
  procs = (None,) * len(chain.processors)
  grams = jnp.full((2 if tables.ngram is not None else 0,), -1, jnp.int32)
  state = line_writer.VerseState(
      DecodeState(jnp.int32(0), jnp.int32(6), chain.init(procs)),
      tables.targets, jnp.int32(prev_end), jnp.int32(0), jnp.int32(line_len),
      line_writer.empty_seen(), grams)
  keys = jax.random.split(jax.random.key(key), k * spec.steps).reshape(
      k, spec.steps)
  fn = jax.jit(lambda s, ks: line_writer.write_line(
      step, chain, procs, tables, s, ks, spec))
  return jax.tree.map(np.asarray, fn(state, keys))


def _is_bent(ids, train_text):
  """The report's bent line, on the host (False without a text)."""
  if train_text is None:
    return False
  judge = realism.make_judge(train_text, VOCAB, fluency=False)
  return realism.is_bent(VOCAB.decode(np.asarray(ids)), judge.lines,
                         judge.deletions)


def _host_view(choice, tables, recited=(), penalty=0.0, bent_text=None,
               bent=0.0):
  """Per candidate, from the drawn tokens and log-probabilities alone:
  (allowed: a break within MAX_LEN, no character three times in a row;
  length, documented score, last character). A candidate listed n times
  in `recited` loses penalty * log2(1 + n), one bent from a line of
  `bent_text` loses `bent`; with a novelty weight, the host n-gram's mean
  surprise of the candidate (read after the state's token, 6) counts."""
  likelihood = float(tables.likelihood_weight)
  novelty = float(tables.novelty_weight)
  prior = np.asarray(tables.length_prior)
  weight = float(tables.length_weight)
  out = []
  for toks, lps in zip(choice.tokens, choice.log_probs):
    breaks = np.flatnonzero(toks == 0)
    if not len(breaks) or breaks[0] > MAX_LEN:
      out.append((False, None, None, None))
      continue
    n = breaks[0]
    surprise = -NGRAM.stream_log_probs(np.r_[6, toks[:n]], toks[:n + 1])
    score = (likelihood * lps[:n + 1].mean() + BREAK_WEIGHT * lps[n] +
             novelty * surprise.mean() - bent * _is_bent(toks[:n], bent_text) +
             weight * prior[min(n, MAX_LEN)] -
             penalty * np.log2(1 + list(recited).count(tuple(toks[:n]))))
    stutters = any(toks[i] == toks[i + 1] == toks[i + 2]
                   for i in range(n - 2))
    out.append((n >= 1 and not stutters, n, score,
                toks[n - 1] if n else None))
  return out


@pytest.mark.parametrize('weight,likelihood,novelty',
                         [(1.0, 1.0, 0.0), (3.0, 1.0, 0.0), (1.0, 0.0, 0.0),
                          (1.0, 1.0, 2.0), (0.0, 0.5, 1.0)])
@pytest.mark.parametrize('key', range(6))
def test_keeps_the_best_scoring_candidate(key, weight, likelihood, novelty):
  tables = _tables(weight=weight, likelihood=likelihood, novelty=novelty)
  _, choice = _write(_stub(1.0), key, tables)
  view = _host_view(choice, tables)
  scores = [s if ok else -np.inf for ok, _, s, _ in view]
  assert any(ok for ok, *_ in view)
  assert int(choice.best) == int(np.argmax(scores))
  for (ok, _, s, _), device in zip(view, choice.scores):
    if ok:
      assert device == pytest.approx(s, abs=1e-5)
  # The kept line is that candidate's characters and its break.
  n = view[int(choice.best)][1]
  assert int(choice.keep) == n + 1 and not choice.capped
  np.testing.assert_array_equal(choice.line[:n + 1],
                                choice.tokens[choice.best][:n + 1])


@pytest.mark.parametrize('break_logit', [1.0, -np.inf])
@pytest.mark.parametrize('key', range(3))
def test_the_ngram_state_follows_the_kept_line(key, break_logit):
  # The next line's surprise is read after exactly the kept line: the
  # n-gram ids after the state's token (6) and the kept characters, the
  # break not yet read (ended and capped lines).
  new, choice = _write(_stub(break_logit), key, _tables(novelty=1.0))
  grams = jnp.full((2,), -1, jnp.int32)
  for token in [6] + [int(t) for t in choice.line[:int(choice.keep) - 1]]:
    grams = mixture.kneser_ney_step(NGRAM_TABLES, grams, token)[1]
  np.testing.assert_array_equal(new.grams, grams)
  assert bool(choice.capped) == (break_logit == -np.inf)


def test_the_seed_primes_the_ngram_state_padding_skipped():
  seed = VOCAB.encode('我的天 你的')
  for pad in (0, 4):
    ids = jnp.asarray(np.pad(seed, (0, pad)), jnp.int32)
    got = line_writer.seed_grams(NGRAM_TABLES, ids, jnp.int32(len(seed)))
    grams = jnp.full((2,), -1, jnp.int32)
    for token in seed[:-1]:  # The last one is the decode state's token.
      grams = mixture.kneser_ney_step(NGRAM_TABLES, grams, int(token))[1]
    np.testing.assert_array_equal(got, grams)
  assert line_writer.seed_grams(None, ids, jnp.int32(2)).shape == (0,)


@pytest.mark.parametrize('key', range(4))
def test_a_recited_line_loses_the_recital_penalty(key):
  # The line kept without a penalty, made a training line (once, or three
  # times: a chorus, which loses log2(4) = 2 penalties): with the penalty,
  # the best of the others by the documented score is kept.
  _, plain = _write(_stub(1.0), key, _tables())
  line = tuple(int(t) for t in plain.line[:int(plain.keep) - 1])
  for times in (1, 3):
    recited = [line] * times
    for penalty in (0.0, 0.3, 50.0):
      tables = _tables(recited=recited, penalty=penalty)
      _, choice = _write(_stub(1.0), key, tables)
      view = _host_view(choice, tables, recited, penalty)
      scores = [s if ok else -np.inf for ok, _, s, _ in view]
      assert int(choice.best) == int(np.argmax(scores))
      for (ok, _, s, _), device in zip(view, choice.scores):
        if ok:
          assert device == pytest.approx(s, abs=1e-5)
      kept = tuple(int(t) for t in choice.line[:int(choice.keep) - 1])
      if penalty != 0.3:
        assert (kept == line) == (penalty == 0.0)


@pytest.mark.parametrize('key', range(4))
def test_a_bent_line_loses_the_bent_penalty(key):
  # The line kept without a penalty (4+ characters), made one character
  # away from a training line: with the penalty, the best of the others
  # by the documented score is kept.
  for k in range(key, key + 20):
    _, plain = _write(_stub(1.0), k, _tables())
    if int(plain.keep) - 1 >= line_writer.BENT_MIN:
      break
  kept = [int(t) for t in plain.line[:int(plain.keep) - 1]]
  changed = kept[:1] + [(kept[1] % (V - 1)) + 1] + kept[2:]  # Not 0: no break.
  text = VOCAB.decode(np.asarray(changed)) + ' '
  for penalty in (0.0, 50.0):
    tables = _tables(recited=[tuple(changed)], bent=penalty)
    tables = tables.replace(train_lines=jnp.asarray(
        line_writer.training_line_hashes(text, VOCAB, MAX_LEN)[0]),
        train_deletions=jnp.asarray(line_writer.training_deletion_hashes(
            text, VOCAB, MAX_LEN)))
    _, choice = _write(_stub(1.0), k, tables)
    view = _host_view(choice, tables, bent_text=text, bent=penalty)
    scores = [s if ok else -np.inf for ok, _, s, _ in view]
    assert int(choice.best) == int(np.argmax(scores))
    for (ok, _, s, _), device in zip(view, choice.scores):
      if ok:
        assert device == pytest.approx(s, abs=1e-5)
    now = [int(t) for t in choice.line[:int(choice.keep) - 1]]
    assert (now == kept) == (penalty == 0.0)


def test_bent_lines_on_the_device_are_the_reports():
  train = '我的天边 你的雨 他的风花 天边的我他 我他 '
  judge = realism.make_judge(train, VOCAB, fluency=False)
  lines = ['我的天前', '我天边', '我的天边你', '你我的天边', '我的天边',
           '的我天边', '你的雨', '你雨', '他的风', '他你的风花', '天边的我你',
           '我他的', '天的我他', '花花花花']
  rng = np.random.default_rng(0)
  lines += [VOCAB.decode(rng.integers(1, V, rng.integers(1, 7)))
            for _ in range(200)]
  ids = [VOCAB.encode(line) for line in lines]
  tokens = np.zeros((len(ids), MAX_LEN + 1), np.int32)
  for i, row in enumerate(ids):
    tokens[i, :len(row)] = row
  length = jnp.asarray([len(row) for row in ids], jnp.int32)
  tokens = jnp.asarray(tokens)
  got = line_writer.bent_lines(
      tokens, length, line_writer.line_hash(tokens, length),
      jnp.asarray(line_writer.training_line_hashes(train, VOCAB,
                                                   MAX_LEN)[0]),
      jnp.asarray(line_writer.training_deletion_hashes(train, VOCAB,
                                                       MAX_LEN)))
  want = [realism.is_bent(line, judge.lines, judge.deletions)
          for line in lines]
  np.testing.assert_array_equal(np.asarray(got), want)
  # Changed, dropped, added, swapped: bent; the line itself, near copies
  # of a 3-character training line and unrelated lines: not.
  assert want[:14] == [True, True, True, True, False, True, False, False,
                       True, True, True, False, True, False]


def test_the_recital_tables_come_from_the_training_lines():
  config = SamplingConfig()
  tables = line_writer.make_line_tables(
      VOCAB, config, LineConfig(recital_penalty=2.5, bent_penalty=0.75),
      TRAIN, MAX_LEN, 0, '')
  assert float(tables.recital_penalty) == 2.5
  assert float(tables.bent_penalty) == 0.75
  np.testing.assert_array_equal(
      tables.train_deletions,
      line_writer.training_deletion_hashes(TRAIN, VOCAB, MAX_LEN))
  # Lines with a character outside the vocabulary (风花雪) are left out.
  ids = [VOCAB.encode(line) for line in TRAIN.split()
         if all(ch in CHARS for ch in line)]
  assert 0 < len(ids) < len(TRAIN.split())
  width = max(map(len, ids))
  padded = np.asarray([list(i) + [0] * (width - len(i)) for i in ids])
  expected = line_writer.line_hash(jnp.asarray(padded),
                                   jnp.asarray([len(i) for i in ids]))
  assert set(np.asarray(tables.train_lines)) == set(np.asarray(expected))
  # Each weighs log2(1 + how many times the text has it): 我的天 three
  # times, the others once.
  hashes, weights = line_writer.training_line_hashes(
      TRAIN + '我的天 我的天 ', VOCAB, MAX_LEN)
  np.testing.assert_array_equal(hashes, np.sort(np.asarray(expected)))
  chorus = int(line_writer.line_hash(jnp.asarray([VOCAB.encode('我的天')]),
                                     jnp.asarray([3]))[0])
  np.testing.assert_allclose(weights, np.where(hashes == chorus, 2.0, 1.0))
  np.testing.assert_array_equal(
      tables.recital_weights,
      line_writer.training_line_hashes(TRAIN, VOCAB, MAX_LEN)[1])


def test_no_capped_line_is_kept_while_an_uncapped_one_exists():
  tables = _tables()
  seen_mixed = seen_all_capped = 0
  for key in range(30):  # A rare break: most candidates run past the cap.
    _, choice = _write(_stub(-2.0), key, tables)
    view = _host_view(choice, tables)
    if any(ok for ok, *_ in view):
      seen_mixed += not all(ok for ok, *_ in view)
      assert not choice.capped and view[int(choice.best)][0]
    else:
      seen_all_capped += 1
      assert choice.capped and int(choice.keep) == MAX_LEN + 1
      assert choice.line[MAX_LEN] == 0  # Cut at the longest line.
  assert seen_mixed and seen_all_capped


@pytest.mark.parametrize('break_logit', [1.0, -2.0, -np.inf])
def test_the_state_kept_from_the_draw_is_the_chosen_line_read_again(
    monkeypatch, break_logit):
  # The next line starts from the chosen line's end: taken from the draw
  # (a small state) or by reading the line again (a big one) alike, for
  # lines that end and lines cut at the cap (-inf: every one is).
  chain = processors.Chain((processors.NoRepeat(2, 0, 32),
                            processors.LineForm(0, 0, MAX_LEN)))
  tables, capped = _tables(), set()
  for key in range(4):
    kept, choice = _write(_stub(break_logit), key, tables, chain=chain)
    monkeypatch.setattr(line_writer, 'KEEP_STATES_BYTES', -1)
    read, again = _write(_stub(break_logit), key, tables, chain=chain)
    monkeypatch.undo()
    capped.add(bool(choice.capped))
    np.testing.assert_array_equal(choice.line, again.line)
    assert int(kept.decode.token) == 0  # The break, not yet read.
    jax.tree.map(np.testing.assert_array_equal, kept, read)
  assert capped == ({True} if break_logit == -np.inf else {False})


def test_a_line_shorter_than_min_len_fails_and_is_never_padded():
  # A likely break: most candidates end after 0-2 characters.
  tables = _tables()
  allowed_seen = none_allowed = 0
  for key in range(20):
    _, choice = _write(_stub(3.0), key, tables, min_len=3)
    view = _host_view(choice, tables)
    allowed = [ok and n >= 3 for ok, n, _, _ in view]
    keep = int(choice.keep)
    # The kept line has one break, at its end, whatever was allowed.
    assert list(choice.line[:keep]).count(0) == 1 and choice.line[keep - 1] == 0
    if any(allowed):
      allowed_seen += 1
      assert allowed[int(choice.best)] and keep - 1 >= 3
    else:
      none_allowed += 1
      assert not choice.capped  # It ended: kept as written, not cut.
  assert allowed_seen and none_allowed


def test_every_kept_line_rhymes_when_any_candidate_does():
  group = int(rhyme.rhyme_table(CHARS)[1])  # 天's group: 天 边 前.
  tables = _tables(first_group=group)
  rhymed = lost_on_score = 0
  for key in range(30):
    _, choice = _write(_stub(0.5), key, tables, pattern=(0,))
    view = _host_view(choice, tables)
    rhyming = [ok and last in (1, 2, 3) for ok, _, _, last in view]
    if any(rhyming):
      rhymed += 1
      assert rhyming[int(choice.best)]
      best_any = max(s for ok, _, s, _ in view if ok)
      lost_on_score += view[int(choice.best)][2] < best_any
  assert rhymed >= 5 and lost_on_score >= 1  # Rhyme beat a better score.


@pytest.mark.parametrize('weight', [0.0, 0.3, 1.0])
def test_a_finite_rhyme_weight_adds_to_the_score_of_a_rhyming_line(weight):
  # The kept line is the allowed one with the best score + weight if it
  # rhymes: a rhyming line may score up to `weight` worse and still win,
  # and a line that does not rhyme wins when it scores better than that.
  group = int(rhyme.rhyme_table(CHARS)[1])
  tables = _tables(first_group=group, rhyme_weight=weight)
  rhyme_won = score_won = 0
  for key in range(30):
    _, choice = _write(_stub(0.5), key, tables, pattern=(0,))
    view = _host_view(choice, tables)
    if not any(ok for ok, *_ in view):
      continue  # Capped: the earlier test covers it.
    rhyming = [ok and last in (1, 2, 3) for ok, _, _, last in view]
    total = [s + weight * r if ok else -np.inf
             for (ok, _, s, _), r in zip(view, rhyming)]
    assert int(choice.best) == int(np.argmax(total))
    best_plain = int(np.argmax([s if ok else -np.inf for ok, _, s, _ in view]))
    if rhyming[int(choice.best)] and not rhyming[best_plain]:
      rhyme_won += 1
    if any(rhyming) and not rhyming[int(choice.best)]:
      score_won += 1
  assert score_won >= 1
  assert rhyme_won >= 1 if weight else rhyme_won == 0


@pytest.mark.parametrize('line_len', [0, 2])
def test_the_rhyme_seekers_draw_the_group_and_are_scored_without_the_bonus(
    line_len):
  # A bonus of 30 logits: the seekers (the first half) draw a character of
  # the group (天 边 前) at every step where a line ending on it would have
  # min_len characters, and as without the bonus before that; the other
  # half draws exactly as without it. Every log-probability is the stub's
  # own, the bonus left out.
  group, min_len, k = int(rhyme.rhyme_table(CHARS)[1]), 4, 8
  step = _stub(0.5)
  plain = _write(step, 3, _tables(first_group=group), pattern=(0,), k=k,
                 line_len=line_len, min_len=min_len)[1]
  seek = _write(step, 3, _tables(first_group=group, seek=30.0), pattern=(0,),
                k=k, line_len=line_len, min_len=min_len)[1]
  start = min_len - 1 - line_len  # The first step a line may end after.
  np.testing.assert_array_equal(seek.tokens[k // 2:], plain.tokens[k // 2:])
  np.testing.assert_array_equal(seek.tokens[:k // 2, :start],
                                plain.tokens[:k // 2, :start])
  assert set(seek.tokens[:k // 2, start:].ravel()) <= {1, 2, 3}
  for toks, lps in zip(seek.tokens, seek.log_probs):
    token = 6
    for i, (t, lp) in enumerate(zip(toks, lps)):
      logits = step(jnp.int32(i), jnp.int32(token))[0]
      assert lp == pytest.approx(float(jax.nn.log_softmax(logits)[t]),
                                 abs=1e-5)
      token = t
  # Without a group for the line (the free scheme) nobody seeks.
  free = _write(step, 3, _tables(first_group=group, seek=30.0), k=k,
                line_len=line_len, min_len=min_len)[1]
  np.testing.assert_array_equal(free.tokens, plain.tokens)


def test_a_right_to_left_line_rhymes_on_the_first_character_drawn():
  # A right-to-left model draws a line from its end: the character that
  # rhymes is the first one drawn, and the next line must not end on the
  # same one. With rhyme ranked first, the kept line's first character is
  # in the group whenever an allowed candidate's is.
  group = int(rhyme.rhyme_table(CHARS)[1])  # 天 边 前.
  tables = _tables(first_group=group)
  rhymed = 0
  for key in range(20):
    state, choice = _write(_stub(0.5), key, tables, pattern=(0,),
                           prev_end=2, reverse=True)
    view = _host_view(choice, tables)
    rhyming = [ok and toks[0] in (1, 3)  # 边 (2) ended the line before.
               for (ok, *_), toks in zip(view, choice.tokens)]
    np.testing.assert_array_equal(
        choice.rhymes, [toks[0] in (1, 3) for toks in choice.tokens])
    best = int(choice.best)
    if any(rhyming):
      rhymed += 1
      assert rhyming[best]
    assert int(state.prev_end) == choice.tokens[best, 0]
  assert rhymed >= 5


def test_right_to_left_seekers_draw_the_group_first_only():
  # Reversed, the seekers' bonus is on the first character drawn (the
  # line's last) and nowhere else; it stays out of the log-probabilities.
  group, k = int(rhyme.rhyme_table(CHARS)[1]), 8
  step = _stub(0.5)
  plain = _write(step, 3, _tables(first_group=group), pattern=(0,), k=k,
                 min_len=4, reverse=True)[1]
  seek = _write(step, 3, _tables(first_group=group, seek=30.0), pattern=(0,),
                k=k, min_len=4, reverse=True)[1]
  np.testing.assert_array_equal(seek.tokens[k // 2:], plain.tokens[k // 2:])
  assert set(seek.tokens[:k // 2, 0]) <= {1, 2, 3}
  later = seek.tokens[:k // 2, 1:]
  assert not set(later.ravel()) <= {1, 2, 3}  # No bonus after the first.
  logits = step(jnp.int32(0), jnp.int32(6))[0]
  np.testing.assert_allclose(
      seek.log_probs[:, 0],
      np.asarray(jax.nn.log_softmax(logits))[seek.tokens[:, 0]], atol=1e-5)


def test_a_rewrite_never_keeps_the_line_it_replaces():
  tables = _tables()
  _, first = _write(_stub(1.0), 3, tables)
  old = first.line[:int(first.keep)]
  _, again = _write(_stub(1.0), 3, _tables(avoid=old))
  assert not np.array_equal(again.line[:int(again.keep)], old)


@pytest.fixture(scope='module')
def tiny_model():
  config = ModelConfig(vocab_size=V, embedding_size=8, rnn_size=16,
                       num_layers=1)
  return init_params(config, jax.random.key(0)), config


def _sample(tiny_model, key, writer=LineConfig(candidates=4),
            run_mixture=None, **kwargs):
  params, config = tiny_model
  sampling = SamplingConfig(max_copy=0, **kwargs)
  return jl.sample_text(params, config, VOCAB, '我的', jax.random.key(key),
                        length=60, config=sampling, num_samples=2,
                        train_text=TRAIN, writer=writer, mixture=run_mixture)


def test_same_key_same_verse(tiny_model):
  a, b = _sample(tiny_model, 1), _sample(tiny_model, 1)
  assert a == b and a != _sample(tiny_model, 2)
  for text in a:  # Whole lines only, within the length and line bounds.
    assert text.startswith('我的') and text.endswith(' ')
    assert len(text) - 2 <= 60
    assert all(len(line) <= 13 for line in text.split(' '))


def test_break_weight_prefers_lines_the_model_ends(tiny_model):
  # Through sample_text: with a heavy weight on the break's log-probability
  # other lines are kept (the same key draws the same candidates), ending
  # where the model's break is likelier. (The untrained model is nearly
  # uniform, so the gap is small; the score itself is checked above.)
  params, config = tiny_model
  mean_break, kept = {}, {}
  for weight in (0.0, 20.0):
    texts = kept[weight] = _sample(tiny_model, 5, LineConfig(
        candidates=8, break_weight=weight))
    breaks = []
    for text in texts:
      ids = VOCAB.encode(text)
      logits, _ = CharLM(config).apply(
          {'params': params}, jnp.asarray(ids)[None, :-1],
          zero_carries(config, 1))
      log_probs = np.asarray(jax.nn.log_softmax(logits[0]))[:, 0]
      breaks += list(log_probs[np.asarray(ids[1:]) == 0])
    mean_break[weight] = np.mean(breaks)
  assert kept[0.0] != kept[20.0]
  assert mean_break[20.0] > mean_break[0.0]


def _model_log_probs(tiny_model, text):
  """The tiny model's log-probability of each character after the seed's
  first (the line breaks included)."""
  params, config = tiny_model
  ids = VOCAB.encode(text)
  logits, _ = CharLM(config).apply({'params': params},
                                   jnp.asarray(ids)[None, :-1],
                                   zero_carries(config, 1))
  log_probs = np.asarray(jax.nn.log_softmax(logits[0]))
  return log_probs[np.arange(len(ids) - 1), ids[1:]], np.asarray(ids[1:])


def test_likelihood_weight_prefers_lines_the_model_finds_likely(tiny_model):
  kept, mean = {}, {}
  for weight in (0.0, 20.0):
    texts = kept[weight] = _sample(tiny_model, 6, LineConfig(
        candidates=8, likelihood_weight=weight))
    mean[weight] = np.mean(np.concatenate(
        [_model_log_probs(tiny_model, t)[0][1:] for t in texts]))
  assert kept[0.0] != kept[20.0]
  assert mean[20.0] > mean[0.0]


def test_novelty_weight_prefers_lines_the_ngram_finds_new(tiny_model):
  # Through sample_text: the run's n-gram comes with its mixture (drawn
  # from or not); with a heavy novelty weight the kept lines are the
  # ones the training text's n-gram finds least likely.
  run_mixture = mixture.DeviceMixture(mixture.MixtureSpec(), NGRAM_TABLES)
  kept, surprise = {}, {}
  for weight in (0.0, 20.0):
    texts = kept[weight] = _sample(
        tiny_model, 6, LineConfig(candidates=8, novelty_weight=weight),
        mixture='model', run_mixture=run_mixture)
    surprise[weight] = np.mean(np.concatenate(
        [-NGRAM.stream_log_probs(VOCAB.encode(t)[1:-1], VOCAB.encode(t)[2:])
         for t in texts]))
  assert kept[0.0] != kept[20.0]
  assert surprise[20.0] > surprise[0.0]
  with pytest.raises(jl.JaylyricsError, match='novelty_weight=1.0 needs'):
    _sample(tiny_model, 6, LineConfig(candidates=8, novelty_weight=1.0))


def test_lines_count_the_seed_and_no_line_comes_twice(tiny_model):
  texts = _sample(tiny_model, 4, lines=12)
  for text in texts:
    lines = realism.complete_lines(text)
    assert len(lines) == 12
    assert len(set(lines[1:])) == len(lines[1:])


def test_the_songwriter_writes_whole_lines_and_rewrites_a_new_one(
    tiny_model):
  params, config = tiny_model
  model = jl.LoadedModel(params, config, VOCAB, {}, 0)
  writer = Songwriter(model, None, TRAIN, SamplingConfig(max_copy=0),
                         writer=LineConfig(candidates=4))
  song = writer.write('我的', lines=6, rng_seed=1)
  texts = [line.text for line in song.lines]
  assert len(texts) == 6 and texts[0].startswith('我的')
  for index in (0, 3):
    new = [line.text for line in
           writer.rewrite_line(texts, index, '我的', rng_seed=2).lines]
    assert new[index] != texts[index]
    assert new[:index] + new[index + 1:] == texts[:index] + texts[index + 1:]


def test_finished_lines_count_lines_that_end_on_a_word():
  judge = realism.make_judge(TRAIN, VOCAB)
  # 天空 and 世界 are dictionary words; 我可以电 ends on a fragment.
  whole = realism.report(['我的天空 你的世界 '], judge)
  cut = realism.report(['我的天空 我可以电 '], judge)
  assert whole['finished_lines'] == 1.0 and cut['finished_lines'] == 0.5
  assert whole['word_chars'] == 0.5  # 天空 世界: 4 of 8 characters.
  quick = realism.report(['我的天空 '], realism.make_judge(TRAIN, VOCAB,
                                                          fluency=False))
  assert np.isnan(quick['finished_lines'])


def test_bent_lines_count_near_copies_of_training_lines_after_the_first():
  judge = realism.make_judge(TRAIN, VOCAB, fluency=False)
  # After the first: 我你的天边 is 我和你的天边 with one dropped (bent);
  # 我和你的前 is two away; 天我他你 is one added to 我他你, a 3-character
  # line; 你的雨 is whole.
  figures = realism.report(['我的天 我和你的前 我你的天边 天我他你 你的雨 '],
                           judge)
  assert figures['bent_lines'] == pytest.approx(1 / 4)


def test_training_lines_count_whole_recited_lines_after_the_first():
  judge = realism.make_judge(TRAIN, VOCAB, fluency=False)
  # 我的天 (first: holds the seed) and 你的雨 are training lines; 你的 is
  # only part of one; the cut-off last line does not count.
  figures = realism.report(['我的天 你的雨 你的 他的风', '天 花的前 '], judge)
  assert figures['training_lines'] == pytest.approx(2 / 3)
  assert figures['chorus_lines'] == 0.0


def test_chorus_lines_count_training_lines_the_text_has_three_times():
  # 你的雨 three times in the training text: a chorus; 我的天 twice and
  # 花的前 once: not; the first line (the seed's) never counts.
  train = TRAIN + '你的雨 你的雨 我的天 '
  judge = realism.make_judge(train, VOCAB, fluency=False)
  figures = realism.report(['你的雨 你的雨 我的天 花的前 他 '], judge)
  assert figures['chorus_lines'] == pytest.approx(1 / 4)
  assert figures['training_lines'] == pytest.approx(3 / 4)
