"""Vocabulary order, JSON round trip and unknown characters."""

from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest

from jaylyrics_jax.data.vocab import build_vocabulary
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError


def test_order_is_frequency_then_code_point():
  vocab = build_vocabulary('乙甲乙丙丁丁 ')
  # 乙 and 丁 twice (乙 U+4E59 > 丁 U+4E01), then 丙 / 甲 / ' ' once by code point.
  assert vocab.chars == ('丁', '乙', ' ', '丙', '甲')


def test_json_round_trip_keeps_unicode():
  vocab = build_vocabulary('从前从前有座山 ')
  data = vocab.to_json()
  assert '从' in data
  assert Vocabulary.from_json(data) == vocab


def test_bad_json_is_refused():
  with pytest.raises(JaylyricsError):
    Vocabulary.from_json('["ab", "c"]')


def test_unknown_characters_error_lists_them():
  vocab = build_vocabulary('从前有座山')
  with pytest.raises(JaylyricsError, match="'庙'.*'里'") as e:
    vocab.encode('从前庙里', unknown='error')
  assert "unknown='skip'" in str(e.value)


def test_unknown_skip_and_frequent():
  vocab = build_vocabulary('从从前')
  np.testing.assert_array_equal(vocab.encode('从庙前', unknown='skip'), [0, 1])
  np.testing.assert_array_equal(vocab.encode('从庙前', unknown='frequent'),
                                [0, 0, 1])
  assert list(vocab.known_mask('从庙')) == [True, False]


@given(st.text(min_size=1))
def test_encode_decode_round_trip(text):
  vocab = build_vocabulary(text)
  ids = vocab.encode(text)
  assert ids.dtype == np.int32
  assert vocab.decode(ids) == text
  assert vocab.size == len(set(text))
  # Deterministic: the same text in another order of first appearance gives
  # the same vocabulary.
  assert build_vocabulary(''.join(sorted(text))) == vocab
