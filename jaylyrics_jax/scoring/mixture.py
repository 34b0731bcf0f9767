"""The default inference: the model mixed with its caches and n-grams.

On the host (numpy), position by position, each component's probability of
the character that actually came next: `neural_cache_probs` (the neural
cache), `fit_weights` (EM mixture weights), `mixture_log_probs` and
`bits_per_char`. A linear mixture needs nothing more: the mixture of proper
distributions is a proper distribution, and its probability of the target is
the weighted sum of the components'.

On the device, one character at a time:

`make_mixture_step` turns a `CharLM` and a tuned `MixtureSpec` into
a step function `(carry, token) -> (log-probabilities <float32>[V], carry)`
that `generation.sampler` runs inside its `lax.scan`. The next character's
distribution is the weighted sum of

  model        softmax of the model's logits;
  cache        the neural cache: a ring buffer of the last `cache_size`
               L2-normalised top hidden states and the character that followed
               each, p(w) = sum over entries with next char w of
               softmax(theta * <h_t, h_i>);
  ngram        the interpolated Kneser-Ney n-gram (`ngram.KneserNey`): its
               tables as sorted int32 keys searched by `ngram.lookup`,
               and the ids of the n-grams ending at the last character in the
               carry;
  ngram_cache  the Witten-Bell n-gram of the text read so far: the history,
               and for every past position how many characters of the context
               before it equal the end of the history (capped at order - 1),
               so the counts of every order are one masked scatter each.

Each component gives, to float32 rounding, the probability its numpy scorer
in `scoring.tuning` gives (tested by teacher-forcing a text through the step).
"""

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.config import InferenceConfig
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import Carries
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.models.pointer import EMPTY
from jaylyrics_jax.scoring import ngram



@dataclasses.dataclass(frozen=True)
class MixtureSpec:
  """The default inference: which components, with which settings.

  weights: one per component, in the order model, cache, ngram, ngram_cache;
    0.0 for a component that is off. They sum to 1.
  cache_size, theta: the neural cache's window and sharpness (cache on).
  ngram_order, ngram_cache_order: the Kneser-Ney and n-gram cache orders
    (0 when the n-grams are off).
  """
  weights: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
  cache_size: int = 0
  theta: float = 10.0
  ngram_order: int = 0
  ngram_cache_order: int = 0


def default_mixture(config: InferenceConfig, use_ngram: bool) -> MixtureSpec:
  """The mixture `config` tuned: all four components with n-grams, the
  model+cache pair without them, the model alone when nothing is on."""
  if use_ngram and config.ngram_order > 0:
    weights = list(config.full_weights)
    cache_size, theta = config.mix_cache_size, config.mix_theta
    if config.cache_size <= 0:
      weights[1] = 0.0
    ngram_order, ngram_cache_order = (config.ngram_order,
                                      config.ngram_cache_order)
  elif config.cache_size > 0:
    weights = list(config.cache_weights) + [0.0, 0.0]
    cache_size, theta = config.cache_size, config.theta
    ngram_order = ngram_cache_order = 0
  else:
    return MixtureSpec()
  if not weights[1] > 0:
    cache_size = 0
  total = sum(weights)
  if not total > 0:
    return MixtureSpec()
  return MixtureSpec(tuple(float(w) / total for w in weights),
                     cache_size or 0, float(theta), ngram_order,
                     ngram_cache_order)


@flax.struct.dataclass
class KneserNeyTables:
  """One `ngram.KneserNeyOrder` per order, unigrams first, as device arrays.

  keys, alpha: <int32>[G + 1], <float32>[G + 1] (padded with one entry no
  query matches); gamma <float32>[C]; starts <int32>[C + 1]; widths: the most
  n-grams any context of that order has (static).
  """
  keys: tuple[jax.Array, ...]
  alpha: tuple[jax.Array, ...]
  gamma: tuple[jax.Array, ...]
  starts: tuple[jax.Array, ...]
  widths: tuple[int, ...] = flax.struct.field(pytree_node=False)
  vocab_size: int = flax.struct.field(pytree_node=False)


def kneser_ney_tables(kn: ngram.KneserNey) -> KneserNeyTables:
  """Copies a fitted `KneserNey` model's tables to the device."""
  keys, alpha, gamma, starts, widths = [], [], [], [], []
  too_many = (f'The {kn.order}-gram model has too many n-grams to number in '
              '32 bits on the device. Use a lower --ngram_order.')
  for level in kn.orders:
    keys.append(ngram.device_keys(level.keys, too_many))
    alpha.append(jnp.asarray(np.append(level.alpha, 0.0), jnp.float32))
    gamma.append(jnp.asarray(level.gamma, jnp.float32))
    starts.append(jnp.asarray(level.starts, jnp.int32))
    widths.append(ngram.max_width(level.starts))
  return KneserNeyTables(tuple(keys), tuple(alpha), tuple(gamma),
                         tuple(starts), tuple(widths), kn.vocab_size)


@flax.struct.dataclass
class MixtureCarry:
  """Everything the step keeps between characters (batch size 1).

  model: the CharLM's carries. query: <float32>[H] the last step's normalised
  hidden state, whose next character is the token the next step reads.
  cache_keys <float32>[W, H], cache_next <int32>[W], cache_stamp <int32>[W]
  (the position each entry's hidden state was read at, EMPTY if none): the
  neural cache's ring buffer. gram_ids <int32>[K-1]: ids of the
  1..K-1-grams ending at the last token read (-1: unseen). history <int32>[L]
  and match <int32>[L]: the n-gram cache. read <int32>[]: tokens read.
  """
  model: Carries
  query: jax.Array
  has_query: jax.Array
  cache_keys: jax.Array
  cache_next: jax.Array
  cache_stamp: jax.Array
  gram_ids: jax.Array
  history: jax.Array
  match: jax.Array
  read: jax.Array


def initial_carry(model_config: ModelConfig, spec: MixtureSpec,
                  history_length: int) -> MixtureCarry:
  """The carry before any character is read.

  history_length: how many tokens the step will read in all: the n-gram
  cache's capacity (tokens read beyond it are not counted by that cache).
  """
  hidden = model_config.rnn_size
  window = spec.cache_size if spec.weights[1] > 0 else 0
  capacity = history_length if spec.weights[3] > 0 else 0
  return MixtureCarry(
      model=zero_carries(model_config, 1, generation=True),
      query=jnp.zeros((hidden,), jnp.float32),
      has_query=jnp.zeros((), bool),
      cache_keys=jnp.zeros((window, hidden), jnp.float32),
      cache_next=jnp.zeros((window,), jnp.int32),
      cache_stamp=jnp.full((window,), EMPTY, jnp.int32),
      gram_ids=jnp.full((max(spec.ngram_order - 1, 0),), -1, jnp.int32),
      history=jnp.zeros((capacity,), jnp.int32),
      match=jnp.zeros((capacity,), jnp.int32),
      read=jnp.zeros((), jnp.int32))


def kneser_ney_step(tables: KneserNeyTables, gram_ids: jax.Array,
                    token: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Reads `token`; returns (distribution <float32>[V], new gram_ids)."""
  v = tables.vocab_size
  order = len(tables.keys)
  new_ids = ngram.extend_ids(tables.keys, gram_ids, token, v)
  contexts = [jnp.zeros((), jnp.int32)] + [new_ids[j]
                                           for j in range(order - 1)]
  p = jnp.full((v,), 1.0 / v, jnp.float32)
  for k in range(order):
    ctx = contexts[k]
    seen = ctx >= 0
    ctx = jnp.maximum(ctx, 0)
    lo, hi = tables.starts[k][ctx], tables.starts[k][ctx + 1]
    idx = lo + jnp.arange(tables.widths[k])
    valid = idx < hi
    idx = jnp.minimum(idx, tables.keys[k].shape[0] - 1)
    column = jnp.where(valid, tables.keys[k][idx] % v, v)
    alpha = jnp.zeros((v,), jnp.float32).at[column].add(
        jnp.where(valid, tables.alpha[k][idx], 0.0), mode='drop')
    p = jnp.where(seen, tables.gamma[k][ctx] * p + alpha, p)
  return p, new_ids


def kneser_ney_log_prob(tables: KneserNeyTables, gram_ids: jax.Array,
                        token: jax.Array) -> jax.Array:
  """log p(token) <float32>[] after the n-grams `gram_ids` (those ending at
  the last token read, as `kneser_ney_step` keeps them): the probability
  `kneser_ney_step` gives `token`, without the distribution over all V."""
  v = tables.vocab_size
  contexts = [jnp.zeros((), jnp.int32)] + [gram_ids[j] for j in
                                           range(len(tables.keys) - 1)]
  p = jnp.full((), 1.0 / v, jnp.float32)
  for k, ctx in enumerate(contexts):
    seen = ctx >= 0
    ctx = jnp.maximum(ctx, 0)
    idx = ngram.lookup(tables.keys[k], jnp.where(seen, ctx * v + token, -1))
    alpha = jnp.where(idx >= 0, tables.alpha[k][jnp.maximum(idx, 0)], 0.0)
    p = jnp.where(seen, tables.gamma[k][ctx] * p + alpha, p)
  return jnp.log(jnp.maximum(p, 1e-30))


def ngram_cache_step(history: jax.Array, match: jax.Array, t: jax.Array,
                     token: jax.Array, vocab_size: int, order: int,
                     min_distance: int = 1):
  """Reads `token`, the t-th of the stream, into the Witten-Bell cache.

  match[j] is how many characters before position j equal the end of the
  history (at most order - 1), so the k-gram counts of the current context
  are the tokens at the positions with match >= k - 1. Only positions at
  least `min_distance` after the current one's predecessor count (1: all).
  Returns (p <float32>[V], history, match).
  """
  positions = jnp.arange(history.shape[0])
  previous = jnp.roll(history, 1)  # previous[j] = history[j - 1]
  extends = (positions >= 1) & (positions <= t) & (previous == token)
  match = jnp.where(extends, jnp.minimum(jnp.roll(match, 1) + 1, order - 1), 0)
  history = history.at[t].set(token, mode='drop')
  usable = positions <= t + 1 - min_distance
  p = jnp.full((vocab_size,), 1.0 / vocab_size, jnp.float32)
  for k in range(1, order + 1):
    counted = usable & (match >= k - 1)
    counts = jnp.zeros((vocab_size,), jnp.float32).at[
        jnp.where(counted, history, vocab_size)].add(1.0, mode='drop')
    total = jnp.sum(counted)
    types = jnp.sum(counts > 0)
    p = jnp.where(total > 0, (types * p + counts) / (total + types), p)
  return p, history, match


def neural_cache_step(carry: MixtureCarry, hidden: jax.Array,
                      token: jax.Array, model_probs: jax.Array, theta: float,
                      min_distance: int = 1):
  """Files the last query under `token`, then queries with `hidden`.

  The entry of position i (read at step i, followed by token i + 1) lives in
  slot i mod W; the query at position t uses the entries with
  t - W <= i <= t - min_distance. Returns (p <float32>[V], carry); p is the
  model's while no entry is usable.
  """
  window = carry.cache_keys.shape[0]
  t = carry.read
  slot = (t - 1) % window
  push = carry.has_query
  keys = jnp.where(push, carry.cache_keys.at[slot].set(carry.query),
                   carry.cache_keys)
  nexts = jnp.where(push, carry.cache_next.at[slot].set(token),
                    carry.cache_next)
  stamps = jnp.where(push, carry.cache_stamp.at[slot].set(t - 1),
                     carry.cache_stamp)
  usable = (stamps != EMPTY) & (stamps <= t - min_distance)
  query = hidden / jnp.maximum(jnp.linalg.norm(hidden), 1e-12)
  scores = jnp.where(usable, theta * (keys @ query), -jnp.inf)
  weights = jnp.where(usable, jax.nn.softmax(scores), 0.0)
  p = jnp.zeros_like(model_probs).at[nexts].add(weights)
  p = jnp.where(jnp.any(usable), p, model_probs)
  carry = carry.replace(cache_keys=keys, cache_next=nexts, cache_stamp=stamps,
                        query=query, has_query=jnp.ones((), bool))
  return p, carry


def make_mixture_step(model_config: ModelConfig, spec: MixtureSpec,
                      min_distance: int = 1
                      ) -> Callable[..., tuple[jax.Array, MixtureCarry]]:
  """Returns step(params, tables, carry, token) -> (log p <float32>[V], carry).

  tables: the `KneserNeyTables` when spec.ngram_order > 0, else None.
  min_distance: the caches use only positions at least this far back (1:
    all, as `scoring.tuning` scores them); generation uses more, or the caches
    feed on what was just written and loop (前前前...).
  """
  if min_distance < 1:
    raise JaylyricsError(f'min_distance must be >= 1, got {min_distance}.')
  model = CharLM(model_config)
  w_model, w_cache, w_ngram, w_ngram_cache = spec.weights
  if w_ngram > 0 and not spec.ngram_order:
    raise JaylyricsError('The mixture weighs an n-gram of order 0.')

  def step(params, tables, carry: MixtureCarry, token: jax.Array):
    token = jnp.asarray(token, jnp.int32)
    logits, model_carry, hidden = model.apply(
        {'params': params}, token[None, None], carry.model, return_hidden=True)
    model_probs = jax.nn.softmax(logits[0, 0])
    carry = carry.replace(model=model_carry)
    p = w_model * model_probs
    if w_cache > 0:
      cache, carry = neural_cache_step(carry, hidden[0, 0], token,
                                       model_probs, spec.theta, min_distance)
      p = p + w_cache * cache
    if spec.ngram_order:
      kn, gram_ids = kneser_ney_step(tables, carry.gram_ids, token)
      carry = carry.replace(gram_ids=gram_ids)
      p = p + w_ngram * kn
    if w_ngram_cache > 0:
      wb, history, match = ngram_cache_step(
          carry.history, carry.match, carry.read, token,
          model_config.vocab_size, spec.ngram_cache_order, min_distance)
      carry = carry.replace(history=history, match=match)
      p = p + w_ngram_cache * wb
    carry = carry.replace(read=carry.read + 1)
    return jnp.log(jnp.maximum(p, 1e-30)), carry

  return step


@dataclasses.dataclass(frozen=True)
class DeviceMixture:
  """A `MixtureSpec` with the device tables it needs (None without n-grams)."""
  spec: MixtureSpec
  tables: Any = None


def device_mixture(spec: MixtureSpec,
                   kn: ngram.KneserNey | None = None) -> DeviceMixture:
  if spec.ngram_order and kn is None:
    raise JaylyricsError('The mixture has an n-gram: pass its KneserNey model.')
  if kn is not None and spec.ngram_order and kn.order != spec.ngram_order:
    raise JaylyricsError(f'The mixture wants a {spec.ngram_order}-gram, got '
                         f'a {kn.order}-gram model.')
  return DeviceMixture(spec, kneser_ney_tables(kn) if spec.ngram_order
                       else None)


def for_generation(mixture: DeviceMixture | None,
                   choice: str) -> DeviceMixture | None:
  """The part of the default inference that generation draws from, None
  for the model alone (`SamplingConfig.mixture`, resolved here only).

  choice: 'tuned' all of it, 'ngram' the model and the Kneser-Ney n-gram in
  their tuned proportion (the caches reward copying what was just written,
  which scores well on real text and loops in generation: BUILD_NOTES.md),
  'model' the model alone.
  """
  if mixture is None:
    return None
  spec = mixture.spec
  w_model, _, w_ngram, _ = spec.weights
  if choice == 'model' or (choice != 'tuned' and not w_ngram > 0):
    return None
  if choice != 'tuned':
    total = w_model + w_ngram
    spec = MixtureSpec((w_model / total, 0.0, w_ngram / total, 0.0),
                       ngram_order=spec.ngram_order)
  if not spec.weights[0] < 1.0:
    return None
  return DeviceMixture(spec, mixture.tables if spec.ngram_order else None)


# Host-side scoring helpers.
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
