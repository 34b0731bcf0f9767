"""Frozen configuration dataclasses; the library's only settings."""

import dataclasses
from typing import Any

from jaylyrics_jax.errors import JaylyricsError

CELLS = ('lstm', 'gru', 'rnn')


def _positive(name: str, value: int) -> None:
  if value < 1:
    raise JaylyricsError(f'{name} must be a positive integer, got {value}.')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The shape of a `CharLM`; stored in every checkpoint."""
  vocab_size: int = 0  # 0: taken from the corpus by `train`.
  embedding_size: int = 100
  rnn_size: int = 128
  num_layers: int = 2
  cell: str = 'lstm'
  dropout: float = 0.0
  # Standard deviation of the embedding's normal init; 0 = flax's default
  # (variance scaling, std 1/sqrt(embedding_size)).
  embed_init_std: float = 0.0
  # Attention/copy over the last attn_length positions (0 = off).
  attn_length: int = 0
  attn_size: int = 64
  # Attention models: weight of the softmax-alone loss added to the training
  # loss, so the recurrent model stays a good model without copying too.
  softmax_loss_weight: float = 0.0
  # Copy only from positions at least this far back (1 = all). A decoding
  # setting: `SamplingConfig.min_copy_distance` raises it for generation.
  attn_min_distance: int = 1

  def __post_init__(self):
    if self.attn_length < 0:
      raise JaylyricsError(
          f'--attn_length must be >= 0, got {self.attn_length}.')
    _positive('--attn_size', self.attn_size)
    _positive('attn_min_distance', self.attn_min_distance)
    if self.softmax_loss_weight < 0:
      raise JaylyricsError('--softmax_loss_weight must be >= 0, got '
                           f'{self.softmax_loss_weight}.')
    if self.embed_init_std < 0:
      raise JaylyricsError(
          f'--embed_init_std must be >= 0, got {self.embed_init_std}.')
    if self.vocab_size < 0:
      raise JaylyricsError(f'vocab_size must be >= 0, got {self.vocab_size}.')
    for name in ('embedding_size', 'rnn_size', 'num_layers'):
      _positive(f'--{name}', getattr(self, name))
    if self.cell not in CELLS:
      raise JaylyricsError(
          f'--rnncell must be one of {", ".join(CELLS)}, got {self.cell!r}.')
    if not 0.0 <= self.dropout < 1.0:
      raise JaylyricsError(f'--dropout must be in [0, 1), got {self.dropout}.')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'ModelConfig':
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train; everything a run needs besides the model shape."""
  workdir: str = 'runs/lstm'
  batch_size: int = 32
  seq_length: int = 16
  num_epochs: int = 50
  learning_rate: float = 1e-3
  decay_rate: float = 1.0
  grad_clip: float = 5.0
  rng_seed: int = 0
  save_every: int = 1000
  keep_checkpoints: int = 5
  patience: int = 5
  valid_fraction: float = 0.1
  random_offset: bool = False
  num_devices: int = 0  # Devices in the data mesh; 0 = all there are.

  def __post_init__(self):
    if self.num_devices < 0:
      raise JaylyricsError(
          f'--num_devices must be >= 0, got {self.num_devices}.')
    for name in ('batch_size', 'seq_length', 'num_epochs', 'save_every',
                 'keep_checkpoints'):
      _positive(f'--{name}', getattr(self, name))
    if self.learning_rate <= 0:
      raise JaylyricsError(
          f'--learning_rate must be positive, got {self.learning_rate}.')
    if not 0.0 < self.decay_rate <= 1.0:
      raise JaylyricsError(
          f'--decay_rate must be in (0, 1], got {self.decay_rate}.')
    if self.grad_clip <= 0:
      raise JaylyricsError(f'--grad_clip must be positive, got {self.grad_clip}.')
    if self.patience < 0:
      raise JaylyricsError(f'--patience must be >= 0, got {self.patience}.')
    if not 0.0 <= self.valid_fraction < 1.0:
      raise JaylyricsError(
          f'--valid_fraction must be in [0, 1), got {self.valid_fraction}.')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'TrainConfig':
    return cls(**d)


MODES = ('weighted', 'argmax', 'combined')
MIXTURES = ('model', 'ngram', 'tuned')


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How lyrics are written, one character at a time; the defaults are the
  ones that read best (chosen with `jaylyrics_jax.realism` on the validation
  text: BUILD_NOTES.md, "Decoding"). The command line's defaults are these.

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
  mixture: what characters are drawn from when a run's default inference is
    passed: 'model' (the model alone), 'ngram' (the model and its
    Kneser-Ney n-gram, in their tuned proportion; the caches, which make
    generation loop, off) or 'tuned' (the whole mixture `evaluate` scores).
  lines: stop after this many lines (0 = no limit; the length is a cap).
  min_line, max_line: shortest and longest line in characters (-1 = the
    5% and 95% quantiles of the training text's line lengths, 0 = no bound).
  rhyme: 'auto' (line ends rhyme with the first line's end), 'none', or the
    rhyme to keep: a character, a pinyin final ('ang') or a rhyme group's
    name (`jaylyrics_jax.rhyme`).
  rhyme_bonus: logit bonus of rhyming characters near a line's end.
  no_repeat_ngram: never repeat an n-gram already written (0 = off) ...
  max_line_repeats: ... except whole earlier lines, each repeated at most
    this many times (a chorus).
  max_copy: never write more than this many consecutive characters found
    verbatim in the training text (0 = off).
  best_of: draw this many candidates for each sample and keep the best by
    `jaylyrics_jax.lyrics.candidate_score`.
  """
  mode: str = 'weighted'
  temperature: float = 0.6
  top_k: int = 0
  top_p: float = 1.0
  min_copy_distance: int = 32
  mixture: str = 'ngram'
  lines: int = 0
  min_line: int = -1
  max_line: int = -1
  rhyme: str = 'auto'
  rhyme_bonus: float = 3.0
  no_repeat_ngram: int = 4
  max_line_repeats: int = 0
  max_copy: int = 7
  best_of: int = 1

  def __post_init__(self):
    if self.mixture not in MIXTURES:
      raise JaylyricsError(f'mixture must be one of {", ".join(MIXTURES)}, '
                           f'got {self.mixture!r}.')
    if self.mode not in MODES:
      raise JaylyricsError(
          f'mode must be one of {", ".join(MODES)}, got {self.mode!r}.')
    if not self.temperature > 0:
      raise JaylyricsError(
          f'temperature must be > 0, got {self.temperature}; use '
          "mode='argmax' for greedy decoding.")
    if not 0.0 < self.top_p <= 1.0:
      raise JaylyricsError(f'top_p must be in (0, 1], got {self.top_p}.')
    for name in ('top_k', 'min_copy_distance', 'lines', 'max_line_repeats',
                 'max_copy', 'rhyme_bonus'):
      if getattr(self, name) < 0:
        raise JaylyricsError(
            f'{name} must be >= 0, got {getattr(self, name)}.')
    for name in ('min_line', 'max_line'):
      if getattr(self, name) < -1:
        raise JaylyricsError(f'{name} must be >= -1 (-1: from the training '
                             f'text), got {getattr(self, name)}.')
    if self.min_line > 0 and self.max_line > 0 and (
        self.min_line > self.max_line):
      raise JaylyricsError(f'min_line ({self.min_line}) must not exceed '
                           f'max_line ({self.max_line}).')
    if self.no_repeat_ngram == 1 or self.no_repeat_ngram < 0:
      raise JaylyricsError('no_repeat_ngram must be 0 (off) or >= 2, got '
                           f'{self.no_repeat_ngram}.')
    if self.best_of < 1:
      raise JaylyricsError(f'best_of must be >= 1, got {self.best_of}.')
    if not self.rhyme:
      raise JaylyricsError("rhyme must be 'auto', 'none', a character or a "
                           'pinyin final, got an empty string.')

  def controls_off(self) -> 'SamplingConfig':
    """This config with every decoding control off: the plain sampler."""
    return dataclasses.replace(self, lines=0, min_line=0, max_line=0,
                               rhyme='none', no_repeat_ngram=0, max_copy=0,
                               best_of=1)
