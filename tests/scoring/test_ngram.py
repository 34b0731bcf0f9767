"""Tests for jaylyrics_jax.scoring.ngram: Kneser-Ney and cache character models."""

import collections
import math
import os
import time

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from conftest import SHARED_CORPUS
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.scoring import ngram

CORPUS = SHARED_CORPUS


def _random_corpus(n=400, vocab_size=12, seed=0):
  """<int32>[n] ids from a skewed distribution, so that n-grams repeat."""
  rng = np.random.default_rng(seed)
  weights = 1.0 / np.arange(1, vocab_size + 1)
  return rng.choice(vocab_size, n, p=weights / weights.sum()).astype(np.int32)


def _random_contexts(rng, vocab_size, count=30, max_len=10):
  return [rng.integers(0, vocab_size, rng.integers(0, max_len + 1))
          for _ in range(count)]


def _reference_probability(ids, vocab_size, order, context, w):
  """Kneser-Ney p(w | context) straight from the definition, with tuples."""
  ids = [int(i) for i in ids]
  n = len(ids)
  raw = [collections.Counter() for _ in range(order + 1)]
  for k in range(1, order + 1):
    for i in range(k - 1, n):
      raw[k][tuple(ids[i - k + 1:i + 1])] += 1
  counts = [None] * (order + 1)
  counts[order] = raw[order]
  for k in range(1, order):
    left = collections.defaultdict(set)
    for i in range(k, n):
      left[tuple(ids[i - k + 1:i + 1])].add(ids[i - k])
    counts[k] = {g: len(left[g]) + (g == tuple(ids[:k])) for g in raw[k]}
  context = [int(c) for c in context]
  context = context[max(0, len(context) - (order - 1)):]
  p = 1.0 / vocab_size
  for k in range(1, len(context) + 2):
    h = tuple(context[len(context) - (k - 1):])
    followers = {g[-1]: c for g, c in counts[k].items() if g[:-1] == h}
    total = sum(followers.values())
    if not total:
      break
    d = ngram.modified_kn_discounts(np.array(list(counts[k].values())))
    disc = {c: d[min(c, 3) - 1] for c in followers.values()}
    gamma = sum(disc[c] for c in followers.values()) / total
    c = followers.get(w, 0)
    p = gamma * p + (max(c - disc[c], 0.0) / total if c else 0.0)
  return p


@pytest.mark.parametrize('order', range(1, 9))
def test_distribution_is_normalised_and_positive_on_random_corpus(order):
  vocab_size = 15  # Three ids never occur in the corpus.
  kn = ngram.fit_kneser_ney(_random_corpus(), vocab_size, order)
  rng = np.random.default_rng(order)
  for context in _random_contexts(rng, vocab_size):
    p = kn.distribution(context)
    assert p.shape == (vocab_size,) and p.dtype == np.float64
    assert math.isclose(p.sum(), 1.0, abs_tol=1e-12)
    assert (p > 0).all()


@pytest.mark.parametrize('order', range(1, 9))
def test_distribution_is_normalised_on_tiny_repeating_corpus(order):
  ids = np.array([0, 1, 2] * 4, dtype=np.int32)
  kn = ngram.fit_kneser_ney(ids, 5, order)
  rng = np.random.default_rng(order)
  for context in _random_contexts(rng, 5) + [[0, 1], [2, 0, 1]]:
    p = kn.distribution(context)
    assert math.isclose(p.sum(), 1.0, abs_tol=1e-12)
    assert (p > 0).all()


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    ids=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    order=st.integers(1, 8),
    context=st.lists(st.integers(0, 6), max_size=9))
def test_distribution_is_normalised_on_any_stream(ids, order, context):
  kn = ngram.fit_kneser_ney(np.array(ids, dtype=np.int32), 7, order)
  p = kn.distribution(context)
  assert math.isclose(p.sum(), 1.0, abs_tol=1e-12)
  assert (p > 0).all()


@pytest.mark.parametrize('order', [1, 2, 3, 5])
def test_matches_the_definition(order):
  vocab_size = 8
  ids = _random_corpus(n=150, vocab_size=6, seed=order)
  kn = ngram.fit_kneser_ney(ids, vocab_size, order)
  rng = np.random.default_rng(0)
  contexts = _random_contexts(rng, 6, count=6, max_len=6) + [ids[:4], ids[-3:]]
  for context in contexts:
    p = kn.distribution(context)
    expected = [_reference_probability(ids, vocab_size, order, context, w)
                for w in range(vocab_size)]
    np.testing.assert_allclose(p, expected, rtol=1e-12)


@pytest.mark.parametrize('order', range(2, 9))
def test_repetitive_corpus_predicts_the_continuation(order):
  ids = np.tile(np.arange(5, dtype=np.int32), 40)
  kn = ngram.fit_kneser_ney(ids, 10, order)
  # A full context uses raw counts (about 40 here): nearly certain.
  assert kn.distribution(ids[:9][9 - (order - 1):])[4] > 0.9
  # Shorter ones use continuation counts (1 here): still the favourite.
  assert np.argmax(kn.distribution([1, 2, 3])) == 4
  assert np.argmax(kn.distribution([4])) == 0
  stream = np.tile(np.arange(5, dtype=np.int32), 6)
  lp = kn.stream_log_probs(stream[:-1], stream[1:])
  assert np.exp(lp[order - 2:]).min() > 0.9


@pytest.mark.parametrize('order', [1, 2, 4, 6, 8])
def test_stream_log_probs_equal_distribution_lookups(order):
  vocab_size = 15
  kn = ngram.fit_kneser_ney(_random_corpus(), vocab_size, order)
  targets = _random_corpus(n=60, vocab_size=vocab_size, seed=7)
  targets[20:40] = _random_corpus()[100:120]  # Seen, long contexts too.
  inputs = np.concatenate([[3], targets[:-1]]).astype(np.int32)
  lp = kn.stream_log_probs(inputs, targets)
  assert lp.shape == (60,) and lp.dtype == np.float64
  expected = [math.log(kn.distribution(inputs[:i + 1])[targets[i]])
              for i in range(60)]
  np.testing.assert_allclose(lp, expected, rtol=1e-12, atol=1e-12)


def test_stream_log_probs_are_fast():
  vocab_size = 2300
  kn = ngram.fit_kneser_ney(
      _random_corpus(n=20000, vocab_size=vocab_size), vocab_size, 6)
  targets = _random_corpus(n=5000, vocab_size=vocab_size, seed=1)
  inputs = np.concatenate([[0], targets[:-1]])
  start = time.perf_counter()
  lp = kn.stream_log_probs(inputs, targets)
  assert time.perf_counter() - start < 2.0
  assert np.isfinite(lp).all() and (lp < 0).all()


def test_discounts_follow_chen_and_goodman():
  counts = np.array([1] * 10 + [2] * 5 + [3] * 3 + [4] * 2 + [9] * 4)
  y = 10 / (10 + 2 * 5)
  expected = [1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5, 3 - 4 * y * 2 / 3]
  np.testing.assert_allclose(ngram.modified_kn_discounts(counts), expected)
  # Undefined without all of n1..n4: the fallback.
  np.testing.assert_allclose(
      ngram.modified_kn_discounts(np.array([1, 1, 2, 3, 7])),
      ngram.FALLBACK_DISCOUNTS)
  # Estimates outside (0, j] are clipped.
  d = ngram.modified_kn_discounts(np.array([1] + [2] * 50 + [3] + [4]))
  assert (d >= ngram.MIN_DISCOUNT).all() and (d <= [1, 2, 3]).all()


def test_model_reports_its_discounts():
  kn = ngram.fit_kneser_ney(_random_corpus(n=2000), 15, 4)
  assert kn.discounts.shape == (4, 3)
  assert (kn.discounts > 0).all() and (kn.discounts <= [1, 2, 3]).all()


def test_cache_distribution_is_normalised_and_matches_log_probs():
  targets = np.tile(_random_corpus(n=30, vocab_size=9), 3)
  inputs = np.concatenate([[0], targets[:-1]]).astype(np.int32)
  lp = ngram.ngram_cache_log_probs(inputs, targets, 10, order=5)
  for i in (0, 1, 5, 40, 89):
    p = ngram.ngram_cache_distribution(inputs[:i + 1], 10, order=5)
    assert math.isclose(p.sum(), 1.0, abs_tol=1e-12) and (p > 0).all()
    assert math.isclose(lp[i], math.log(p[targets[i]]), rel_tol=1e-12)
  # The third pass repeats text already scored: the cache knows it.
  assert np.exp(lp[62:]).min() > 0.5


@pytest.mark.parametrize('lam', [0.0, 0.4, 1.0])
def test_mixing_with_the_cache_stays_normalised(lam):
  vocab_size = 15
  kn = ngram.fit_kneser_ney(_random_corpus(), vocab_size, 6)
  targets = np.tile(_random_corpus(n=25, vocab_size=vocab_size, seed=3), 3)
  inputs = np.concatenate([[1], targets[:-1]]).astype(np.int32)
  lp = ngram.mix_with_cache(kn, inputs, targets, cache_order=5, lam=lam)
  assert lp.shape == targets.shape
  for i in (0, 3, 30, 74):
    p = ngram.mixed_distribution(kn, inputs[:i + 1], cache_order=5, lam=lam)
    assert math.isclose(p.sum(), 1.0, abs_tol=1e-12) and (p > 0).all()
    assert math.isclose(lp[i], math.log(p[targets[i]]), rel_tol=1e-9)


def test_cache_helps_on_repeated_text():
  vocab_size = 15
  kn = ngram.fit_kneser_ney(_random_corpus(), vocab_size, 6)
  targets = np.tile(_random_corpus(n=40, vocab_size=vocab_size, seed=5), 4)
  inputs = np.concatenate([[0], targets[:-1]]).astype(np.int32)
  plain = kn.stream_log_probs(inputs, targets).mean()
  assert ngram.mix_with_cache(kn, inputs, targets, lam=0.4).mean() > plain


def test_rejects_bad_arguments():
  ids = _random_corpus()
  for order in (0, 9):
    with pytest.raises(JaylyricsError, match='order'):
      ngram.fit_kneser_ney(ids, 12, order)
  with pytest.raises(JaylyricsError, match='outside'):
    ngram.fit_kneser_ney(ids, 5, 3)
  with pytest.raises(JaylyricsError, match='empty'):
    ngram.fit_kneser_ney(np.zeros(0, dtype=np.int32), 5, 3)
  kn = ngram.fit_kneser_ney(ids, 12, 3)
  with pytest.raises(JaylyricsError, match='outside'):
    kn.distribution([1, 12])
  with pytest.raises(JaylyricsError, match='length'):
    kn.stream_log_probs(ids[:5], ids[:4])
  with pytest.raises(JaylyricsError, match='lam'):
    ngram.mix_with_cache(kn, ids[:5], ids[1:6], lam=1.5)


@pytest.mark.skipif(not os.path.exists(CORPUS), reason='no corpus checkout')
def test_real_corpus_builds_fast_and_scores_plausibly():
  # Imported here: only this test needs the rest of the library.
  from jaylyrics_jax.data.corpus import load_clean_text
  from jaylyrics_jax.data.corpus import split_train_valid
  from jaylyrics_jax.scoring.stream import stream_arrays
  from jaylyrics_jax.data.vocab import build_vocabulary
  text = load_clean_text(CORPUS)
  vocab = build_vocabulary(text)
  train, valid = split_train_valid(text, 0.1)
  arrays = stream_arrays(valid, vocab)
  start = time.perf_counter()
  kn = ngram.fit_kneser_ney(vocab.encode(train), vocab.size, 6)
  assert time.perf_counter() - start < 10.0
  start = time.perf_counter()
  lp = kn.stream_log_probs(arrays.inputs, arrays.targets)
  assert time.perf_counter() - start < 2.0
  bpc = -lp[arrays.mask].mean() / math.log(2)
  assert 5.0 < bpc < 7.2  # 6.70 when written; log2(V) is about 11.2.
  mixed = ngram.mix_with_cache(kn, arrays.inputs, arrays.targets, 5, 0.4)
  assert -mixed[arrays.mask].mean() / math.log(2) < bpc - 1.0  # 4.70.
