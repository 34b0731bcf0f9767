"""The original's batching: streams, windows and the shift by one."""

import numpy as np
import pytest

from jaylyrics_jax.data.batching import epoch_batches
from jaylyrics_jax.errors import JaylyricsError


def test_shapes_and_shift_by_one():
  ids = np.arange(100, dtype=np.int32)
  x, y = epoch_batches(ids, batch_size=3, seq_length=4)
  assert x.shape == y.shape == (8, 3, 4)  # (100 - 1) // 12 = 8 windows.
  np.testing.assert_array_equal(y, x + 1)


def test_windows_are_consecutive_within_each_stream():
  ids = np.arange(1000, dtype=np.int32)
  x, _ = epoch_batches(ids, batch_size=4, seq_length=5)
  for i in range(len(x) - 1):
    # Window i + 1 of stream b continues window i of stream b.
    np.testing.assert_array_equal(x[i + 1][:, 0], x[i][:, -1] + 1)
  streams = x.transpose(1, 0, 2).reshape(4, -1)
  np.testing.assert_array_equal(streams.reshape(-1), ids[:streams.size])


def test_offset_shifts_the_start():
  ids = np.arange(50, dtype=np.int32)
  x, y = epoch_batches(ids, batch_size=2, seq_length=3, offset=2)
  assert x[0, 0, 0] == 2
  np.testing.assert_array_equal(y, x + 1)


def test_too_short_text_names_the_minimum():
  with pytest.raises(JaylyricsError, match='batch_size \\* seq_length \\+ 1 = 17'):
    epoch_batches(np.arange(16, dtype=np.int32), batch_size=4, seq_length=4)
