"""The original's batching: parallel streams cut into consecutive windows.

The training text is split into `batch_size` contiguous streams; batch `i`
holds window `i` of every stream, so the hidden state left by batch `i` is
the right starting state for batch `i + 1`. Targets are the inputs shifted by
one character (taken from the text itself, not wrapped around).
"""

import numpy as np

from jaylyrics_jax.errors import JaylyricsError


def min_chars(batch_size: int, seq_length: int) -> int:
  """The fewest characters that give one batch."""
  return batch_size * seq_length + 1


def num_batches(num_chars: int, batch_size: int, seq_length: int,
                offset: int = 0) -> int:
  return max(0, (num_chars - offset - 1) // (batch_size * seq_length))


def epoch_batches(ids: np.ndarray, batch_size: int, seq_length: int,
                  offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Cuts one epoch's inputs and targets, all at once.

  Args:
    ids: <int32>[N] the encoded training text.
    batch_size: number of parallel streams B.
    seq_length: window length T.
    offset: characters skipped at the start (a random offset per epoch shows
      the model different window boundaries; 0 is the original's scheme).
  Returns:
    inputs, targets: <int32>[num_batches, B, T]; targets[..., t] is the
    character after inputs[..., t].
  """
  if batch_size < 1 or seq_length < 1:
    raise JaylyricsError(
        f'batch_size={batch_size}, seq_length={seq_length}: both must be '
        'positive integers.')
  n = num_batches(len(ids), batch_size, seq_length, offset)
  if n == 0:
    raise JaylyricsError(
        f'The training text has {len(ids)} characters, fewer than one batch '
        f'needs: batch_size * seq_length + 1 = '
        f'{min_chars(batch_size, seq_length) + offset}. Use a longer corpus '
        f'or a smaller batch_size={batch_size} or seq_length={seq_length}.')
  used = n * batch_size * seq_length
  ids = np.asarray(ids, dtype=np.int32)
  streams_x = ids[offset:offset + used].reshape(batch_size, n, seq_length)
  streams_y = ids[offset + 1:offset + used + 1].reshape(
      batch_size, n, seq_length)
  # [B, n, T] -> [n, B, T]: batch i is window i of every stream.
  return (np.ascontiguousarray(streams_x.transpose(1, 0, 2)),
          np.ascontiguousarray(streams_y.transpose(1, 0, 2)))
