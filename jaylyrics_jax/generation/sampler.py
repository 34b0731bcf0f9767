"""The on-device sampler: prime on a seed, then one `lax.scan`.

`generate` / `decode` are pure functions of a step function and a
`processors.Chain`, so they can be tested with stubbed logits;
`sample_tokens` wires them to a trained `CharLM`, alone or mixed with its
neural cache and n-grams (`scoring.mixture.DeviceMixture`: the default
inference), compiled once per model, chain and length. Turning settings into
a chain (`jaylyrics_jax.generation.controls`) and text into lyrics
(`jaylyrics_jax.generation.lyrics`) happen on the host, above this module.

On a GPU, a `while` loop inside the scan reads its condition back on the
host every iteration, so the step has none there: sorted searches are
loop-free (`draw_at`; `scoring.ngram.insertion_index` off CPU), the uniform
numbers are drawn before the scan, and a test checks the program lowered for
CUDA (tests/generation/test_sampler_hlo.py). Device rule: the sampler runs where
JAX puts it (the default device); no rule moves batch-1 sampling to the
host CPU yet. The rule to test on a GPU machine (BUILD_NOTES.md, "Sampling
without host round trips"): batch-1 calls on the CPU when a GPU is the
default device and `experiments.benchmark` measures `sample_200_ms` there
above the CPU's; batches (best-of, many samples) stay on the GPU.
"""

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.config import MAX_DRAWS
from jaylyrics_jax.config import MAX_LENGTH
from jaylyrics_jax.config import MAX_ROWS
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation import processors
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.scoring.mixture import DeviceMixture
from jaylyrics_jax.scoring.mixture import initial_carry
from jaylyrics_jax.scoring.mixture import make_mixture_step
from jaylyrics_jax.scoring.mixture import MixtureSpec

def _last_positive(weights: jax.Array) -> jax.Array:
  """Index of the last entry > 0 of a 1-D array (the last index if none is)."""
  return weights.shape[0] - 1 - jnp.argmax(weights[::-1] > 0)


def draw(key: jax.Array, logits: jax.Array) -> jax.Array:
  """Draws one index from softmax(logits) by inverting the CDF.

  Exactly the categorical distribution, from ONE uniform number: the Gumbel
  trick of `jax.random.categorical` draws V of them, and generating 2,311
  threefry numbers per character was 3/4 of the sampling time on CPU.
  `draw_at` inverts the CDF at that number.
  """
  return draw_at(jax.random.uniform(key, dtype=jnp.float32), logits)


def draw_at(u: jax.Array, logits: jax.Array) -> jax.Array:
  """The index whose interval of softmax(logits)'s CDF holds u <float32>[]
  in [0, 1): `draw` given its uniform number.

  The CDF is inverted in two levels, over blocks of ~sqrt(V) characters and
  then inside the chosen block, so no prefix sum runs over all V entries
  (a full `cumsum` was half the cost of a draw on CPU; BUILD_NOTES.md).
  Both searches compare u with every entry of a ~sqrt(V)-entry CDF
  (`method='compare_all'`, as fast as a binary search at that size on CPU):
  `jnp.searchsorted`'s default method is a `while` loop, and on a GPU each
  of its iterations is a round trip to the host.

  Always returns an index in [0, V), whatever the logits hold: NaN entries
  are never drawn, +inf entries share all the mass, and when nothing can be
  drawn (every entry -inf or NaN) the draw is uniform over all V. Finite
  logits give the same draws as without these guards.
  """
  v = logits.shape[-1]
  cols = max(1, math.isqrt(v - 1) + 1)
  rows = -(-v // cols)
  top = jnp.max(jnp.where(jnp.isnan(logits), -jnp.inf, logits))
  # inf - inf is NaN: the entries equal to the top weigh 1, as they do when
  # it is finite; NaN logits weigh 0.
  weights = jnp.where(logits == top, 1.0, jnp.exp(logits - top))
  weights = jnp.where(jnp.isnan(weights), 0.0, weights)
  weights = jnp.where(jnp.sum(weights) > 0, weights, 1.0)
  blocks = jnp.pad(weights, (0, rows * cols - v)).reshape(rows, cols)
  block_mass = jnp.sum(blocks, axis=1)
  block_cdf = jnp.cumsum(block_mass)
  u = u.astype(block_cdf.dtype) * block_cdf[-1]
  # The first block whose CDF passes u has positive mass; rounding can only
  # push the search past the end, so clip to the last block with mass.
  row = jnp.minimum(jnp.searchsorted(block_cdf, u, side='right',
                                     method='compare_all'),
                    _last_positive(block_mass))
  block = blocks[row]
  rest = u - jnp.where(row > 0, block_cdf[jnp.maximum(row - 1, 0)], 0.0)
  col = jnp.minimum(jnp.searchsorted(jnp.cumsum(block), rest, side='right',
                                     method='compare_all'),
                    _last_positive(block))
  return jnp.minimum(row * cols + col, v - 1).astype(jnp.int32)


@flax.struct.dataclass
class DecodeState:
  """Where generation stands: the step function's carry, the last token
  (chosen, not yet fed to the step) and the processors' states."""
  carry: Any
  token: jax.Array
  processors: Any


def decode(step_fn: Callable[[Any, jax.Array], tuple[jax.Array, Any]],
           state: DecodeState, step_keys: jax.Array, chain: processors.Chain,
           tables: tuple[Any, ...] = (), every_state: bool = False,
           bias: jax.Array | None = None
           ) -> tuple[jax.Array, jax.Array, DecodeState]:
  """One token per key in one `lax.scan`.

  Each step feeds `state.token` to `step_fn`, lets the chain read it and
  change the logits, and draws the next token as `draw` does (the only
  draw: greedy decoding is a processor that leaves one character). The
  uniform numbers of all the steps are drawn before the scan, in one
  vectorised call (in the loop, threefry was a `while` of its own: jax rolls
  its rounds into one on CPU); the tokens are those of `draw(step_key, ...)`
  step by step.

  Args:
    step_fn: (carry, token <int32>[]) -> (logits <float32>[V], carry).
    state: where to start; `generate` makes the first one.
    step_keys: <key>[L] one key per token.
    chain, tables: the processors and their tables (`controls.build_decoder`).
    every_state: return the state after every token, not only the last
    (a static choice; the line writer keeps the state at a chosen line's
    end this way instead of reading the line again).
    bias: None, or <float32>[L, V] added to step i's logits after the
    processors (the line writer's rhyme-seeking candidates): it changes
    what is drawn, not log_probs.
  Returns:
    tokens <int32>[L]; log_probs <float32>[L], each token's log-probability
    under step_fn's own distribution (before the processors); the state
    after the last token, from which `decode` continues exactly as if the
    scan had been longer (with every_state, the states after each token,
    stacked on a leading axis of L).
  """
  def body(state, x):
    u, add = x
    logits, carry = step_fn(state.carry, state.token)
    changed, proc = chain.update(logits, state.processors, state.token,
                                 tables)
    token = draw_at(u, changed if add is None else changed + add)
    new = DecodeState(carry, token, proc)
    return new, (token, logits, new if every_state else None)

  uniforms = jax.vmap(lambda k: jax.random.uniform(k, dtype=jnp.float32))(
      step_keys)
  state, (tokens, logits, states) = jax.lax.scan(body, state,
                                                 (uniforms, bias))
  if every_state:
    state = states
  # One batched log-softmax after the scan: inside the loop it cost a third
  # of a step (BUILD_NOTES.md, "Decoding").
  log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, None],
                                  axis=1)[:, 0]
  return tokens, log_probs, state


def generate(step_fn: Callable[[Any, jax.Array], tuple[jax.Array, Any]],
             carry: Any, first_token: jax.Array, key: jax.Array, length: int,
             chain: processors.Chain = processors.Chain(),
             tables: tuple[Any, ...] = (), states: Any = None
             ) -> tuple[jax.Array, jax.Array, DecodeState]:
  """Generates `length` tokens after `first_token`; see `decode`.

  A pure function: jit it (or call it inside your own jitted code) once per
  shape and chain; the temperature and top-p live in `tables`, so sweeping
  them (or vmapping over them) does not recompile.

  Args:
    step_fn: (carry, token <int32>[]) -> (logits <float32>[V], carry).
    carry: the state after everything before `first_token`.
    first_token: <int32>[] the last character of the seed, not yet fed.
    key: split into one key per generated token.
    length: number of tokens to generate (static).
    chain, tables: the processors; the default draws from the softmax.
    states: the chain's states after reading the seed (default: fresh).
  Returns:
    (tokens <int32>[length], log_probs <float32>[length], final state).
  """
  if states is None:
    states = chain.init(tables)
  state = DecodeState(carry, jnp.asarray(first_token, jnp.int32), states)
  return decode(step_fn, state, jax.random.split(key, length), chain, tables)


def _copy_distances(model_config: ModelConfig,
                    min_copy_distance: int) -> tuple[ModelConfig, int]:
  """`SamplingConfig.min_copy_distance`, applied once: the model config to
  sample with (attention copies only from at least that far back; 0 = as
  trained) and the caches' minimum distance (>= 1; 1 = all)."""
  if min_copy_distance and model_config.attn_length:
    model_config = dataclasses.replace(model_config,
                                       attn_min_distance=min_copy_distance)
  return model_config, max(1, min_copy_distance)


@dataclasses.dataclass(frozen=True)
class ModelFunctions:
  """How a sampler reads characters with a trained model (alone or in its
  default inference mixture), as pure functions of (params, mix_tables):

    step(params, mix_tables, carry, token <int32>[])
        -> (logits <float32>[V], carry)
    fresh_carry() -> the carry before anything is read
    prime(params, mix_tables, seed_ids <int32>[S])
        -> the carry after seed_ids[:-1]
  """
  step: Callable
  fresh_carry: Callable
  prime: Callable
  vocab_size: int

  def start_state(self, params, mix_tables, chain: processors.Chain,
                  tables: tuple[Any, ...], seed_ids: jax.Array
                  ) -> 'DecodeState':
    """The state after the seed: the model has read all but its last
    character, the chain every character but the last."""
    states = chain.init(tables)
    if chain.processors:
      read = lambda s, token: (chain.read(s, token, tables, self.vocab_size),
                               None)
      states = jax.lax.scan(read, states, seed_ids[:-1])[0]
    return DecodeState(self.prime(params, mix_tables, seed_ids),
                       seed_ids[-1], states)

  def padded_start_state(self, params, mix_tables, chain: processors.Chain,
                         tables: tuple[Any, ...], seed_ids: jax.Array,
                         seed_len: jax.Array) -> 'DecodeState':
    """`start_state` of seed_ids[:seed_len], the seed padded past seed_len
    and read one character at a time (the padding skipped), so seeds of
    every length up to seed_ids' share one compiled program."""
    def read(both, x):
      i, token = x
      new = (self.step(params, mix_tables, both[0], token)[1],
             chain.read(both[1], token, tables, self.vocab_size))
      return jax.tree.map(lambda n, o: jnp.where(i < seed_len - 1, n, o),
                          new, both), None

    both = (self.fresh_carry(), chain.init(tables))
    steps = (jnp.arange(seed_ids.shape[0]), seed_ids)
    carry, states = jax.lax.scan(read, both, steps)[0]
    return DecodeState(carry, seed_ids[seed_len - 1], states)


def model_functions(model_config: ModelConfig, spec: MixtureSpec | None,
                    min_copy_distance: int,
                    history_length: int) -> ModelFunctions:
  """The `ModelFunctions` of `model_config` (spec None: the model alone),
  with SamplingConfig.min_copy_distance applied; history_length: tokens
  read in all (the n-gram cache's capacity)."""
  model_config, cache_distance = _copy_distances(model_config,
                                                 min_copy_distance)
  if spec is None:
    model = CharLM(model_config)
    fresh = lambda: zero_carries(model_config, 1, generation=True)

    def step(params, mix_tables, carry, token):
      del mix_tables
      logits, carry = model.apply({'params': params}, token[None, None], carry)
      return logits[0, 0], carry

    def prime(params, mix_tables, seed_ids):
      carry = fresh()
      if seed_ids.shape[0] > 1:  # Feed all but the last seed character.
        _, carry = model.apply({'params': params}, seed_ids[None, :-1], carry)
      return carry
  else:
    step = make_mixture_step(model_config, spec, cache_distance)
    fresh = lambda: initial_carry(model_config, spec, history_length)

    def prime(params, mix_tables, seed_ids):
      # The seed is read one character at a time, so the caches hold it.
      read = lambda c, token: (step(params, mix_tables, c, token)[1], None)
      return jax.lax.scan(read, fresh(), seed_ids[:-1])[0]
  return ModelFunctions(step, fresh, prime, model_config.vocab_size)


@functools.lru_cache(maxsize=32)
def _compiled(model_config: ModelConfig, chain: processors.Chain,
              spec: MixtureSpec | None, min_copy_distance: int,
              history_length: int, padded: bool = False):
  """The jitted start and continue functions of one sampler.

  start(params, mix_tables, tables, seed_ids <int32>[S], seed_len <int32>[],
  keys <key>[N, L]) primes on the seed and generates N rows; resume(params,
  mix_tables, tables, states, keys) continues from `start`'s (or its own)
  states. Both return (tokens <int32>[N, L], log_probs <float32>[N, L],
  states). `padded`: seed_ids is padded past seed_len and the seed is read
  one character at a time, the padding skipped, so seeds of every length up
  to S share one compiled program (a server's seeds); otherwise seed_len is
  S and the model reads the seed in one call.
  """
  fns = model_functions(model_config, spec, min_copy_distance, history_length)
  step = fns.step

  def run(params, mix_tables, tables, state, keys, shared=False):
    step_fn = functools.partial(step, params, mix_tables)
    one = lambda s, k: decode(step_fn, s, k, chain, tables)
    # A state shared by every row (after the seed) is not copied per row.
    return jax.vmap(one, in_axes=(None if shared else 0, 0))(state, keys)

  @jax.jit
  def start(params, mix_tables, tables, seed_ids, seed_len, keys):
    if padded:
      state = fns.padded_start_state(params, mix_tables, chain, tables,
                                     seed_ids, seed_len)
    else:
      state = fns.start_state(params, mix_tables, chain, tables, seed_ids)
    return run(params, mix_tables, tables, state, keys, shared=True)

  return start, jax.jit(run)


def step_keys(key: jax.Array, num_samples: int, length: int) -> jax.Array:
  """<key>[num_samples, length]: row i is split(split(key, n)[i], length),
  the keys one scan of `length` steps would use for sample i."""
  return jax.vmap(lambda k: jax.random.split(k, length))(
      jax.random.split(key, num_samples))


def check_request(seed_ids: np.ndarray, length: int, num_samples: int,
                  pad_seed_to: int = 0) -> None:
  """Raises a `JaylyricsError` for a sampling request out of bounds: the
  length, the rows (samples x candidates), their product, an empty seed, a
  padding shorter than the seed. Every writer checks here."""
  if not 1 <= length <= MAX_LENGTH:
    raise JaylyricsError(f'length={length}: must be in 1..{MAX_LENGTH}.')
  if not 1 <= num_samples <= MAX_ROWS:
    raise JaylyricsError(f'num_samples={num_samples}: must be in '
                         f'1..{MAX_ROWS} (samples x candidates).')
  if num_samples * length > MAX_DRAWS:
    raise JaylyricsError(
        f'num_samples={num_samples} x length={length}: at most {MAX_DRAWS} '
        'characters in one call; ask for fewer samples or characters.')
  if len(seed_ids) == 0:
    raise JaylyricsError(
        'The seed text is empty (after dropping unknown characters). Pass a '
        'seed of Chinese characters, e.g. seed="从前".')
  if pad_seed_to and pad_seed_to < len(seed_ids):
    raise JaylyricsError(f'pad_seed_to={pad_seed_to} is shorter than the '
                         f'seed ({len(seed_ids)} characters).')


def sample_tokens(params: Any, model_config: ModelConfig, seed_ids: np.ndarray,
                  key: jax.Array, length: int, chain: processors.Chain,
                  tables: tuple[Any, ...] = (), num_samples: int = 1,
                  mixture: DeviceMixture | None = None,
                  min_copy_distance: int = 0, chunk: int = 0,
                  on_chunk: Callable[[int], None] | None = None,
                  pad_seed_to: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Samples `num_samples` rows of `length` tokens after the seed.

  Row i uses the keys `step_keys(key, num_samples, length)[i]`. With
  `mixture` (the part to draw from: `scoring.mixture.for_generation`),
  characters are drawn from the model mixed with its caches and n-grams;
  None draws from the model alone. With `chunk` > 0 the rows are generated
  `chunk` tokens at a time by the same compiled scan, the state passed on
  (the same tokens as one scan), calling `on_chunk(tokens_done)` after
  each: a long text shows progress and can be interrupted between chunks. With `pad_seed_to` >= the
  seed's length, every seed up to that length uses one compiled program
  (the seed is read a character at a time; the same distribution, though
  not always bit-identical to reading it in one call).

  Returns (tokens <int32>[num_samples, length], log_probs <float32>[same]).
  """
  check_request(seed_ids, length, num_samples, pad_seed_to)
  seed_len = len(seed_ids)
  if pad_seed_to:
    seed_ids = np.pad(np.asarray(seed_ids), (0, pad_seed_to - seed_len))
  seed_ids = jnp.asarray(seed_ids, jnp.int32)
  spec = mixture.spec if mixture is not None else None
  mix_tables = mixture.tables if mixture is not None else None
  start, resume = _compiled(model_config, chain, spec, min_copy_distance,
                            int(seed_ids.shape[0]) + length,
                            bool(pad_seed_to))
  keys = step_keys(key, num_samples, length)
  chunk = length if chunk <= 0 else min(chunk, length)
  tokens, log_probs = [], []
  state = None
  for begin in range(0, length, chunk):
    part = keys[:, begin:begin + chunk]
    if state is None:
      t, lp, state = start(params, mix_tables, tables, seed_ids,
                           jnp.int32(seed_len), part)
    else:
      t, lp, state = resume(params, mix_tables, tables, state, part)
    tokens.append(np.asarray(t))
    log_probs.append(np.asarray(lp))
    if on_chunk is not None:
      on_chunk(begin + part.shape[1])
  return np.concatenate(tokens, axis=1), np.concatenate(log_probs, axis=1)
