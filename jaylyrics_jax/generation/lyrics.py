"""Writing lyrics with a trained model: seed in, lines out.

`sample_text` is what `experiments.sample` runs. By default it writes with
the line writer (`generation.line_writer`, settings in a `LineConfig`):
whole candidate lines, one kept per line. With `writer=None` (or
`LineConfig(candidates=0)`) it writes a character at a time: the decoding
chain of a `SamplingConfig` (`generation.controls`) runs inside one call of
the on-device sampler (`generation.sampler`), and each text is cut after
its last requested line. Either way every sample and every best-of
candidate is drawn in one batch, and the best candidate of each sample is
kept by `candidate_score`.
"""

import dataclasses
import math
import zlib
from typing import Any, Callable

import jax
import numpy as np

from jaylyrics_jax.config import LineConfig
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data.corpus import reverse_lines
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation import controls
from jaylyrics_jax.generation import line_writer
from jaylyrics_jax.generation import sampler
from jaylyrics_jax.scoring import realism
from jaylyrics_jax.scoring.mixture import DeviceMixture
from jaylyrics_jax.scoring.mixture import for_generation

# Weight of each realism penalty in `candidate_score`, in nats per character.
PENALTY = 1.0


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One drawn text: the seed and what follows, cut to the requested lines.

  mean_log_prob: mean natural log-probability per generated character under
  the generating distribution (the model, or its default inference mixture)
  before the decoding controls; score: `candidate_score`.
  """
  text: str
  mean_log_prob: float
  score: float


def cut_tokens(tokens: np.ndarray, seed: str, space_id: int,
               lines: int) -> int:
  """How many of the generated `tokens` to keep so the text (seed included)
  has `lines` lines: up to and including the line break that ends the last
  one (all of them when lines is 0 or they end first)."""
  if lines <= 0 or space_id < 0:
    return len(tokens)
  needed = lines - seed.count(' ')
  if needed <= 0:
    return 0
  breaks = np.flatnonzero(np.asarray(tokens) == space_id)
  return int(breaks[needed - 1]) + 1 if len(breaks) >= needed else len(tokens)


def candidate_score(text: str, mean_log_prob: float, judge: realism.Judge,
                    rhyme: bool) -> float:
  """mean_log_prob - PENALTY * (self-repetition + training copies + the
  share of one-character lines + [rhyme on] the share of unrhymed line
  pairs): the figures `realism.report` gives this one text (a figure with
  no case, e.g. no line pair, adds nothing)."""
  fig = realism.report([text], judge)
  share = lambda name: 0.0 if math.isnan(fig[name]) else fig[name]
  penalty = (share('self_repetition') + share('training_copies') +
             share('one_char_lines'))
  if rhyme and not math.isnan(fig['rhyme_rate']):
    penalty += 1.0 - fig['rhyme_rate']
  return mean_log_prob - PENALTY * penalty


def _draw_characters(params, model_config, vocab, seed_ids, key, length,
                     config, rows, mixture, train_text, warn, chunk,
                     on_chunk, pad_seed_to) -> list[tuple[str, float]]:
  """(text, mean log-probability) of `rows` texts written a character at a
  time by the decoding chain of `config`, each cut after its last line."""
  used_seed = vocab.decode(seed_ids)
  decoder = controls.build_decoder(config, vocab, train_text,
                                   max(len(seed_ids), pad_seed_to) + length,
                                   warn)
  tokens, log_probs = sampler.sample_tokens(
      params, model_config, seed_ids, key, length, decoder.chain,
      decoder.tables, rows, mixture, config.min_copy_distance, chunk,
      on_chunk, pad_seed_to)
  out = []
  for r in range(rows):
    keep = cut_tokens(tokens[r], used_seed, decoder.space_id, config.lines)
    out.append((used_seed + vocab.decode(tokens[r][:keep]),
                float(np.mean(log_probs[r][:keep])) if keep else 0.0))
  return out


def _right_to_left(seed: str, train_text: str | None, avoid: str,
                   config: SamplingConfig, whole_lines: bool,
                   warn: Callable[[str], None]
                   ) -> tuple[str, str | None, str, SamplingConfig]:
  """The seed, training text and line to avoid as a right-to-left model
  reads them (`reverse_lines`), and the settings it writes with. Such a
  model writes a line from its end, so it cannot continue the seed's last
  line: that line is kept whole. A character at a time, the per-character
  rhyme control would rhyme each line's first character: it is off."""
  if not seed.endswith(' '):
    seed += ' '
  if not whole_lines and config.rhyme != 'none':
    warn('A right-to-left model writes each line from its end, so a '
         'character at a time the rhyme control would rhyme line starts: '
         'rhyme is off. Write with the line writer (candidates > 0) to '
         'rhyme.')
    config = dataclasses.replace(config, rhyme='none')
  return (reverse_lines(seed),
          None if train_text is None else reverse_lines(train_text),
          avoid[::-1], config)


def sample_candidates(params: Any, model_config: ModelConfig,
                      vocab: Vocabulary, seed: str, key: jax.Array,
                      length: int = 200,
                      config: SamplingConfig = SamplingConfig(),
                      num_samples: int = 1, unknown: str = 'error',
                      mixture: DeviceMixture | None = None,
                      train_text: str | None = None,
                      warn: Callable[[str], None] = lambda message: None,
                      chunk: int = 0,
                      on_chunk: Callable[[int], None] | None = None,
                      pad_seed_to: int = 0,
                      writer: LineConfig | None = LineConfig(),
                      avoid: str = '') -> list[list[Candidate]]:
  """Every candidate of every sample: [num_samples][config.best_of], each
  list sorted best first. See `sample_text` for the arguments,
  `sampler.sample_tokens` for pad_seed_to and `line_writer.write_verses`
  for avoid (line writer only)."""
  if not seed:
    raise JaylyricsError(
        'The seed text is empty. Pass a seed of Chinese characters, e.g. '
        'seed="从前".')
  whole_lines = writer is not None and writer.candidates > 0
  read_seed, read_train = seed, train_text
  if model_config.right_to_left:
    read_seed, read_train, avoid, config = _right_to_left(
        seed, train_text, avoid, config, whole_lines, warn)
  seed_ids = vocab.encode(read_seed, unknown=unknown)
  pad_seed_to = pad_seed_to and max(pad_seed_to, len(seed_ids))
  rows = num_samples * config.best_of
  sampler.check_request(seed_ids, length, rows, pad_seed_to)
  # The novelty term weighs the run's n-gram whichever part is drawn from.
  ngram = mixture.tables if mixture is not None else None
  mixture = for_generation(mixture, config.mixture)
  if whole_lines:
    drawn = [(v.text, v.mean_log_prob) for v in line_writer.write_verses(
        params, model_config, vocab, seed_ids, key, config, writer, length,
        config.lines, rows, mixture, read_train, warn, avoid, on_chunk,
        pad_seed_to, ngram)]
  else:
    drawn = _draw_characters(params, model_config, vocab, seed_ids, key,
                             length, config, rows, mixture, read_train,
                             warn, chunk, on_chunk, pad_seed_to)
  if model_config.right_to_left:  # Each line turned back; a line whose
    # start was never written (a character at a time) is left out.
    drawn = [(reverse_lines(text[:text.rfind(' ') + 1]), mean_lp)
             for text, mean_lp in drawn]
  judge = None
  if config.best_of > 1:  # Without the training text, copies count 0.
    judge = realism.make_judge(train_text or '', vocab, fluency=False)
  out = []
  for i in range(num_samples):
    group = []
    for text, mean_lp in drawn[i * config.best_of:(i + 1) * config.best_of]:
      score = (candidate_score(text, mean_lp, judge, config.rhyme != 'none')
               if config.best_of > 1 else mean_lp)
      group.append(Candidate(text, mean_lp, score))
    # Stable: equal scores keep the draw order, so one candidate is row 0.
    group.sort(key=lambda c: -c.score)
    out.append(group)
  return out


def text_key(rng_seed: int, seed: str) -> jax.Array:
  """The key `experiments.sample` and the demo page draw `seed`'s lyrics
  with: `jax.random.key(rng_seed)` with the seed text folded in (its CRC-32).

  With the bare rng seed, two seed texts draw the same random numbers line
  by line, and once their last few characters agree the two texts go on
  with the same lines; folded in, each seed text gets its own numbers,
  and the same rng seed and seed text still give the same key.
  """
  return jax.random.fold_in(jax.random.key(rng_seed),
                            zlib.crc32(seed.encode('utf-8')))


def sample_text(params: Any, model_config: ModelConfig, vocab: Vocabulary,
                seed: str, key: jax.Array, length: int = 200,
                config: SamplingConfig = SamplingConfig(),
                num_samples: int = 1, unknown: str = 'error',
                mixture: DeviceMixture | None = None,
                train_text: str | None = None,
                warn: Callable[[str], None] = lambda message: None,
                chunk: int = 0,
                on_chunk: Callable[[int], None] | None = None,
                writer: LineConfig | None = LineConfig()) -> list[str]:
  """Writes `num_samples` texts, each the seed followed by what the model
  writes (a space between lines).

  Args:
    params, model_config, vocab: the trained model (`load_model`).
    seed: the text to start from. Characters outside the vocabulary raise a
      `JaylyricsError` listing them (unknown='error') or are dropped
      (unknown='skip').
    key: the PRNG key; the same key gives the same texts.
    length: characters to generate (spaces included); with config.lines the
      most to generate.
    config: the decoding settings (`SamplingConfig`).
    mixture: the run's default inference (`load_run`, or
      `scoring.tuning.device_mixture_for`);
      config.mixture says which part of it to draw from.
    train_text: the run's training text, for max_copy, the default line
      bounds and best-of's copy penalty (each is off or falls back, with a
      `warn`, without it).
    chunk, on_chunk: generate `chunk` characters per call, calling
      on_chunk(done) in between (same text as one call); the line writer
      calls on_chunk after every call of its own (`line_writer`).
    writer: the line writer's settings (`LineConfig`; the default writes
      whole lines); None or candidates=0 writes a character at a time.

  A right-to-left model (`ModelConfig.right_to_left`) writes every line
  from its last character; the texts come back in reading order, the
  seed's last line kept as a whole line (it cannot be continued).
  """
  groups = sample_candidates(params, model_config, vocab, seed, key, length,
                             config, num_samples, unknown, mixture,
                             train_text, warn, chunk, on_chunk,
                             writer=writer)
  return [group[0].text for group in groups]
