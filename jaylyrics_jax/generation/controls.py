"""From a `SamplingConfig` to the processor chain the sampler runs.

`build_decoder` turns the settings into a `processors.Chain` (static: which
controls, their sizes) and its tables (device arrays: the rhyme table, the
training n-grams for max_copy, the temperature and top-p), once per call on
the host. The sampler (`generation.sampler`) runs the chain inside its
`lax.scan` and knows nothing of pypinyin or the training text.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.generation import processors
from jaylyrics_jax.scoring import ngram
from jaylyrics_jax.scoring.realism import line_length_bounds

# Shortest line, lower quartile and longest line when the training text is
# not at hand (those of the Jay Chou corpus: BUILD_NOTES.md, "Decoding").
FALLBACK_LINE_BOUNDS = (3, 4, 13)
MAX_WINDOW = 1024  # Characters the no-repeat control remembers at most.


@dataclasses.dataclass(frozen=True)
class Decoder:
  """A chain, its tables, and what the host needs to cut the output.

  space_id: the id of ' ' (-1 without one); lines: stop after this many.
  """
  chain: processors.Chain
  tables: tuple[Any, ...]
  space_id: int
  lines: int = 0


def bucket(n: int, smallest: int) -> int:
  """The power of two >= n, at least `smallest`: close sizes share one
  compiled sampler."""
  return max(smallest, 1 << max(0, (n - 1).bit_length()))


@functools.lru_cache(maxsize=8)
def rhyme_table(chars: tuple[str, ...]) -> np.ndarray:
  """<int32>[V]: each character's rhyme group (-1: none), once per
  vocabulary."""
  return rhyme.rhyme_table(chars)


def copy_tables(train_ids: np.ndarray, vocab_size: int, n: int,
                space_id: int) -> tuple[processors.CopyTables, int]:
  """The training n-grams `processors.MaxCopy` looks up, and its width."""
  ids = np.asarray(train_ids)
  ids = ids[ids != space_id]
  keys = ngram.ngram_keys(ids, vocab_size, n + 1)
  too_many = (f'max_copy={n}: the training text has too many n-grams to '
              'number in 32 bits. Use a smaller one.')
  device_keys = tuple(ngram.device_keys(k, too_many) for k in keys)
  contexts = keys[n] // vocab_size
  starts = np.searchsorted(contexts, np.arange(len(keys[n - 1]) + 1))
  tables = processors.CopyTables(keys=device_keys,
                                 starts=jnp.asarray(starts, jnp.int32))
  return tables, ngram.max_width(starts)


# Per training text, built once: a sampling call reuses them (encoding the
# ~46k-character text alone took ~10 ms a call). str hashes are cached by
# Python, so the text is not rehashed either.
@functools.lru_cache(maxsize=4)
def _line_bounds(train_text: str) -> tuple[int, int, int]:
  return line_length_bounds(train_text)


def line_bounds(config: SamplingConfig, train_text: str | None,
                warn: Callable[[str], None] = lambda message: None
                ) -> tuple[int, int, int]:
  """(shortest line, length from which rhymes are favoured, longest line)
  of `config`: min_line/max_line, with -1 taken from the training text's
  line lengths (`realism.line_length_bounds`; FALLBACK_LINE_BOUNDS and a
  `warn` without it). 0 stays 0 (no bound)."""
  if train_text is not None:
    low, quartile, high = _line_bounds(train_text)
  else:
    low, quartile, high = FALLBACK_LINE_BOUNDS
    if -1 in (config.min_line, config.max_line):
      warn('the training text is not at hand: lines of '
           f'{low}..{high} characters.')
  return (low if config.min_line == -1 else config.min_line, quartile,
          high if config.max_line == -1 else config.max_line)


@functools.lru_cache(maxsize=4)
def _training_copy_tables(train_text: str, chars: tuple[str, ...], n: int):
  vocab = Vocabulary(chars)
  ids = vocab.encode(train_text, unknown='skip')
  space_id = chars.index(' ') if ' ' in chars else -1
  return copy_tables(ids, len(chars), n, space_id)


def build_decoder(config: SamplingConfig, vocab: Vocabulary,
                  train_text: str | None = None, total_length: int = 200,
                  warn: Callable[[str], None] = lambda message: None
                  ) -> Decoder:
  """The chain for `config`.

  Args:
    config: the settings.
    vocab: the model's vocabulary.
    train_text: the run's training text, for max_copy and the default line
      bounds; without it max_copy is off and the bounds are
      FALLBACK_LINE_BOUNDS (each with a `warn`).
    total_length: characters the chain will read in all (seed included):
      sizes the no-repeat memory.
  """
  space_id = vocab.chars.index(' ') if ' ' in vocab else -1
  chain, tables = [], []

  def add(processor, table=None):
    chain.append(processor)
    tables.append(table)

  min_line, quartile, max_line = line_bounds(config, train_text, warn)
  if space_id >= 0 and (min_line or max_line):
    add(processors.LineForm(space_id, min_line or 1,
                            max_line or np.iinfo(np.int32).max))
  if space_id >= 0 and config.rhyme != 'none':
    target = (-1 if config.rhyme == 'auto'
              else rhyme.group_of_text(config.rhyme))
    low = max(min_line, 1)
    high = max(max_line or 16, low + 1)
    add(processors.Rhyme(space_id, low, min(max(quartile, low), high - 1),
                         high, config.rhyme_bonus),
        processors.RhymeTables(jnp.asarray(rhyme_table(vocab.chars)),
                               jnp.asarray(target, jnp.int32)))
  if config.no_repeat_ngram:
    add(processors.NoRepeat(config.no_repeat_ngram, space_id,
                            min(MAX_WINDOW, bucket(total_length, 16)),
                            config.max_line_repeats))
  if config.max_copy:
    if train_text is None:
      warn('the training text is not at hand: max_copy is off.')
    else:
      tables_, width = _training_copy_tables(train_text, vocab.chars,
                                             config.max_copy)
      add(processors.MaxCopy(config.max_copy, space_id, vocab.size, width),
          tables_)
  add(processors.Temperature(), jnp.asarray(config.temperature, jnp.float32))
  if config.top_k:
    add(processors.TopK(config.top_k))
  if config.top_p < 1.0:
    add(processors.TopP(), jnp.asarray(config.top_p, jnp.float32))
  if config.mode == 'argmax':
    add(processors.Greedy())
  elif config.mode == 'combined':
    add(processors.Greedy(draw_after=space_id))
  return Decoder(processors.Chain(tuple(chain)), tuple(tables), space_id,
                 config.lines)
