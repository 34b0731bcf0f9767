"""Neural cache and mixture weights, against brute force."""

import numpy as np

from jaylyrics_jax.scoring import mixture


def _brute_cache(hidden, targets, window, theta, vocab):
  keys = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
  dists = []
  for t in range(len(targets)):
    dist = np.zeros(vocab)
    for i in range(max(0, t - window), t):
      dist[targets[i]] += np.exp(theta * keys[t] @ keys[i])
    dists.append(dist / dist.sum() if dist.sum() else dist)
  return np.array(dists)


def test_neural_cache_matches_brute_force_and_is_normalised():
  rng = np.random.default_rng(0)
  hidden = rng.normal(size=(300, 6))
  targets = rng.integers(0, 7, 300)
  for window, theta in ((5, 1.0), (40, 10.0), (1000, 30.0)):
    probs, has_history = mixture.neural_cache_probs(hidden, targets, window,
                                                    theta, chunk=64)
    dists = _brute_cache(hidden, targets, window, theta, 7)
    np.testing.assert_allclose(probs, dists[np.arange(300), targets],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dists[1:].sum(axis=1), 1.0)
    assert not has_history[0] and has_history[1:].all() and probs[0] == 0


def test_cache_copies_a_repeated_line():
  rng = np.random.default_rng(1)
  line_hidden = rng.normal(size=(10, 8))
  hidden = np.concatenate([line_hidden, line_hidden])
  targets = np.concatenate([np.arange(10), np.arange(10)])
  probs, _ = mixture.neural_cache_probs(hidden, targets, 100, 50.0)
  assert (probs[11:] > 0.9).all()  # The second time round, it copies.


def test_em_weights_sum_to_one_and_beat_uniform():
  rng = np.random.default_rng(2)
  good = rng.uniform(0.5, 0.9, 1000)
  bad = rng.uniform(0.0, 0.1, 1000)
  mixed = np.where(rng.uniform(size=1000) < 0.3, bad * 5, good * 0.5)
  probs = np.stack([good, bad, mixed])
  weights = mixture.fit_weights(probs)
  assert abs(weights.sum() - 1) < 1e-12 and (weights >= 0).all()
  uniform = mixture.mixture_log_probs(probs, np.full(3, 1 / 3)).mean()
  assert mixture.mixture_log_probs(probs, weights).mean() > uniform
  assert weights[0] > 0.9  # The uniformly better component wins.
  assert mixture.bits_per_char(np.log(np.full(4, 0.5))) == 1.0
