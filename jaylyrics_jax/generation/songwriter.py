"""A trained run as a songwriter: write a verse, rewrite one of its lines.

`Songwriter` keeps everything writing needs loaded once (the
model, its default inference, the training text, the judge) and answers
`write` and `rewrite_line` with a `Song`: its lines, the rhyme each ends on,
and the realism figures. Seeds are padded to a few lengths and generation
lengths rounded up to powers of two, so many requests compile a handful of
programs, not one per request. The demo page (`experiments.serve`) is a thin
web layer over this class: `plan_write` / `plan_rewrite` check a request and
say how much device work it is (before it waits in a queue), and `on_chunk`
lets the caller stop a request between device calls (by raising).
"""

import dataclasses
import math
from typing import Any, Callable

from jaylyrics_jax.config import check_rng_seed
from jaylyrics_jax.config import MIN_TEMPERATURE
from jaylyrics_jax.config import LineConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation import controls
from jaylyrics_jax.generation import line_writer
from jaylyrics_jax.generation import lyrics
from jaylyrics_jax.generation.controls import bucket
from jaylyrics_jax.models.charlm import TrainedModel
from jaylyrics_jax.scoring import realism
from jaylyrics_jax.scoring.mixture import DeviceMixture

MAX_LINES = 64
MAX_CHARS = 2000  # Seed and generated characters together.
MAX_BEST_OF = 64
MAX_TEMPERATURE = 10.0
# Characters x candidates per device call: a request can be stopped between
# calls, so this bounds how long a stop waits.
CHUNK_DRAWS = 256
# Candidates drawn for a rewritten line, so one that differs is found.
REWRITE_CANDIDATES = 8


@dataclasses.dataclass(frozen=True)
class Line:
  """One line; `end` its last character, `final` that character's pinyin
  final ('' if none), `rhymes` whether it ends in the song's rhyme group."""
  text: str
  end: str
  final: str
  rhymes: bool


@dataclasses.dataclass(frozen=True)
class Song:
  """seed: what the first line starts with; rhyme: the rhyme group's name
  ('' without one); figures: the realism figures of the whole text
  (`realism.report`) and its copy rate (generated 4-grams found in the
  training text)."""
  seed: str
  lines: tuple[Line, ...]
  rhyme: str
  figures: dict[str, float]

  @property
  def text(self) -> str:
    return ' '.join(line.text for line in self.lines) + ' '

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out['lines'] = list(out['lines'])
    out['figures'] = {k: (None if isinstance(v, float) and math.isnan(v)
                          else v) for k, v in self.figures.items()}
    return out


@dataclasses.dataclass(frozen=True)
class Plan:
  """The device work of one request: the text read so far padded to `pad`
  characters, then `length` characters drawn for each of `rows`
  candidates, `chunk` characters per device call. Requests with the same
  plan (and rhyme on or off) share one compiled program."""
  pad: int
  length: int
  rows: int
  chunk: int

  @property
  def work(self) -> int:
    """Characters drawn in all: length x rows."""
    return self.length * self.rows


def _one_line_each(text: str) -> str:
  """Runs of whitespace become one space (a line break)."""
  return ' '.join(text.split())


class Songwriter:
  """Writes with one trained run; not thread-safe (serve one at a time)."""

  def __init__(self, model: TrainedModel, mixture: DeviceMixture | None = None,
               train_text: str | None = None,
               config: SamplingConfig = SamplingConfig(),
               warn: Callable[[str], None] = lambda message: None,
               writer: LineConfig | None = LineConfig()):
    """writer: the line writer's settings (None: a character at a time)."""
    self.model = model
    self.writer = writer
    self.mixture = mixture
    self.train_text = train_text
    self.config = config
    self.warn = warn
    self.judge = realism.make_judge(train_text or '', model.vocab,
                                    fluency=False)
    # The longest line, as the writers resolve it (sizes a request).
    self.max_line = (controls.line_bounds(config, train_text)[2] or
                     line_writer.UNBOUNDED_LINE)

  def facts(self) -> dict[str, Any]:
    """The run: checkpoint step, valid bits/char of the model alone."""
    loss = self.model.valid_loss
    return {'step': self.model.step,
            'valid_bpc': None if loss is None else loss / math.log(2),
            'vocab_size': self.model.vocab.size}

  def _check(self, seed: str, lines: int, best_of: int, temperature: float,
             rng_seed: int):
    if not seed:
      raise JaylyricsError('The seed is empty: type the first characters of '
                           'the song, e.g. 从前.')
    missing = self.model.vocab.unknown_chars(seed)
    if missing:
      raise JaylyricsError(
          f'The model never saw {" ".join(repr(c) for c in missing)}: use '
          'other characters in the seed.')
    if not 1 <= lines <= MAX_LINES:
      raise JaylyricsError(f'lines={lines}: must be in 1..{MAX_LINES}.')
    if seed.count(' ') >= lines:
      raise JaylyricsError(
          f'The seed holds {seed.count(" ") + 1} lines, and lines={lines}: '
          'ask for more lines than the seed has.')
    if not 1 <= best_of <= MAX_BEST_OF:
      raise JaylyricsError(f'best_of={best_of}: must be in 1..{MAX_BEST_OF}.')
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
      raise JaylyricsError(f'temperature={temperature}: must be in '
                           f'[{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}].')
    check_rng_seed(rng_seed)

  def _plan(self, seed: str, lines: int, rows: int) -> Plan:
    new_lines = lines - seed.count(' ')
    length = bucket(new_lines * (self.max_line + 1), 16)
    pad = bucket(len(seed), 32)
    if pad + length > MAX_CHARS:
      raise JaylyricsError(
          f'Too long: {len(seed)} characters so far and {new_lines} lines to '
          f'write pass the {MAX_CHARS}-character limit. Ask for fewer lines.')
    chunk = bucket(max(1, CHUNK_DRAWS // rows), 16)
    return Plan(pad, length, rows, min(chunk, length))

  def plan_write(self, seed: str, lines: int = 8, best_of: int = 1,
                 temperature: float | None = None, rng_seed: int = 0) -> Plan:
    """Checks a `write` request (everything but the rhyme) and plans it."""
    temperature = self._temperature(temperature)
    seed = _one_line_each(seed)
    self._check(seed, lines, best_of, temperature, rng_seed)
    return self._plan(seed, lines, best_of)

  def _temperature(self, temperature: float | None) -> float:
    """None: the songwriter's SamplingConfig's."""
    return self.config.temperature if temperature is None else temperature

  @property
  def _whole_lines(self) -> bool:
    return self.writer is not None and self.writer.candidates > 0

  def _sample(self, seed: str, lines: int, rhyme_choice: str,
              temperature: float, rng_seed: int, plan: Plan,
              on_chunk: Callable[[int], None] | None,
              writer: LineConfig | None = None, avoid: str = '') -> list[str]:
    """seed + the lines that follow, up to `lines` lines in all: one text
    per candidate, best first (written with `writer`, default the
    songwriter's; `avoid`: a line the line writer must not write)."""
    config = dataclasses.replace(self.config, lines=lines, rhyme=rhyme_choice,
                                 temperature=float(temperature),
                                 best_of=plan.rows)
    chunk = plan.chunk if plan.chunk < plan.length else 0
    candidates = lyrics.sample_candidates(
        self.model.params, self.model.model_config, self.model.vocab, seed,
        lyrics.text_key(rng_seed, seed), plan.length, config,
        mixture=self.mixture,
        train_text=self.train_text, warn=self.warn, chunk=chunk,
        on_chunk=on_chunk, pad_seed_to=plan.pad,
        writer=writer or self.writer, avoid=avoid)[0]
    return [candidate.text for candidate in candidates]

  def _song(self, seed: str, texts: list[str], group: int) -> Song:
    out = []
    groups = [rhyme.group_of(text[-1]) for text in texts]
    for i, text in enumerate(texts):
      end = text[-1]
      final = rhyme.final_of(end).rstrip('12345')
      if self._whole_lines:  # Rhymes with the line before or after it.
        near = groups[max(i - 1, 0):i] + groups[i + 1:i + 2]
        rhymes = groups[i] != rhyme.NONE and groups[i] in near
      else:  # Ends on the song's one rhyme.
        rhymes = group != rhyme.NONE and groups[i] == group
      out.append(Line(text, end, final, rhymes))
    song = Song(seed, tuple(out), rhyme.group_name(group), {})
    figures = realism.report([song.text], self.judge)
    generated = song.text[len(seed):]
    figures['copy_rate'] = (realism.copy_rate(generated, self.train_text)
                            if self.train_text else float('nan'))
    return dataclasses.replace(song, figures=figures)

  @staticmethod
  def _group_of(rhyme_choice: str, texts: list[str]) -> int:
    if rhyme_choice == 'none':
      return rhyme.NONE
    if rhyme_choice != 'auto':
      return rhyme.group_of_text(rhyme_choice)
    for text in texts:  # As the decoder does: the first line with a group.
      group = rhyme.group_of(text[-1])
      if group != rhyme.NONE:
        return group
    return rhyme.NONE

  def write(self, seed: str, lines: int = 8, rhyme_choice: str = 'auto',
            temperature: float | None = None, best_of: int = 1,
            rng_seed: int = 0,
            on_chunk: Callable[[int], None] | None = None) -> Song:
    """A song of `lines` lines whose first line starts with `seed` (is the
    seed, for a right-to-left run: `ModelConfig.right_to_left`).

    rhyme_choice: 'auto', 'none', a character, a pinyin final or a rhyme
    group's name (see `SamplingConfig.rhyme`). rng_seed: in 0..2**32 - 1.
    on_chunk(characters_done): called between device calls (`Plan.chunk`
    characters each); an exception it raises stops the request. Raises
    `JaylyricsError` for unknown seed characters, an empty seed and values
    out of range.
    """
    temperature = self._temperature(temperature)
    plan = self.plan_write(seed, lines, best_of, temperature, rng_seed)
    seed = _one_line_each(seed)
    SamplingConfig(rhyme=rhyme_choice, temperature=float(temperature))
    text = self._sample(seed, lines, rhyme_choice, temperature, rng_seed,
                        plan, on_chunk)[0]
    texts = [t for t in text.split(' ') if t]
    return self._song(seed, texts, self._group_of(rhyme_choice, texts))

  def _rewrite_prefix(self, song_lines: list[str], index: int,
                      seed: str) -> tuple[list[str], str, str]:
    """(the song's lines, its seed, the text before line `index`)."""
    song_lines = [t.strip() for t in song_lines]
    if not song_lines or len(song_lines) > MAX_LINES or any(
        not t or ' ' in t or len(t) > MAX_CHARS for t in song_lines):
      raise JaylyricsError(f'song_lines must be 1..{MAX_LINES} non-empty '
                           'lines without spaces.')
    if not 0 <= index < len(song_lines):
      raise JaylyricsError(f'index={index}: the song has lines 0..'
                           f'{len(song_lines) - 1}.')
    if index == 0 and self.model.model_config.right_to_left:
      raise JaylyricsError(
          'This run writes lines from their end, so its first line is the '
          'seed itself: rewrite another line, or write again from another '
          'seed.')
    missing = self.model.vocab.unknown_chars(''.join(song_lines))
    if missing:
      raise JaylyricsError(
          f'The model never saw {" ".join(repr(c) for c in missing)}: '
          'remove them from the song\'s lines.')
    seed = seed.strip()
    if not seed or ' ' in seed or not song_lines[0].startswith(seed):
      seed = song_lines[0][:1]
    prefix = seed if index == 0 else ' '.join(song_lines[:index]) + ' '
    return song_lines, seed, prefix

  def plan_rewrite(self, song_lines: list[str], index: int, seed: str,
                   best_of: int = 1, temperature: float | None = None,
                   rng_seed: int = 0) -> Plan:
    """Checks a `rewrite_line` request (but the rhyme) and plans it."""
    _, _, prefix = self._rewrite_prefix(song_lines, index, seed)
    self._check(prefix, index + 1, best_of, self._temperature(temperature),
                rng_seed)
    # The line writer draws its own candidate lines and never keeps the
    # old one; a character at a time, several texts are drawn to find one.
    rows = best_of if self._whole_lines else max(best_of, REWRITE_CANDIDATES)
    return self._plan(prefix, index + 1, rows)

  def rewrite_line(self, song_lines: list[str], index: int, seed: str,
                   rhyme_choice: str = 'auto',
                   temperature: float | None = None, best_of: int = 1,
                   rng_seed: int = 0,
                   on_chunk: Callable[[int], None] | None = None) -> Song:
    """The song with line `index` written anew, the others kept.

    The model reads the lines above it (the first line starts again from
    `seed`). With the line writer, the new line is never the old one and
    prefers the rhyme of the line it pairs with (the other line of its
    couplet; rhyme_choice 'none' turns that off). A character at a time, it
    keeps the song's rhyme, draws max(best_of, REWRITE_CANDIDATES)
    candidates and keeps the best whose line differs from the old one; a
    `JaylyricsError` says so if none does.
    """
    temperature = self._temperature(temperature)
    plan = self.plan_rewrite(song_lines, index, seed, best_of, temperature,
                             rng_seed)
    song_lines, seed, prefix = self._rewrite_prefix(song_lines, index, seed)
    group = self._group_of(rhyme_choice, song_lines)
    old = song_lines[index]
    writer, avoid, target = None, '', group
    if self._whole_lines:
      partner = index + 1 if index % 2 == 0 else index - 1
      target = rhyme.NONE
      if rhyme_choice != 'none' and partner < len(song_lines):
        target = rhyme.group_of(song_lines[partner][-1])
      writer = dataclasses.replace(self.writer, rhyme_scheme='AAAA')
      avoid = old[len(seed):] if index == 0 else old
    keep = rhyme.GROUPS[target][0] if target != rhyme.NONE else 'none'
    for text in self._sample(prefix, index + 1, keep, temperature, rng_seed,
                             plan, on_chunk, writer, avoid):
      new = [t for t in text.split(' ') if t]
      if len(new) > index and new[index] != old:
        lines = song_lines[:index] + [new[index]] + song_lines[index + 1:]
        return self._song(seed, lines, group)
    raise JaylyricsError(
        f'All {plan.rows} candidates wrote line {index + 1} ({old}) again: '
        'raise the temperature, or rewrite another line.')
