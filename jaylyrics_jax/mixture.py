"""Training-free helpers on top of a model: a neural cache and mixtures.

All functions work on the probability each component gives to the character
that actually came next, position by position. That is all a linear mixture
needs: the mixture of proper distributions is a proper distribution, and its
probability of the target is the weighted sum of the components'.
"""

import numpy as np


def neural_cache_probs(hidden: np.ndarray, targets: np.ndarray, window: int,
                       theta: float, chunk: int = 256
                       ) -> tuple[np.ndarray, np.ndarray]:
  """The neural cache of Grave et al. (2017), probability of each target.

  p_cache(w | t) is proportional to the sum, over the last `window` positions
  i < t whose next character targets[i] is w, of exp(theta * <h_t, h_i>),
  with hidden states L2-normalised.

  Args:
    hidden: <float>[N, H] the top layer's state that predicted targets[i].
    targets: <int>[N] the character that followed each position.
    window: how many past positions the cache holds (> 0).
    theta: the sharpness of the match.
    chunk: query rows computed at once (memory only).
  Returns:
    probs <float64>[N] of targets[t] under the cache, and has_history
    <bool>[N] (false at t = 0, where the cache is empty and probs is 0).
  """
  keys = hidden.astype(np.float64)
  keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
  n = len(targets)
  probs = np.zeros(n)
  for start in range(0, n, chunk):
    stop = min(n, start + chunk)
    lo = max(0, start - window)
    scores = theta * keys[start:stop] @ keys[lo:stop].T  # [q, k]
    t = np.arange(start, stop)[:, None]
    i = np.arange(lo, stop)[None, :]
    valid = (i < t) & (i >= t - window)
    scores = np.where(valid, scores, -np.inf)
    peak = scores.max(axis=1, keepdims=True)
    weights = np.where(valid, np.exp(scores - np.where(np.isfinite(peak),
                                                       peak, 0.0)), 0.0)
    same = targets[lo:stop][None, :] == targets[start:stop][:, None]
    total = weights.sum(axis=1)
    hit = (weights * same).sum(axis=1)
    probs[start:stop] = np.where(total > 0, hit / np.maximum(total, 1e-300),
                                 0.0)
  has_history = np.arange(n) > 0
  return probs, has_history


def fit_weights(probs: np.ndarray, iterations: int = 300,
                tol: float = 1e-9) -> np.ndarray:
  """Mixture weights maximising the mean log-likelihood, by EM.

  Args:
    probs: <float>[K, N] each component's probability of each target.
  Returns:
    <float64>[K] non-negative weights summing to 1.
  """
  k = probs.shape[0]
  weights = np.full(k, 1.0 / k)
  previous = -np.inf
  for _ in range(iterations):
    joint = weights[:, None] * probs
    total = np.maximum(joint.sum(axis=0), 1e-300)
    weights = (joint / total).mean(axis=1)
    ll = np.log(total).mean()
    if ll - previous < tol:
      break
    previous = ll
  return weights


def mixture_log_probs(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """<float64>[N] natural log of the mixture's probability of each target."""
  return np.log(np.maximum(np.asarray(weights) @ probs, 1e-300))


def bits_per_char(log_probs: np.ndarray) -> float:
  return float(-np.mean(log_probs) / np.log(2))
