"""A trained run as a songwriter: write a verse, rewrite one of its lines.

`Songwriter` keeps everything writing needs loaded once (the
model, its default inference, the training text, the judge) and answers
`write` and `rewrite_line` with a `Song`: its lines, the rhyme each ends on,
and the realism figures. Seeds are padded to a few lengths and generation
lengths rounded up to powers of two, so many requests compile a handful of
programs, not one per request. The demo page (`experiments.serve`) is a thin
web layer over this class.
"""

import dataclasses
import math
from typing import Any, Callable

import jax

from jaylyrics_jax.config import LineConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import TrainedModel
from jaylyrics_jax.generation import lyrics
from jaylyrics_jax.generation.controls import bucket
from jaylyrics_jax.generation.controls import FALLBACK_LINE_BOUNDS
from jaylyrics_jax.scoring import realism
from jaylyrics_jax.scoring.mixture import DeviceMixture

MAX_LINES = 64
MAX_CHARS = 2000  # Seed and generated characters together.
MAX_BEST_OF = 64


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


class Songwriter:
  """Writes with one trained run; not thread-safe (serve one at a time)."""

  def __init__(self, model: TrainedModel, mixture: DeviceMixture | None = None,
               train_text: str | None = None,
               config: SamplingConfig = SamplingConfig(),
               warn: Callable[[str], None] = lambda message: None,
               writer: LineConfig | None = LineConfig()):
    self.model = model
    self.writer = writer
    self.mixture = mixture
    self.train_text = train_text
    self.config = config
    self.warn = warn
    self.judge = realism.make_judge(train_text or '', model.vocab,
                                    fluency=False)
    self.max_line = (realism.line_length_bounds(train_text)[2] if train_text
                     else FALLBACK_LINE_BOUNDS[2])
    if config.max_line > 0:
      self.max_line = config.max_line

  def facts(self) -> dict[str, Any]:
    """The run: checkpoint step, valid bits/char of the model alone."""
    loss = self.model.valid_loss
    return {'step': self.model.step,
            'valid_bpc': None if loss is None else loss / math.log(2),
            'vocab_size': self.model.vocab.size}

  def _check(self, seed: str, lines: int, best_of: int, temperature: float):
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
    if not 1 <= best_of <= MAX_BEST_OF:
      raise JaylyricsError(f'best_of={best_of}: must be in 1..{MAX_BEST_OF}.')
    if not 0 < temperature <= 10:
      raise JaylyricsError(
          f'temperature={temperature}: must be in (0, 10].')

  def _sample(self, seed: str, lines: int, rhyme_choice: str,
              temperature: float, best_of: int, rng_seed: int,
              writer: LineConfig | None = None, avoid: str = '') -> str:
    """seed + the lines that follow, up to `lines` lines in all (written
    with `writer`, default the songwriter's; `avoid`: a line not to write
    again)."""
    new_lines = lines - seed.count(' ')
    length = bucket(new_lines * (self.max_line + 1), 16)
    pad = bucket(len(seed), 32)
    if pad + length > MAX_CHARS:
      raise JaylyricsError(
          f'Too long: {len(seed)} seed characters and {new_lines} lines to '
          f'write pass the {MAX_CHARS}-character limit. Ask for fewer lines.')
    config = dataclasses.replace(self.config, lines=lines, rhyme=rhyme_choice,
                                 temperature=float(temperature),
                                 best_of=best_of)
    return lyrics.sample_candidates(
        self.model.params, self.model.model_config, self.model.vocab, seed,
        jax.random.key(rng_seed), length, config, mixture=self.mixture,
        train_text=self.train_text, warn=self.warn, pad_seed_to=pad,
        writer=writer or self.writer, avoid=avoid)[0][0].text

  def _song(self, seed: str, texts: list[str], group: int) -> Song:
    out = []
    groups = [rhyme.group_of(text[-1]) for text in texts]
    for i, text in enumerate(texts):
      end = text[-1]
      final = rhyme.final_of(end).rstrip('12345')
      # Rhymes with the line before or after it (a couplet, or the song's
      # one rhyme).
      near = groups[max(i - 1, 0):i] + groups[i + 1:i + 2]
      out.append(Line(text, end, final,
                      groups[i] != rhyme.NONE and groups[i] in near))
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
            rng_seed: int = 0) -> Song:
    """A song of `lines` lines whose first line starts with `seed`.

    rhyme_choice: 'auto', 'none', a character, a pinyin final or a rhyme
    group's name (see `SamplingConfig.rhyme`). Raises `JaylyricsError` for
    unknown seed characters, an empty seed and values out of range.
    temperature: None = the songwriter's SamplingConfig's.
    """
    if temperature is None:
      temperature = self.config.temperature
    seed = seed.strip().replace('\n', ' ')
    self._check(seed, lines, best_of, temperature)
    SamplingConfig(rhyme=rhyme_choice, temperature=float(temperature))
    text = self._sample(seed, lines, rhyme_choice, temperature, best_of,
                        rng_seed)
    texts = [t for t in text.split(' ') if t]
    return self._song(seed, texts, self._group_of(rhyme_choice, texts))

  def rewrite_line(self, song_lines: list[str], index: int, seed: str,
                   rhyme_choice: str = 'auto',
                   temperature: float | None = None, best_of: int = 1,
                   rng_seed: int = 0) -> Song:
    """The song with line `index` written anew, the others kept.

    The model reads the lines above it (the first line starts again from
    `seed`). With the line writer the new line is never the old one, and it
    prefers the rhyme of the line it pairs with (the other line of its
    couplet; rhyme_choice 'none' turns that off); character by character it
    keeps the song's rhyme.
    """
    if temperature is None:
      temperature = self.config.temperature
    song_lines = [t.strip() for t in song_lines]
    if not song_lines or any(not t or ' ' in t for t in song_lines):
      raise JaylyricsError('song_lines must be non-empty lines without '
                           'spaces.')
    if not 0 <= index < len(song_lines):
      raise JaylyricsError(f'index={index}: the song has lines 0..'
                           f'{len(song_lines) - 1}.')
    seed = seed.strip()
    if not song_lines[0].startswith(seed) or not seed:
      seed = song_lines[0][:1]
    prefix = seed if index == 0 else ' '.join(song_lines[:index]) + ' '
    self._check(prefix, index + 1, best_of, temperature)
    missing = self.model.vocab.unknown_chars(''.join(song_lines))
    if missing:
      raise JaylyricsError(f'The model never saw {" ".join(missing)}: remove '
                           'them from the song.')
    group = self._group_of(rhyme_choice, song_lines)
    writer, avoid = None, ''
    if self.writer is not None and self.writer.candidates:
      partner = index + 1 if index % 2 == 0 else index - 1
      if rhyme_choice != 'none' and partner < len(song_lines):
        group = rhyme.group_of(song_lines[partner][-1])
      writer = dataclasses.replace(self.writer, rhyme_scheme='AAAA')
      avoid = song_lines[index][len(seed):] if index == 0 else song_lines[index]
    keep = rhyme.GROUPS[group][0] if group != rhyme.NONE else 'none'
    text = self._sample(prefix, index + 1, keep, temperature, best_of,
                        rng_seed, writer, avoid)
    new = [t for t in text.split(' ') if t]
    lines = song_lines[:index] + new[index:index + 1] + song_lines[index + 1:]
    return self._song(seed, lines, group)
