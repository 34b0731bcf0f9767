"""Raw lyrics in, clean character stream out.

The cleaning rule is the 2016 original's: keep CJK ideographs U+4E00-U+9FA5
and whitespace, drop credit and title lines, end every kept line with one
space. Everything here is a pure function of its arguments except the file
readers, which turn every way a file can be wrong into a `JaylyricsError`.
"""

import dataclasses
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from typing import Sequence

import numpy as np

from jaylyrics_jax.data.vocab import build_vocabulary
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.files import new_file_mode

DEFAULT_CORPUS_PATH = os.path.join('data', 'jaychou', 'origin.txt')
DEFAULT_CORPUS_URL = (
    'https://raw.githubusercontent.com/zzw922cn/jaylyrics_generation_tensorflow/'
    '6ca81587ad51d8e8f27eb504a43927d590e35518/data/origin.txt')
DEFAULT_CORPUS_SHA256 = (
    'bab4e12ea99692ce9f056c3168cdfe3bf05177d45e3ab9bd1132c332bad967a0')

# Lines holding any of these are credits or headers, not lyrics.
DEFAULT_DROP_KEYWORDS = ('周杰伦', '方文山', '作词', '作曲', '编曲', '王羲之')
# A line that is exactly this word is a section header.
DEFAULT_DROP_LINES = ('歌词',)

_NOT_KEPT = re.compile(r'[^\u4e00-\u9fa5\s]')
_SPACES = re.compile(r' +')


def clean_line(line: str,
               drop_keywords: Sequence[str] = DEFAULT_DROP_KEYWORDS,
               drop_lines: Sequence[str] = DEFAULT_DROP_LINES) -> str:
  """Cleans one raw line; returns '' when the line is dropped.

  Every whitespace character (the full-width space U+3000 included) becomes
  ' ', every other character outside U+4E00-U+9FA5 is deleted, the line is
  stripped, runs of spaces collapse to one, and a kept line ends with ' '.
  """
  line = ''.join(' ' if ch.isspace() else ch for ch in line)
  line = _NOT_KEPT.sub('', line).strip()
  if not line or line in drop_lines:
    return ''
  if any(word in line for word in drop_keywords):
    return ''
  return _SPACES.sub(' ', line) + ' '


def clean_text(raw: str,
               drop_keywords: Sequence[str] = DEFAULT_DROP_KEYWORDS,
               drop_lines: Sequence[str] = DEFAULT_DROP_LINES) -> str:
  """Cleans a whole raw lyrics text line by line and concatenates the lines."""
  return ''.join(clean_line(line, drop_keywords, drop_lines)
                 for line in raw.splitlines())


def read_text_file(path: str, what: str = 'corpus') -> str:
  """Reads a UTF-8 text file, explaining every way it can fail."""
  if not os.path.exists(path):
    raise JaylyricsError(
        f'The {what} file {path!r} does not exist. Check the path, or pass '
        'another file.')
  if os.path.isdir(path):
    raise JaylyricsError(
        f'The {what} path {path!r} is a directory, not a text file. Pass the '
        'path of a UTF-8 lyrics file inside it.')
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise JaylyricsError(
        f'Cannot read the {what} file {path!r}: {e.strerror}. Check its '
        'permissions.') from None
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise JaylyricsError(
        f'The {what} file {path!r} is not valid UTF-8: byte offset {e.start} '
        f'(0x{data[e.start]:02x}) cannot be decoded. Convert the file to '
        'UTF-8 first, e.g. `iconv -f GBK -t UTF-8 in.txt > out.txt`.') from None


def load_clean_text(path: str, min_chars: int = 2, what: str = 'corpus',
                    drop_keywords: Sequence[str] = DEFAULT_DROP_KEYWORDS) -> str:
  """Reads and cleans a lyrics file; refuses one with nothing to learn from."""
  raw = read_text_file(path, what)
  if not raw.strip():
    raise JaylyricsError(
        f'The {what} file {path!r} is empty. Pass a file with Chinese lyrics.')
  text = clean_text(raw, drop_keywords)
  if len(text) < min_chars:
    raise JaylyricsError(
        f'The {what} file {path!r} holds {len(text)} characters after '
        'cleaning (only Chinese characters U+4E00-U+9FA5 and spaces are '
        f'kept, credit lines are dropped); at least {min_chars} are needed. '
        'Pass a file with Chinese lyrics.')
  return text


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def download_corpus(path: str = DEFAULT_CORPUS_PATH,
                    url: str = DEFAULT_CORPUS_URL,
                    sha256: str = DEFAULT_CORPUS_SHA256,
                    timeout_s: float = 30.0) -> str:
  """Downloads the corpus to `path`, verifying its SHA-256, written atomically.

  Returns `path`. Nothing is written unless the whole file arrived and its
  hash matches, so a failed download never leaves a partial corpus behind.
  """
  try:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
      data = response.read()
  except (urllib.error.URLError, OSError, ValueError) as e:
    reason = getattr(e, 'reason', e)
    raise JaylyricsError(
        f'The corpus {path!r} is missing and could not be downloaded from '
        f'{url} ({reason}). Download that file by hand to {path!r}, or pass '
        'a local lyrics file as corpus_path=.') from None
  digest = sha256_of(data)
  if digest != sha256:
    raise JaylyricsError(
        f'The file downloaded from {url} has SHA-256 {digest}, expected '
        f'{sha256}; it was not saved. Retry, or pass a local lyrics file as '
        'corpus_path=.')
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.origin.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would keep others out.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def resolve_corpus(path: str | None) -> str:
  """Returns the corpus path to read, downloading the default one if needed."""
  if path:
    return path
  if not os.path.exists(DEFAULT_CORPUS_PATH):
    download_corpus(DEFAULT_CORPUS_PATH)
  return DEFAULT_CORPUS_PATH


def split_train_valid(text: str, valid_fraction: float) -> tuple[str, str]:
  """Splits off the last `valid_fraction` of the text for validation."""
  if not 0.0 <= valid_fraction < 1.0:
    raise JaylyricsError(
        f'valid_fraction={valid_fraction!r}: must be in [0, 1).')
  n_valid = int(round(len(text) * valid_fraction))
  return text[:len(text) - n_valid], text[len(text) - n_valid:]


def reverse_lines(text: str) -> str:
  """Every line of `text` (the characters between line breaks, which are
  spaces) written back to front, the breaks kept in place: what a
  right-to-left model reads (`ModelConfig.right_to_left`). Its own
  inverse."""
  return ' '.join(line[::-1] for line in text.split(' '))


@dataclasses.dataclass(frozen=True)
class CorpusSplit:
  """A corpus read once for a run: cleaned, its vocabulary built on the
  whole text, cut into training ids <int32>[N] and the validation text, and
  the cleaned text's SHA-256 (what checkpoints record). For a
  right-to-left model the ids and the validation text are in its reading
  order (`reverse_lines`); the SHA-256 is the cleaned text's as read."""
  vocab: Vocabulary
  train_ids: np.ndarray
  valid_text: str
  corpus_sha256: str


def read_split(corpus_path: str, valid_fraction: float,
               min_chars: int = 2, right_to_left: bool = False
               ) -> CorpusSplit:
  """Reads and cleans `corpus_path`, builds its vocabulary and splits it;
  right_to_left: every line reversed first (`reverse_lines`)."""
  text = load_clean_text(corpus_path, min_chars=min_chars)
  sha256 = sha256_of(text.encode('utf-8'))
  if right_to_left:
    text = reverse_lines(text)
  vocab = build_vocabulary(text)
  train_text, valid_text = split_train_valid(text, valid_fraction)
  return CorpusSplit(vocab=vocab, train_ids=vocab.encode(train_text),
                     valid_text=valid_text, corpus_sha256=sha256)
