"""Cleaning rule, file errors and the corpus download."""

import hashlib
import os

from hypothesis import given
from hypothesis import strategies as st
import pytest

from jaylyrics_jax.data import corpus
from jaylyrics_jax.errors import JaylyricsError


def test_clean_line_keeps_cjk_and_ends_with_one_space():
  assert corpus.clean_line('我爱你 Baby~  你爱我') == '我爱你 你爱我 '


def test_full_width_space_and_tabs_become_spaces():
  assert corpus.clean_line('天空\u3000\u3000海洋\t星') == '天空 海洋 星 '


def test_latin_digits_punctuation_removed():
  assert corpus.clean_line('01、《晴天》（4’29）') == '晴天 '
  assert corpus.clean_line('Rap~ yo 123') == ''


def test_keyword_and_header_lines_dropped():
  for line in ('词：方文山', '作词：某某', '编曲：某某', '周杰伦 专辑', '歌词',
               '王羲之'):
    assert corpus.clean_line(line) == '', line
  assert corpus.clean_line('歌词很好') == '歌词很好 '  # Only the exact word.


def test_keywords_are_configurable():
  assert corpus.clean_line('方文山', drop_keywords=()) == '方文山 '
  assert corpus.clean_line('春天来了', drop_keywords=('春',)) == ''


def test_clean_text_concatenates_lines():
  raw = '第一行\n\n  \nabc\n第二 行\r\n作曲 某\n'
  assert corpus.clean_text(raw) == '第一行 第二 行 '


@given(st.text())
def test_clean_text_never_raises_and_is_idempotent(raw):
  once = corpus.clean_text(raw)
  assert corpus.clean_text(once) == once
  assert all('\u4e00' <= c <= '\u9fa5' or c == ' ' for c in once)
  assert '  ' not in once
  assert not once or (once.endswith(' ') and not once.startswith(' '))


def test_split_train_valid_takes_the_end():
  train, valid = corpus.split_train_valid('一二三四五六七八九十', 0.2)
  assert (train, valid) == ('一二三四五六七八', '九十')
  assert corpus.split_train_valid('一二三', 0.0) == ('一二三', '')


@pytest.mark.parametrize('content, match', [
    (b'', 'is empty'),
    (b'   \n\n', 'is empty'),
    (b'hello world only latin\n', 'after cleaning'),
    ('好的\n'.encode('utf-8') + b'\xff\xfe', 'byte offset 7'),
])
def test_bad_corpus_files(tmp_path, content, match):
  path = tmp_path / 'c.txt'
  path.write_bytes(content)
  with pytest.raises(JaylyricsError, match=match):
    corpus.load_clean_text(str(path))


def test_missing_and_directory_corpus(tmp_path):
  with pytest.raises(JaylyricsError, match='does not exist'):
    corpus.load_clean_text(str(tmp_path / 'nope.txt'))
  with pytest.raises(JaylyricsError, match='is a directory'):
    corpus.load_clean_text(str(tmp_path))


def test_real_corpus_statistics(shared_corpus):
  text = corpus.load_clean_text(shared_corpus)
  assert 48_000 < len(text) < 54_000
  assert 2_200 < len(set(text)) < 2_400
  assert '周杰伦' not in text and '\u3000' not in text


def test_download_verifies_hash_and_writes_atomically(tmp_path):
  source = tmp_path / 'remote.txt'
  source.write_text('天青色等烟雨\n', encoding='utf-8')
  digest = hashlib.sha256(source.read_bytes()).hexdigest()
  target = tmp_path / 'data' / 'origin.txt'
  corpus.download_corpus(str(target), url=source.as_uri(), sha256=digest)
  assert target.read_bytes() == source.read_bytes()
  assert os.listdir(target.parent) == ['origin.txt']


def test_download_with_wrong_hash_saves_nothing(tmp_path):
  source = tmp_path / 'remote.txt'
  source.write_text('而我在等你\n', encoding='utf-8')
  target = tmp_path / 'data' / 'origin.txt'
  with pytest.raises(JaylyricsError, match='expected'):
    corpus.download_corpus(str(target), url=source.as_uri(), sha256='0' * 64)
  assert not target.exists()


def test_download_offline_names_url_path_and_flag(tmp_path):
  target = tmp_path / 'origin.txt'
  url = (tmp_path / 'missing.txt').as_uri()
  with pytest.raises(JaylyricsError) as e:
    corpus.download_corpus(str(target), url=url)
  message = str(e.value)
  assert url in message and str(target) in message and 'corpus_path=' in message


def test_reverse_lines_turns_each_line_and_keeps_the_breaks():
  assert corpus.reverse_lines('从前的 我们 ') == '的前从 们我 '
  assert corpus.reverse_lines('天空气') == '气空天'  # An unfinished line too.


@given(st.text(alphabet='天空 我们的', max_size=40))
def test_reverse_lines_is_its_own_inverse(text):
  assert corpus.reverse_lines(corpus.reverse_lines(text)) == text


def test_a_right_to_left_split_reads_every_line_reversed(tiny_corpus):
  forward = corpus.read_split(tiny_corpus, 0.1)
  backward = corpus.read_split(tiny_corpus, 0.1, right_to_left=True)
  # The same corpus (its SHA-256 as cleaned) and vocabulary, each line
  # written back to front, then split at the same place.
  assert backward.corpus_sha256 == forward.corpus_sha256
  assert backward.vocab == forward.vocab
  whole = forward.vocab.decode(forward.train_ids) + forward.valid_text
  assert (forward.vocab.decode(backward.train_ids) + backward.valid_text ==
          corpus.reverse_lines(whole))
  assert len(backward.train_ids) == len(forward.train_ids)
  assert backward.valid_text != forward.valid_text
