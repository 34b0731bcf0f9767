"""Character vocabulary: frequency order, ties by code point, JSON round trip."""

import collections
import dataclasses
import json
from typing import Iterable

import numpy as np

from jaylyrics_jax.errors import JaylyricsError


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Characters in id order; id 0 is the most frequent character."""
  chars: tuple[str, ...]

  def __post_init__(self):
    if not self.chars:
      raise JaylyricsError('A vocabulary needs at least one character.')
    if len(set(self.chars)) != len(self.chars):
      raise JaylyricsError('A vocabulary must not repeat a character.')
    object.__setattr__(self, '_index', {c: i for i, c in enumerate(self.chars)})

  @property
  def size(self) -> int:
    return len(self.chars)

  def __contains__(self, ch: str) -> bool:
    return ch in self._index

  def unknown_chars(self, text: str) -> list[str]:
    """Distinct characters of `text` not in the vocabulary, in text order."""
    return list(dict.fromkeys(c for c in text if c not in self._index))

  def encode(self, text: str, unknown: str = 'error') -> np.ndarray:
    """Maps text to int32 ids.

    Args:
      text: the text to encode.
      unknown: what to do with characters outside the vocabulary: 'error'
        raises a `JaylyricsError` listing them, 'skip' drops them, 'frequent'
        replaces them with id 0 (the most frequent character).
    Returns:
      <int32>[len(text) - number of skipped characters].
    """
    if unknown not in ('error', 'skip', 'frequent'):
      raise JaylyricsError(
          f"unknown must be 'error', 'skip' or 'frequent', got {unknown!r}.")
    missing = self.unknown_chars(text)
    if missing and unknown == 'error':
      shown = ' '.join(repr(c) for c in missing[:20])
      more = f' and {len(missing) - 20} more' if len(missing) > 20 else ''
      raise JaylyricsError(
          f'{len(missing)} character(s) of the text are not in the '
          f"model's vocabulary of {self.size}: {shown}{more}. Remove them, or "
          "pass unknown='skip' to drop them.")
    if unknown == 'skip':
      return np.array([self._index[c] for c in text if c in self._index],
                      dtype=np.int32)
    return np.array([self._index.get(c, 0) for c in text], dtype=np.int32)

  def known_mask(self, text: str) -> np.ndarray:
    """<bool>[len(text)]: which characters are in the vocabulary."""
    return np.array([c in self._index for c in text], dtype=bool)

  def decode(self, ids: Iterable[int]) -> str:
    return ''.join(self.chars[int(i)] for i in ids)

  def to_json(self) -> str:
    return json.dumps(list(self.chars), ensure_ascii=False)

  @classmethod
  def from_json(cls, data: str) -> 'Vocabulary':
    chars = json.loads(data)
    if not isinstance(chars, list) or not all(
        isinstance(c, str) and len(c) == 1 for c in chars):
      raise JaylyricsError(
          'A vocabulary JSON must be a list of single characters.')
    return cls(tuple(chars))


def build_vocabulary(text: str) -> Vocabulary:
  """Orders the distinct characters of `text` by count, ties by code point."""
  if not text:
    raise JaylyricsError('Cannot build a vocabulary from an empty text.')
  counts = collections.Counter(text)
  return Vocabulary(tuple(sorted(counts, key=lambda c: (-counts[c], ord(c)))))
