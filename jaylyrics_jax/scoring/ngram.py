"""Character n-gram baselines: interpolated modified Kneser-Ney and a cache.

`fit_kneser_ney` builds the interpolated modified Kneser-Ney model of Chen &
Goodman (1998): each order k has three discounts D1, D2, D3+ estimated from
that order's count-of-counts n1..n4, orders below the highest use
continuation counts (how many distinct characters precede an n-gram), and
the unigram order interpolates with the uniform distribution over the
vocabulary, so every character keeps a positive probability:

    p_k(w | h) = max(c(hw) - D(c(hw)), 0) / c(h) + gamma(h) p_{k-1}(w | h'),
    gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / c(h),

where h' drops the oldest character of h, and a context h never seen (or
never followed by anything) hands its whole mass to p_{k-1}. The training
stream is treated as if a start symbol preceded it: an n-gram starting at the
first character gets one extra continuation count, so every observed n-gram
has a positive count at every order.

N-grams are numbered order by order: the k-gram `h w` is the integer
`id(h) * vocab_size + w` of its (k-1)-gram context id and last character,
and its own id is that key's rank among the sorted keys of order k. Lookups
are `np.searchsorted` over those keys, so scoring a whole stream is a few
vectorised passes, one per order.

The cache model (`ngram_cache_log_probs`) is an interpolated Witten-Bell
n-gram over the text already scored, built as the stream goes;
`mix_with_cache` mixes it linearly with a Kneser-Ney model.

Streams are scored the way `jaylyrics_jax.scoring.stream` scores them: the
history before `targets[i]` is `inputs[:i + 1]`, i.e. the context character
`inputs[0]` followed by `targets[:i]`.
"""

import collections
import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.errors import JaylyricsError

MAX_ORDER = 8
NO_KEY = np.iinfo(np.int32).max  # Pads device key tables: above every key.
# Used when an order's n1..n4 are not all positive (tiny or very repetitive
# data), where the Chen & Goodman estimate is undefined.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# Estimated discounts are clipped to [MIN_DISCOUNT, j] for D_j, so that every
# context passes some mass down (all probabilities stay positive) and no
# count is discounted below zero (distributions stay normalised).
MIN_DISCOUNT = 0.05


@dataclasses.dataclass(frozen=True, eq=False)
class KneserNeyOrder:
  """The k-grams of one order k, sorted by key.

  keys: <int64>[G] sorted, `context_id * vocab_size + w`; a k-gram's id is
    its index here.
  counts: <int64>[G] the counts used at this order (raw counts at the highest
    order, continuation counts below).
  alpha: <float64>[G] the discounted term max(c - D(c), 0) / c(context).
  gamma: <float64>[C] interpolation weight of each (k-1)-gram context id
    (1.0 for a context never followed by anything).
  starts: <int64>[C + 1] the k-grams of context id c are keys[starts[c]:
    starts[c + 1]].
  discounts: <float64>[3] D1, D2, D3+.
  """
  keys: np.ndarray
  counts: np.ndarray
  alpha: np.ndarray
  gamma: np.ndarray
  starts: np.ndarray
  discounts: np.ndarray


def modified_kn_discounts(counts: np.ndarray) -> np.ndarray:
  """<float64>[3] D1, D2, D3+ from one order's <int>[G] counts (Chen & Goodman).

  Y = n1 / (n1 + 2 n2), D_j = j - (j + 1) Y n_{j+1} / n_j, clipped to
  [MIN_DISCOUNT, j]; FALLBACK_DISCOUNTS when some of n1..n4 is zero.
  """
  n = np.bincount(np.minimum(counts, 5), minlength=6)[1:5].astype(np.float64)
  if np.any(n == 0):
    return np.array(FALLBACK_DISCOUNTS, dtype=np.float64)
  y = n[0] / (n[0] + 2.0 * n[1])
  d = np.array([j - (j + 1) * y * n[j] / n[j - 1] for j in (1, 2, 3)])
  return np.clip(d, MIN_DISCOUNT, np.array([1.0, 2.0, 3.0]))


def _lookup(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
  """Index of each query in sorted `keys`, -1 where absent (or query < 0)."""
  idx = np.searchsorted(keys, queries)
  idx = np.minimum(idx, len(keys) - 1)
  found = (queries >= 0) & (keys[idx] == queries) if len(keys) else np.zeros(
      queries.shape, dtype=bool)
  return np.where(found, idx, -1)


def _make_order(keys: np.ndarray, counts: np.ndarray, num_contexts: int,
                vocab_size: int) -> KneserNeyOrder:
  """Discounts, alpha, gamma and offsets of one order from its sorted keys."""
  discounts = modified_kn_discounts(counts)
  ctx = keys // vocab_size
  totals = np.bincount(ctx, weights=counts, minlength=num_contexts)
  discount_of = discounts[np.minimum(counts, 3) - 1]
  mass = np.bincount(ctx, weights=discount_of, minlength=num_contexts)
  seen = totals > 0
  safe = np.where(seen, totals, 1.0)
  gamma = np.where(seen, mass / safe, 1.0)
  alpha = np.maximum(counts - discount_of, 0.0) / safe[ctx]
  starts = np.searchsorted(ctx, np.arange(num_contexts + 1))
  return KneserNeyOrder(keys, counts, alpha, gamma, starts, discounts)


def _check_ids(ids: np.ndarray, vocab_size: int, what: str) -> np.ndarray:
  ids = np.asarray(ids)
  if ids.ndim != 1:
    raise JaylyricsError(f'{what} must be a 1-D id array, got shape '
                         f'{ids.shape}.')
  ids = ids.astype(np.int64)
  if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
    raise JaylyricsError(
        f'{what} holds ids outside [0, {vocab_size}): min {ids.min()}, max '
        f'{ids.max()}. Encode the text with the vocabulary the model was '
        'built for.')
  return ids


@dataclasses.dataclass(frozen=True, eq=False)
class KneserNey:
  """An interpolated modified Kneser-Ney character model.

  vocab_size: V; order: K; orders: K `KneserNeyOrder`s, unigrams first.
  """
  vocab_size: int
  order: int
  orders: tuple[KneserNeyOrder, ...]

  @property
  def discounts(self) -> np.ndarray:
    """<float64>[K, 3] D1, D2, D3+ of each order, unigrams first."""
    return np.stack([o.discounts for o in self.orders])

  def _gram_ids(self, history: np.ndarray) -> list[np.ndarray]:
    """ids[j][i]: id of the j-gram history[i-j+1..i] (-1 if unseen), j < K.

    Args:
      history: <int64>[N].
    Returns:
      K arrays <int64>[N]; ids[0] is all zeros (the empty context).
    """
    n = len(history)
    ids = [np.zeros(n, dtype=np.int64)]
    for j in range(1, self.order):
      prefix = np.empty(n, dtype=np.int64)
      prefix[1:] = ids[-1][:-1]
      prefix[:1] = 0 if j == 1 else -1
      queries = np.where(prefix >= 0, prefix * self.vocab_size + history, -1)
      ids.append(_lookup(self.orders[j - 1].keys, queries))
    return ids

  def distribution(self, context: Sequence[int]) -> np.ndarray:
    """<float64>[V] next-character distribution after `context`.

    Only the last K - 1 ids of `context` are used; a shorter context starts
    from the order its length allows.
    """
    context = _check_ids(np.asarray(context, dtype=np.int64).reshape(-1),
                         self.vocab_size, 'context')
    context = context[max(0, len(context) - (self.order - 1)):]
    ctx_ids = [0]
    if len(context):
      ctx_ids += [int(a[-1]) for a in self._gram_ids(context)[1:]]
    p = np.full(self.vocab_size, 1.0 / self.vocab_size)
    for k in range(1, min(len(context), self.order - 1) + 2):
      ctx = ctx_ids[k - 1]
      if ctx < 0:
        break  # Longer contexts are unseen too.
      level = self.orders[k - 1]
      lo, hi = level.starts[ctx], level.starts[ctx + 1]
      p *= level.gamma[ctx]
      p[level.keys[lo:hi] % self.vocab_size] += level.alpha[lo:hi]
    return p

  def stream_log_probs(self, inputs: np.ndarray,
                       targets: np.ndarray) -> np.ndarray:
    """<float64>[N] ln p(targets[i] | inputs[:i + 1]), for <int>[N] streams.

    Equals log(distribution(inputs[:i + 1])[targets[i]]) at every i.
    """
    inputs = _check_ids(inputs, self.vocab_size, 'inputs')
    targets = _check_ids(targets, self.vocab_size, 'targets')
    if inputs.shape != targets.shape:
      raise JaylyricsError(f'inputs and targets differ in length: '
                           f'{inputs.shape} vs {targets.shape}.')
    ids = self._gram_ids(inputs)
    p = np.full(len(targets), 1.0 / self.vocab_size)
    for k in range(1, self.order + 1):
      level = self.orders[k - 1]
      ctx = ids[k - 1]
      seen = ctx >= 0
      safe_ctx = np.where(seen, ctx, 0)
      g = _lookup(level.keys,
                  np.where(seen, ctx * self.vocab_size + targets, -1))
      alpha = np.where(g >= 0, level.alpha[np.maximum(g, 0)], 0.0)
      p = np.where(seen, level.gamma[safe_ctx] * p + alpha, p)
    return np.log(p)


def _count(ids: np.ndarray, vocab_size: int, order: int):
  """Sorted distinct k-grams of `ids` for k = 1..order, numbered as in the
  module docstring.

  Returns lists indexed by k (entry 0 unused): keys[k] sorted keys, raw[k]
  their counts, gram[k][i] the id of the k-gram ending at position i (-1
  for i < k - 1), first[k] where each k-gram first ends. Orders beyond the
  stream's length are left out.
  """
  n = len(ids)
  if n * vocab_size >= 2**62:
    raise JaylyricsError('Too many n-grams to number in 64 bits.')
  keys, raw, gram, first = [None], [None], [np.zeros(n, dtype=np.int64)], [None]
  for k in range(1, order + 1):
    if k == 1:
      prefix = np.zeros(n, dtype=np.int64)  # The empty context, id 0.
    else:  # The (k-1)-gram ending just before each k-gram's last character.
      prefix = gram[k - 1][k - 2:n - 1]
    uniq, first_pos, inverse, counts = np.unique(
        prefix * vocab_size + ids[k - 1:], return_index=True,
        return_inverse=True, return_counts=True)
    g = np.full(n, -1, dtype=np.int64)
    g[k - 1:] = inverse
    keys.append(uniq)
    raw.append(counts.astype(np.int64))
    gram.append(g)
    first.append(first_pos + k - 1)  # Position where each k-gram ends.
    if k == n:
      break
  return keys, raw, gram, first


def ngram_keys(ids: np.ndarray, vocab_size: int, order: int) -> list[np.ndarray]:
  """<int64>[G_k] the sorted keys of the distinct k-grams of `ids`, for
  k = 1..order (empty arrays for orders longer than the stream)."""
  ids = _check_ids(ids, vocab_size, 'ids')
  keys = _count(ids, vocab_size, order)[0][1:] if len(ids) else []
  empty = np.zeros(0, dtype=np.int64)
  return list(keys) + [empty] * (order - len(keys))


def fit_kneser_ney(ids: np.ndarray, vocab_size: int,
                   order: int = 6) -> KneserNey:
  """Counts every 1..order-gram of a training stream.

  Args:
    ids: <int>[N] character ids in [0, vocab_size), N >= 1.
    vocab_size: V, the size of the distribution the model predicts.
    order: K in 1..MAX_ORDER; contexts of up to K - 1 characters are used.
  Returns:
    The model; building it is a few `np.unique` passes per order.
  """
  if not 1 <= order <= MAX_ORDER:
    raise JaylyricsError(f'order must be in 1..{MAX_ORDER}, got {order}.')
  if vocab_size < 1:
    raise JaylyricsError(f'vocab_size must be >= 1, got {vocab_size}.')
  ids = _check_ids(ids, vocab_size, 'ids')
  if len(ids) < 1:
    raise JaylyricsError('Cannot fit a Kneser-Ney model on an empty stream.')
  keys, raw, gram, first = _count(ids, vocab_size, order)
  orders = []
  for k in range(1, order + 1):
    if k >= len(keys):  # The stream is shorter than k: no k-grams.
      none = np.zeros(0, dtype=np.int64)
      num_contexts = len(keys[k - 1]) if k - 1 < len(keys) else 0
      orders.append(_make_order(none, none, num_contexts, vocab_size))
      continue
    if k == order:
      counts = raw[k]
    else:
      # Each distinct (k+1)-gram adds one to the k-gram it ends with.
      ends_with = gram[k][first[k + 1]] if k + 1 < len(keys) else []
      counts = np.bincount(ends_with, minlength=len(keys[k])).astype(np.int64)
      counts[gram[k][k - 1]] += 1  # The k-gram after the start symbol.
    num_contexts = 1 if k == 1 else len(keys[k - 1])
    orders.append(_make_order(keys[k], counts, num_contexts, vocab_size))
  return KneserNey(vocab_size, order, tuple(orders))


class _WittenBellCache:
  """Interpolated Witten-Bell n-gram counts over a growing history.

  p_k(w | h) = (c(hw) + T(h) p_{k-1}(w | h')) / (c(h) + T(h)), with T(h) the
  number of distinct characters seen after h; p_0 is uniform and an unseen
  context hands all its mass to p_{k-1}.
  """

  def __init__(self, vocab_size: int, order: int):
    self.vocab_size = vocab_size
    self.order = order
    self.history: list[int] = []
    self.followers = collections.defaultdict(dict)  # context -> {w: count}
    self.totals = collections.Counter()  # context -> c(h)

  def append(self, token: int):
    self.history.append(token)
    end = len(self.history)
    for k in range(1, min(self.order, end) + 1):
      context = tuple(self.history[end - k:end - 1])
      followers = self.followers[context]
      followers[token] = followers.get(token, 0) + 1
      self.totals[context] += 1

  def _contexts(self):
    """Contexts of orders 1..K that have been followed by something."""
    end = len(self.history)
    for k in range(1, min(self.order, end + 1) + 1):
      context = tuple(self.history[end - k + 1:end])
      total = self.totals.get(context, 0)
      if not total:
        return
      yield self.followers[context], total

  def prob(self, token: int) -> float:
    p = 1.0 / self.vocab_size
    for followers, total in self._contexts():
      types = len(followers)
      p = (types * p + followers.get(token, 0)) / (total + types)
    return p

  def distribution(self) -> np.ndarray:
    p = np.full(self.vocab_size, 1.0 / self.vocab_size)
    for followers, total in self._contexts():
      types = len(followers)
      p *= types
      p[np.fromiter(followers.keys(), dtype=np.int64, count=types)] += (
          np.fromiter(followers.values(), dtype=np.float64, count=types))
      p /= total + types
    return p


def _check_stream(inputs, targets, vocab_size):
  inputs = _check_ids(inputs, vocab_size, 'inputs')
  targets = _check_ids(targets, vocab_size, 'targets')
  if inputs.shape != targets.shape:
    raise JaylyricsError(f'inputs and targets differ in length: '
                         f'{inputs.shape} vs {targets.shape}.')
  return inputs.tolist(), targets.tolist()


def ngram_cache_log_probs(inputs: np.ndarray, targets: np.ndarray,
                          vocab_size: int, order: int = 5) -> np.ndarray:
  """<float64>[N] ln p_cache(targets[i] | inputs[:i + 1]).

  The cache is an interpolated Witten-Bell `order`-gram counted over the
  history `inputs[:i + 1]` only, i.e. over the text already scored.
  """
  if order < 1:
    raise JaylyricsError(f'cache order must be >= 1, got {order}.')
  inputs, targets = _check_stream(inputs, targets, vocab_size)
  cache = _WittenBellCache(vocab_size, order)
  out = np.empty(len(targets), dtype=np.float64)
  for i, (x, y) in enumerate(zip(inputs, targets)):
    cache.append(x)
    out[i] = cache.prob(y)
  return np.log(out)


def ngram_cache_distribution(history: Sequence[int], vocab_size: int,
                             order: int = 5) -> np.ndarray:
  """<float64>[V] the cache's next-character distribution after `history`.

  The reference form of `ngram_cache_log_probs` (one distribution, not a
  stream): for inspecting the cache, and checking the stream scorer.
  """
  history, _ = _check_stream(history, history, vocab_size)
  cache = _WittenBellCache(vocab_size, order)
  for x in history:
    cache.append(x)
  return cache.distribution()


def mixed_distribution(kn: KneserNey, history: Sequence[int],
                       cache_order: int = 5, lam: float = 0.4) -> np.ndarray:
  """<float64>[V] (1 - lam) p_KN + lam p_cache after `history`: the whole
  distribution that `mix_with_cache` scores the target of."""
  _check_lam(lam)
  return ((1.0 - lam) * kn.distribution(history) +
          lam * ngram_cache_distribution(history, kn.vocab_size, cache_order))


def mix_with_cache(kn: KneserNey, inputs: np.ndarray, targets: np.ndarray,
                   cache_order: int = 5, lam: float = 0.4) -> np.ndarray:
  """<float64>[N] ln((1 - lam) p_KN + lam p_cache) of each target.

  Equals log(mixed_distribution(kn, inputs[:i + 1], ...)[targets[i]]).
  """
  _check_lam(lam)
  kn_lp = kn.stream_log_probs(inputs, targets)
  cache_lp = ngram_cache_log_probs(inputs, targets, kn.vocab_size, cache_order)
  if lam == 0.0:
    return kn_lp
  if lam == 1.0:
    return cache_lp
  return np.logaddexp(np.log1p(-lam) + kn_lp, np.log(lam) + cache_lp)


def _check_lam(lam: float):
  if not 0.0 <= lam <= 1.0:
    raise JaylyricsError(f'lam must be in [0, 1], got {lam}.')


# On the device: the tables above as sorted int32 keys, searched by id.


def device_keys(keys: np.ndarray, too_many: str) -> jax.Array:
  """Sorted n-gram keys <int>[G] as <int32>[G + 1] on the device, padded
  with NO_KEY (which no query matches). Raises `JaylyricsError(too_many)`
  when a key does not fit in 32 bits."""
  if len(keys) and keys[-1] >= NO_KEY:
    raise JaylyricsError(too_many)
  return jnp.asarray(np.append(keys, NO_KEY), jnp.int32)


def max_width(starts: np.ndarray) -> int:
  """The most n-grams extending any one context (at least 1), from the
  context offsets starts <int>[C + 1]: the static width of a device gather."""
  return max(1, int(np.max(np.diff(starts), initial=0)))


def insertion_index(keys: jax.Array, queries: jax.Array,
                    side: str = 'left') -> jax.Array:
  """`jnp.searchsorted(keys, queries, side)` for sorted 1-D `keys` <[G]>,
  with no `while` loop on a GPU or TPU.

  There, a `while` reads its condition back on the host every iteration,
  and `jnp.searchsorted`'s default method is one: the keys are searched in
  blocks of ~sqrt(G) instead (`_blocked_index`). On CPU a `while` costs no
  round trip and the default binary search was faster in the whole sampler
  (every decoding control: 52.9 against 65.8 ms a sample), so the CPU keeps
  it; `jax.lax.platform_dependent` picks when the program is lowered.
  BUILD_NOTES.md, "Sampling without host round trips".

  Returns <int32>[queries.shape]: how many keys are < each query ('left')
  or <= it ('right').
  """
  return jax.lax.platform_dependent(
      keys, queries,
      cpu=lambda k, q: jnp.searchsorted(k, q, side=side).astype(jnp.int32),
      default=lambda k, q: _blocked_index(k, q, side))


def _blocked_index(keys: jax.Array, queries: jax.Array,
                   side: str) -> jax.Array:
  """`insertion_index` without a loop: each query is compared with the last
  key of every block of B ~ sqrt(G) keys, then with the B keys of its block
  (two vectorised passes, ~2 sqrt(G) comparisons and one slice).
  `jnp.searchsorted`'s loop-free methods were slower on CPU inside the
  sampling scan: `'scan_unrolled'` (XLA recomputes the unrolled steps in
  several fusions) and `'compare_all'` (O(G) a query)."""
  n = keys.shape[0]
  queries = jnp.asarray(queries, keys.dtype)
  if n == 0:
    return jnp.zeros(queries.shape, jnp.int32)
  if side == 'left':
    below = lambda k: k < queries[..., None]
  else:
    below = lambda k: k <= queries[..., None]
  size = min(n, 1 << ((n.bit_length() + 1) // 2))  # ~sqrt(n), at most n.
  # Whole blocks (each ends at a multiple of size) wholly below a query;
  # its answer lies in the next size keys: a slice that starts there, moved
  # back to end at the last key if it would run past it (the keys it gains
  # are below the query, and counted).
  first = jnp.sum(below(keys[size - 1::size]), axis=-1, dtype=jnp.int32)
  start = jnp.minimum(first * size, n - size)
  take = lambda s: jax.lax.dynamic_slice(keys, (s,), (size,))
  if start.ndim:
    block = jax.vmap(take)(start.reshape(-1)).reshape(start.shape + (size,))
  else:
    block = take(start)
  return start + jnp.sum(below(block), axis=-1, dtype=jnp.int32)


def lookup(keys: jax.Array, queries: jax.Array) -> jax.Array:
  """Index of each query in sorted `keys`, -1 where absent (or query < 0)."""
  idx = jnp.minimum(insertion_index(keys, queries), keys.shape[0] - 1)
  return jnp.where((queries >= 0) & (keys[idx] == queries), idx, -1)


def extend_ids(keys: tuple[jax.Array, ...], ids: jax.Array, token: jax.Array,
               vocab_size: int) -> jax.Array:
  """Reads `token`: ids <int32>[J] of the 1..J-grams ending at the last
  token (-1: not in the tables) become those ending at `token`.

  The j-gram ending at `token` is the (j-1)-gram before it, extended; keys[j]
  holds the sorted keys of the (j+1)-grams.
  """
  if not ids.shape[0]:
    return ids
  prefixes = jnp.concatenate([jnp.zeros((1,), jnp.int32), ids[:-1]])
  return jnp.stack([
      lookup(keys[j], jnp.where(prefixes[j] >= 0,
                                prefixes[j] * vocab_size + token, -1))
      for j in range(ids.shape[0])])
