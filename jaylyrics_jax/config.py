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
