r"""Times the parts of the sampling step that can be written more than one way.

  python -m experiments.loop_costs [--json] [--repeats=N]

1. Sorted searches at the sizes the sampler searches: `sampler.draw` a block
   CDF of ~48 entries and a block of ~49; `scoring.ngram.lookup` the n-gram
   keys (the Kneser-Ney step of the mixture and max-copy, ~2k to ~46k keys),
   one search a step, and `chain_7` the seven lookups a step of max-copy's
   n-gram ids (`ngram.extend_ids`) on tables of the real copy tables' sizes.
   `jnp.searchsorted`'s methods (the default, `scan`, is a `while` loop in
   the compiled program, what `ngram.insertion_index` runs on CPU; `sort`
   only up to 2k entries, it is ms beyond) and the loop-free search it runs
   on other backends (`blocked`).
2. The whole sampler, 200 characters after a 2-character seed, batch 1,
   with every decoding control (model alone) and with the model mixed with
   a 6-gram (no control), `ngram.lookup` searching with each method
   (`sampler_controlled_*`, `sampler_mixture_*`, ms a call).
3. `processors.NoRepeat` reading a character: a `lax.cond` between the space
   and the character branch (what the library does), or both branches
   computed and one selected (`jnp.where`).

Each figure is one `lax.scan` of --steps steps, one operation a step (the
input depends on the carry, so nothing is hoisted out of the loop), in
microseconds per step: the median of repeats that alternate between the
variants in this one process. `none` is the same scan with one comparison
instead of the search: the loop's own cost. With --json the last line is
one JSON object.
"""

import dataclasses
import functools
import json
import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
import jaylyrics_jax as jl
from jaylyrics_jax.data import corpus
from jaylyrics_jax.generation import controls
from jaylyrics_jax.generation import processors
from jaylyrics_jax.generation import sampler
from jaylyrics_jax.scoring import mixture
from jaylyrics_jax.scoring import ngram
from jaylyrics_jax.scoring import tuning

JSON = flags.DEFINE_bool('json', False, 'End with one JSON line of figures.')
REPEATS = flags.DEFINE_integer('repeats', 15, 'Timed repeats per figure.',
                               lower_bound=1)
STEPS = flags.DEFINE_integer('steps', 1000, 'Scan steps per timed call.',
                             lower_bound=1)
PARTS = flags.DEFINE_multi_enum('parts', ['search', 'sampler', 'no_repeat'],
                                ['search', 'sampler', 'no_repeat'],
                                'What to time.')
CORPUS = flags.DEFINE_string(
    'corpus', corpus.DEFAULT_CORPUS_PATH,
    'The lyrics the sampler part builds its vocabulary, copy tables and '
    '6-gram from (the part is skipped without it).')
SAMPLER_METHODS = ('scan', 'scan_unrolled', 'blocked')
METHODS = ('scan', 'scan_unrolled', 'compare_all', 'sort', 'blocked')
SORT_UP_TO = 2_280
# Block CDF (draw), inner block (draw), then n-gram key tables: the sizes of
# the 6-gram Kneser-Ney orders and the 8-gram copy table of the real corpus.
SIZES = {'cdf_48': 48, 'block_49': 49, 'keys_2k': 2_280, 'keys_16k': 15_605,
         'keys_33k': 32_665, 'keys_46k': 46_000}
# The 2..8-gram copy tables of max_copy=7 (real corpus, 90% for training).
CHAIN = (17_089, 25_264, 27_449, 28_154, 28_597, 28_973, 29_306)
VOCAB = 2311


def _search(sorted_values, query, method: str | None, side='right'):
  if method is None:
    return (query > sorted_values[0]).astype(jnp.int32)
  if method == 'blocked':  # The GPU's search.
    return ngram._blocked_index(sorted_values, query, side)  # pylint: disable=protected-access
  return jnp.searchsorted(sorted_values, query, side=side, method=method)


def _search_scan(sorted_values: jax.Array, method: str | None, steps: int):
  """A jitted scan doing one search a step."""
  n = sorted_values.shape[0]
  floats = sorted_values.dtype == jnp.float32

  def body(carry, i):
    if floats:  # A uniform number times the total, as draw makes it.
      query = sorted_values[-1] * jnp.mod(carry * 0.618 + i * 0.1, 1.0)
    else:  # A present key or one just above it, as lookup meets them.
      query = sorted_values[(carry + i * 7919) % n] + (i % 2)
    found = _search(sorted_values, query, method)
    return found.astype(carry.dtype) + (carry * 0.5 if floats else 0), found

  return jax.jit(lambda v: jax.lax.scan(
      body, jnp.zeros((), v.dtype), jnp.arange(steps, dtype=v.dtype)))


def _chain_scan(method: str | None, steps: int):
  """A jitted scan doing `ngram.extend_ids`'s lookups a step, `method`'s
  search in `ngram.lookup`."""
  def lookup(keys, query):
    idx = jnp.minimum(_search(keys, query, method, 'left'), keys.shape[0] - 1)
    return jnp.where((query >= 0) & (keys[idx] == query), idx, -1)

  def body(carry, i, tables):
    ids, token = carry
    prefixes = jnp.concatenate([jnp.zeros((1,), jnp.int32), ids[:-1]])
    ids = jnp.stack([
        lookup(keys, jnp.where(p >= 0, p * VOCAB + token, -1))
        for keys, p in zip(tables, prefixes)])
    return (ids, (ids.sum() + i * 7) % 300), ids[-1]

  return jax.jit(lambda tables: jax.lax.scan(
      lambda c, i: body(c, i, tables),
      (jnp.full((len(CHAIN),), -1, jnp.int32), jnp.int32(0)),
      jnp.arange(steps, dtype=jnp.int32))[1])


def _search_runs(steps: int) -> dict:
  rng = np.random.default_rng(0)
  runs = {}
  for name, n in SIZES.items():
    if name.startswith(('cdf', 'block')):
      values = np.cumsum(rng.exponential(size=n)).astype(np.float32)
    else:  # Distinct sorted int32 keys, spread like n-gram keys.
      values = np.unique(rng.integers(0, 2**31 - 2, size=n * 2))[:n]
      values = values.astype(np.int32)
    values = jnp.asarray(values)
    for method in (None,) + METHODS:
      if method == 'sort' and n > SORT_UP_TO:
        continue
      runs[f'{name}_{method or "none"}'] = (
          _search_scan(values, method, steps), (values,))
  tables = tuple(  # Keys below V * V: the ids of n-grams times V, plus w.
      jnp.asarray(np.sort(rng.choice(VOCAB * 2**17, n, replace=False)),
                  jnp.int32) for n in CHAIN)
  for method in (None,) + METHODS:
    if method not in ('sort', 'compare_all'):  # ms a step at these sizes.
      runs[f'chain_7_{method or "none"}'] = (_chain_scan(method, steps),
                                             (tables,))
  return runs


def _sampler_runs() -> dict:
  """The compiled sampler once per search method of `ngram.lookup`."""
  if not os.path.exists(CORPUS.value):
    print(f'sampler: skipped (no corpus at {CORPUS.value})')
    return {}
  text = jl.load_clean_text(CORPUS.value)
  vocab = jl.build_vocabulary(text)
  ids, vocab_size = vocab.encode(text), vocab.size
  train = text[:int(0.9 * len(text))]
  config = jl.ModelConfig(vocab_size=vocab_size)
  params = jl.init_params(config, jax.random.key(0))
  kn = tuning.kneser_ney(ids[:int(0.9 * len(ids))], vocab_size, 6)
  mix = mixture.device_mixture(
      mixture.MixtureSpec((0.8, 0.0, 0.2, 0.0), ngram_order=6), kn)
  seed = jnp.asarray(vocab.encode(vocab.chars[1] + vocab.chars[2]), jnp.int32)
  keys = sampler.step_keys(jax.random.key(1), 1, 200)
  runs = {}
  library_search = ngram.insertion_index
  try:
    for method in SAMPLER_METHODS:
      # Traced with this method in ngram.lookup (restored below).
      ngram.insertion_index = functools.partial(_search, method=method,
                                                side='left')
      for name, settings, m in (
          ('controlled', jl.SamplingConfig(mixture='tuned'), None),
          ('mixture', jl.SamplingConfig(mixture='tuned').controls_off(), mix)):
        decoder = controls.build_decoder(settings, vocab, train, 202)
        sampler._compiled.cache_clear()  # pylint: disable=protected-access
        start, _ = sampler._compiled(  # pylint: disable=protected-access
            config, decoder.chain, m.spec if m else None,
            settings.min_copy_distance, 202)
        args = (params, m.tables if m else None, decoder.tables, seed,
                jnp.int32(2), keys)
        jax.block_until_ready(start(*args))  # Compile now, with the method.
        runs[f'sampler_{name}_{method}'] = (start, args)
  finally:
    ngram.insertion_index = library_search
    sampler._compiled.cache_clear()  # pylint: disable=protected-access
  return runs


@dataclasses.dataclass(frozen=True)
class NoRepeatSelect(processors.NoRepeat):
  """`NoRepeat` with both reading branches computed and one selected."""

  def _read(self, state, token):
    space = self._read_space(state)
    char = self._read_char(state, token)
    return jax.tree.map(
        lambda a, b: jnp.where(token == self.space_id, a, b), space, char)


def _no_repeat_runs(steps: int) -> dict:
  """NoRepeat(4) over a 256-character window, a space every ~9 characters,
  as the default controls run it; the chosen token feeds the next step."""
  space_id = VOCAB - 1
  runs = {}
  for name, cls in (('no_repeat_cond', processors.NoRepeat),
                    ('no_repeat_select', NoRepeatSelect)):
    proc = cls(4, space_id, 256)

    def run(logits, proc=proc):
      def body(carry, i):
        state, token = carry
        changed, state = proc.update(logits + i, state, token, None)
        # Some banned character's neighbour, a space every 9th step.
        nxt = (jnp.argmin(changed) + i * 7) % 200
        nxt = jnp.where(i % 9 == 8, space_id, nxt).astype(jnp.int32)
        return (state, nxt), nxt
      init = (proc.init(None), jnp.zeros((), jnp.int32))
      return jax.lax.scan(body, init, jnp.arange(steps))[1]

    runs[name] = (jax.jit(run), (jnp.zeros((VOCAB,), jnp.float32),))
  return runs


def _time(runs: dict, repeats: int, steps: int) -> dict:
  for fn, args in runs.values():
    jax.block_until_ready(fn(*args))  # Compile.
  times = {key: [] for key in runs}
  for _ in range(repeats):
    for key, (fn, args) in runs.items():  # Alternate every repeat.
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[key].append((time.perf_counter() - start) * 1e6 / steps)
  return {f'{key}_us': statistics.median(t) for key, t in times.items()}


def main(argv):
  del argv
  steps = STEPS.value
  figures = {'platform': jax.default_backend(),
             'device': jax.devices()[0].device_kind,
             'jax_version': jax.__version__}
  print(f"{figures['platform']} ({figures['device']}), jax "
        f"{figures['jax_version']}; us per scan step ({steps} steps), median "
        f'of {REPEATS.value} alternating repeats', flush=True)
  if 'search' in PARTS.value:
    searched = _time(_search_runs(steps), REPEATS.value, steps)
    figures.update(searched)
    columns = ('none',) + METHODS
    print(f"{'size':>10} " + ' '.join(f'{m:>13}' for m in columns))
    for name in tuple(SIZES) + ('chain_7',):
      print(f'{name:>10} ' + ' '.join(
          f"{searched.get(f'{name}_{m}_us', float('nan')):13.2f}"
          for m in columns), flush=True)
  if 'sampler' in PARTS.value:
    timed = _time(_sampler_runs(), REPEATS.value, 1000)  # us -> ms
    figures.update({k.replace('_us', '_ms'): v for k, v in timed.items()})
    for name in ('controlled', 'mixture'):
      print(f'sampler 200 chars, {name}: ' + ', '.join(
          f"{m} {timed[f'sampler_{name}_{m}_us']:.2f} ms"
          for m in SAMPLER_METHODS if f'sampler_{name}_{m}_us' in timed),
            flush=True)
  if 'no_repeat' in PARTS.value:
    no_repeat = _time(_no_repeat_runs(steps), REPEATS.value, steps)
    figures.update(no_repeat)
    print('NoRepeat read: ' + ', '.join(f'{k[:-3]} {v:.2f}'
                                         for k, v in no_repeat.items()),
          flush=True)
  if JSON.value:
    print(json.dumps(figures), flush=True)


if __name__ == '__main__':
  common.run(main)
