"""Generating lyrics: prime on a seed, then one `lax.scan` on the device.

`generate` is a pure function of a step function, so it can be tested with
stubbed logits; `sample_text` wires it to a trained `CharLM`, alone or mixed
with its neural cache and n-grams (`mixture_step.DeviceMixture`: the default
inference `experiments.sample` uses).
"""

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.inference import MixtureSpec
from jaylyrics_jax.mixture_step import DeviceMixture
from jaylyrics_jax.mixture_step import initial_carry
from jaylyrics_jax.mixture_step import make_mixture_step
from jaylyrics_jax.model import CharLM
from jaylyrics_jax.model import zero_carries
from jaylyrics_jax.vocab import Vocabulary

MODES = ('weighted', 'argmax', 'combined')


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How each next character is chosen.

  mode: 'weighted' draws from the softmax, 'argmax' takes the most likely
    character, 'combined' draws right after a space and takes the argmax
    elsewhere (the original's mode 2).
  temperature: logits are divided by it before drawing (> 0).
  top_k: draw only among the k most likely characters (0 = all).
  top_p: draw only from the smallest set whose probability reaches top_p
    (nucleus sampling; 1.0 = all).
  min_copy_distance: attention models, and the caches of a mixture, copy
    only from positions at least this far back (0 = as trained and as
    scored), which keeps them out of copy loops.
  """
  mode: str = 'weighted'
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  min_copy_distance: int = 0

  def __post_init__(self):
    if self.min_copy_distance < 0:
      raise JaylyricsError('--min_copy_distance must be >= 0, got '
                           f'{self.min_copy_distance}.')
    if self.mode not in MODES:
      raise JaylyricsError(
          f'--sampling must be one of {", ".join(MODES)}, got {self.mode!r}.')
    if not self.temperature > 0:
      raise JaylyricsError(
          f'--temperature must be > 0, got {self.temperature}; use '
          '--sampling=argmax for greedy decoding.')
    if self.top_k < 0:
      raise JaylyricsError(f'--top_k must be >= 0, got {self.top_k}.')
    if not 0.0 < self.top_p <= 1.0:
      raise JaylyricsError(f'--top_p must be in (0, 1], got {self.top_p}.')


def filter_logits(logits: jax.Array, config: SamplingConfig) -> jax.Array:
  """Applies temperature, top-k and top-p to <float32>[V] logits."""
  logits = logits / config.temperature
  if config.top_k:
    kth = jax.lax.top_k(logits, min(config.top_k, logits.shape[-1]))[0][-1]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if config.top_p < 1.0:
    order = jnp.argsort(-logits)
    probs = jax.nn.softmax(logits[order])
    # Keep a character while the mass before it is still below top_p.
    keep_sorted = (jnp.cumsum(probs) - probs) < config.top_p
    keep = jnp.zeros_like(keep_sorted).at[order].set(keep_sorted)
    logits = jnp.where(keep, logits, -jnp.inf)
  return logits


def _last_positive(weights: jax.Array) -> jax.Array:
  """Index of the last entry > 0 of a 1-D array (the last index if none is)."""
  return weights.shape[0] - 1 - jnp.argmax(weights[::-1] > 0)


def draw(key: jax.Array, logits: jax.Array) -> jax.Array:
  """Draws one index from softmax(logits) by inverting the CDF.

  Exactly the categorical distribution, from ONE uniform number: the Gumbel
  trick of `jax.random.categorical` draws V of them, and generating 2,311
  threefry numbers per character was 3/4 of the sampling time on CPU. The
  CDF is inverted in two levels, over blocks of ~sqrt(V) characters and
  then inside the chosen block, so no prefix sum runs over all V entries
  (a full `cumsum` was half the cost of a draw on CPU; BUILD_NOTES.md).
  """
  v = logits.shape[-1]
  cols = max(1, math.isqrt(v - 1) + 1)
  rows = -(-v // cols)
  weights = jnp.exp(logits - jnp.max(logits))
  blocks = jnp.pad(weights, (0, rows * cols - v)).reshape(rows, cols)
  block_mass = jnp.sum(blocks, axis=1)
  block_cdf = jnp.cumsum(block_mass)
  u = jax.random.uniform(key, dtype=block_cdf.dtype) * block_cdf[-1]
  # The first block whose CDF passes u has positive mass; rounding can only
  # push the search past the end, so clip to the last block with mass.
  row = jnp.minimum(jnp.searchsorted(block_cdf, u, side='right'),
                    _last_positive(block_mass))
  block = blocks[row]
  rest = u - jnp.where(row > 0, block_cdf[jnp.maximum(row - 1, 0)], 0.0)
  col = jnp.minimum(jnp.searchsorted(jnp.cumsum(block), rest, side='right'),
                    _last_positive(block))
  return (row * cols + col).astype(jnp.int32)


def choose(logits: jax.Array, key: jax.Array, prev_token: jax.Array,
           space_id: int, config: SamplingConfig) -> jax.Array:
  """Picks the next token from <float32>[V] logits; returns <int32>[]."""
  greedy = jnp.argmax(logits).astype(jnp.int32)
  if config.mode == 'argmax':
    return greedy
  drawn = draw(key, filter_logits(logits, config))
  if config.mode == 'weighted':
    return drawn
  return jnp.where(prev_token == space_id, drawn, greedy)


def generate(step_fn: Callable[[Any, jax.Array], tuple[jax.Array, Any]],
             carry: Any, first_token: jax.Array, key: jax.Array, length: int,
             config: SamplingConfig, space_id: int = -1) -> jax.Array:
  """Generates `length` tokens after `first_token` in one `lax.scan`.

  Args:
    step_fn: (carry, token <int32>[]) -> (logits <float32>[V], carry).
    carry: the state after everything before `first_token`.
    first_token: <int32>[] the last character of the seed, not yet fed.
    key: split into one key per generated token.
    length: number of tokens to generate (static).
    config: how to choose each token.
    space_id: the id of ' ', for 'combined' mode.
  Returns:
    <int32>[length].
  """
  def body(state, step_key):
    carry, token = state
    logits, carry = step_fn(carry, token)
    token = choose(logits, step_key, token, space_id, config)
    return (carry, token), token

  _, tokens = jax.lax.scan(body, (carry, jnp.asarray(first_token, jnp.int32)),
                           jax.random.split(key, length))
  return tokens


def _sampling_model_config(model_config: ModelConfig,
                           config: SamplingConfig) -> ModelConfig:
  if config.min_copy_distance and model_config.attn_length:
    return dataclasses.replace(model_config,
                               attn_min_distance=config.min_copy_distance)
  return model_config


@functools.lru_cache(maxsize=32)
def _compiled_sampler(model_config: ModelConfig, length: int,
                      config: SamplingConfig, space_id: int):
  """One jitted function per (model, length, mode): primes, then generates.

  Returns f(params, seed_ids <int32>[S], keys <key>[N]) -> <int32>[N, length].
  """
  model_config = _sampling_model_config(model_config, config)
  model = CharLM(model_config)

  def step_fn(params, carry, token):
    logits, carry = model.apply({'params': params}, token[None, None], carry)
    return logits[0, 0], carry

  @jax.jit
  def sample_fn(params, seed_ids, keys):
    carry = zero_carries(model_config, 1)
    if seed_ids.shape[0] > 1:  # Feed all but the last seed character.
      _, carry = model.apply({'params': params}, seed_ids[None, :-1], carry)
    one = lambda k: generate(functools.partial(step_fn, params), carry,
                             seed_ids[-1], k, length, config, space_id)
    return jax.vmap(one)(keys)

  return sample_fn


@functools.lru_cache(maxsize=32)
def _compiled_mixture_sampler(model_config: ModelConfig, length: int,
                              config: SamplingConfig, space_id: int,
                              spec: MixtureSpec):
  """As `_compiled_sampler`, drawing from the mixture `spec`.

  Returns f(params, tables, seed_ids, keys) -> <int32>[N, length]. The seed
  is read one character at a time by the same step, so the caches hold it.
  """
  model_config = _sampling_model_config(model_config, config)
  step = make_mixture_step(model_config, spec,
                           max(1, config.min_copy_distance))

  @jax.jit
  def sample_fn(params, tables, seed_ids, keys):
    step_fn = functools.partial(step, params, tables)
    carry = initial_carry(model_config, spec, seed_ids.shape[0] + length)
    read = lambda c, token: (step_fn(c, token)[1], None)
    carry, _ = jax.lax.scan(read, carry, seed_ids[:-1])
    one = lambda k: generate(step_fn, carry, seed_ids[-1], k, length, config,
                             space_id)
    return jax.vmap(one)(keys)

  return sample_fn


def sample_tokens(params: Any, model_config: ModelConfig, seed_ids: np.ndarray,
                  key: jax.Array, length: int, config: SamplingConfig,
                  num_samples: int = 1, space_id: int = -1,
                  mixture: DeviceMixture | None = None) -> np.ndarray:
  """<int32>[num_samples, length]; sample i uses `split(key, num_samples)[i]`.

  With `mixture`, characters are drawn from the model mixed with its caches
  and n-grams; the modes, temperature, top-k and top-p then apply to the
  mixture's log-probabilities.
  """
  if length < 1:
    raise JaylyricsError(f'--length must be a positive integer, got {length}.')
  if num_samples < 1:
    raise JaylyricsError(
        f'--num_samples must be a positive integer, got {num_samples}.')
  if len(seed_ids) == 0:
    raise JaylyricsError(
        'The seed text is empty (after dropping unknown characters). Pass a '
        'seed of Chinese characters, e.g. --seed=从前.')
  keys = jax.random.split(key, num_samples)
  seed_ids = jnp.asarray(seed_ids, jnp.int32)
  if mixture is not None and mixture.spec.weights[0] < 1.0:
    fn = _compiled_mixture_sampler(model_config, length, config, space_id,
                                   mixture.spec)
    return np.asarray(fn(params, mixture.tables, seed_ids, keys))
  fn = _compiled_sampler(model_config, length, config, space_id)
  return np.asarray(fn(params, seed_ids, keys))


def sample_text(params: Any, model_config: ModelConfig, vocab: Vocabulary,
                seed: str, key: jax.Array, length: int = 200,
                config: SamplingConfig = SamplingConfig(),
                num_samples: int = 1, unknown: str = 'error',
                mixture: DeviceMixture | None = None) -> list[str]:
  """Samples `num_samples` texts, each the seed followed by `length` characters.

  Characters of `seed` outside the vocabulary raise a `JaylyricsError` listing
  them (unknown='error') or are dropped (unknown='skip'). `mixture`: see
  `sample_tokens`.
  """
  if not seed:
    raise JaylyricsError(
        'The seed text is empty. Pass a seed of Chinese characters, e.g. '
        '--seed=从前.')
  seed_ids = vocab.encode(seed, unknown=unknown)
  used_seed = vocab.decode(seed_ids)
  space_id = vocab.chars.index(' ') if ' ' in vocab else -1
  tokens = sample_tokens(params, model_config, seed_ids, key, length, config,
                         num_samples, space_id, mixture)
  return [used_seed + vocab.decode(row) for row in tokens]


def copy_rate(generated: str, train_text: str, n: int = 4) -> float:
  """Share of the generated n-character strings (spaces removed) that occur
  verbatim in the training text (spaces removed too); nan if there are none.

  A low bits-per-character must not come from reciting the training lyrics.
  """
  train = train_text.replace(' ', '')
  seen = {train[i:i + n] for i in range(len(train) - n + 1)}
  text = generated.replace(' ', '')
  grams = [text[i:i + n] for i in range(len(text) - n + 1)]
  if not grams:
    return float('nan')
  return sum(g in seen for g in grams) / len(grams)
