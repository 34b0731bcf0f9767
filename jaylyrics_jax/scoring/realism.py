"""How much generated lyrics read like real ones: the realism report.

Texts are lyrics as the library writes them, a space between lines. A text
is measured whole (the seed included); its last line counts only when the
text ends with a line break (otherwise it was cut off). Every figure pools
its counts over all texts (sum of hits / sum of cases), so long and short
texts weigh by their size.

  mean_line_length   characters per complete line.
  one_char_lines     share of complete lines of one character.
  self_repetition    share of the 4-grams (spaces removed) that already
                     occurred earlier in the same text.
  training_copies    share of the 8-grams (spaces removed) found verbatim in
                     the training text (spaces removed).
  training_lines     share of complete lines, each text's first left out
                     (it holds the seed), that are whole lines of the
                     training text: recited lines too short for the
                     8-gram figure (不用麻烦了).
  chorus_lines       share of the same lines that are training lines the
                     training text has CHORUS_MIN+ times: another song's
                     chorus (不用麻烦了, 18 times), where a new song reuses
                     common lines (很简单) rather than another's hook.
  bent_lines         share of the same lines that are not training lines
                     but one character away from one of BENT_MIN+
                     characters: one changed (or two swapped), dropped or
                     added. A training line bent out of shape (雨下整遍,
                     慢温习 from 雨下整夜, 慢慢温习) reads as a slip.
  rhyme_rate         share of consecutive complete line pairs, both of at
                     least 3 characters, whose last characters are in the
                     same rhyme group (`jaylyrics_jax.data.rhyme`).
  identical_ends     share of those pairs ending on the very same character.
  distinct_2         distinct character bigrams / bigrams (spaces removed),
                     per text, averaged.
  rare_chars         share of characters seen fewer than 3 times in the
                     training text.
  fluency_bpc        bits per character (spaces included) under an
                     interpolated Kneser-Ney 5-gram of the training text: a
                     model other than the one that generated the text.
  finished_lines     share of complete lines that end on a finished word:
                     the last word that a general-purpose Chinese word
                     segmenter (jieba, dictionary only) finds in the line
                     has two or more characters. A line cut mid-phrase to
                     land on a rhyme (我可以电线 -> 电/线 split, 你说是片)
                     ends on a one-character fragment.
  word_chars         share of characters inside multi-character dictionary
                     words (by the same segmenter).

The word figures judge samples only: the segmenter's dictionary never
steers generation.

`reference_pieces` cuts the validation text into pieces of a given length,
each starting at a line start, for the same report: the real songs' figures
to hold the samples against.
"""

import collections
import dataclasses
import functools
import math
from typing import Sequence

import numpy as np

from jaylyrics_jax.config import BENT_MIN
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.scoring import ngram

REPEAT_N = 4
COPY_N = 8
RARE_COUNT = 3
FLUENCY_ORDER = 5
RHYME_MIN_LINE = 3
CHORUS_MIN = 3

FIGURES = ('mean_line_length', 'one_char_lines', 'finished_lines',
           'word_chars', 'self_repetition', 'training_copies',
           'training_lines', 'chorus_lines', 'bent_lines', 'rhyme_rate',
           'identical_ends', 'distinct_2', 'rare_chars', 'fluency_bpc')


def complete_lines(text: str) -> list[str]:
  """The text's lines, without a last line that was cut off."""
  lines = text.split(' ')
  if not text.endswith(' '):
    lines = lines[:-1] if len(lines) > 1 else lines
  return [line for line in lines if line]


def _grams(text: str, n: int) -> list[str]:
  return [text[i:i + n] for i in range(len(text) - n + 1)]


@functools.lru_cache(maxsize=8)
def gram_set(text: str, n: int) -> frozenset[str]:
  """Every n-gram of `text` with the spaces removed (cached: the training
  text's sets are asked for once per sample and per report)."""
  return frozenset(_grams(text.replace(' ', ''), n))


def _deletions(line: str) -> set[str]:
  return {line[:j] + line[j + 1:] for j in range(len(line))}


@functools.lru_cache(maxsize=8)
def training_lines(train_text: str) -> tuple[frozenset, frozenset,
                                              frozenset]:
  """The training text's lines, those it has CHORUS_MIN+ times, and those
  of BENT_MIN+ characters with one character left out (cached: best-of
  builds a judge per call)."""
  counts = collections.Counter(line for line in train_text.split(' ') if line)
  lines = frozenset(counts)
  choruses = frozenset(line for line, n in counts.items() if n >= CHORUS_MIN)
  return lines, choruses, frozenset().union(
      *(_deletions(line) for line in lines if len(line) >= BENT_MIN))


def is_bent(line: str, lines: frozenset, deletions: frozenset) -> bool:
  """`line` is one character from a training line of BENT_MIN+ characters
  (`lines`; `deletions`: theirs with one character left out) and is not
  one: the module docstring's bent line."""
  if line in lines:
    return False
  own = _deletions(line)
  return (line in deletions or any(d in deletions for d in own) or
          (len(line) > BENT_MIN and any(d in lines for d in own)))


def rhyme_pairs(lines: Sequence[str]) -> tuple[int, int, int]:
  """(eligible consecutive pairs, rhyming pairs, pairs ending identically)."""
  eligible = rhymed = identical = 0
  for a, b in zip(lines, lines[1:]):
    if len(a) < RHYME_MIN_LINE or len(b) < RHYME_MIN_LINE:
      continue
    eligible += 1
    ga, gb = rhyme.group_of(a[-1]), rhyme.group_of(b[-1])
    rhymed += ga == gb != rhyme.NONE
    identical += a[-1] == b[-1]
  return eligible, rhymed, identical


@functools.lru_cache(maxsize=1)
def _segmenter():
  import jieba  # pylint: disable=g-import-not-at-top
  jieba.setLogLevel(60)  # Its dictionary-loading messages are not ours.
  return jieba


@functools.lru_cache(maxsize=4096)
def segment(line: str) -> tuple[str, ...]:
  """The dictionary words of one line (jieba, no HMM for unknown words:
  a fragment the dictionary does not know stays single characters)."""
  return tuple(_segmenter().lcut(line, HMM=False))


def word_counts(lines: Sequence[str]) -> tuple[int, int, int]:
  """(lines ending on a word of 2+ characters, characters inside words of
  2+ characters, characters) over `lines`."""
  finished = inside = chars = 0
  for line in lines:
    words = segment(line)
    finished += len(words[-1]) >= 2
    inside += sum(len(w) for w in words if len(w) >= 2)
    chars += len(line)
  return finished, inside, chars


@dataclasses.dataclass(frozen=True)
class Judge:
  """What the report compares against: the run's training text, its
  vocabulary, and the n-gram sets and fluency model built from them once."""
  train_text: str
  vocab: Vocabulary
  copy_grams: frozenset
  lines: frozenset
  choruses: frozenset
  deletions: frozenset
  char_counts: dict
  fluency: ngram.KneserNey | None
  words: bool = True


def make_judge(train_text: str, vocab: Vocabulary,
               fluency: bool = True) -> Judge:
  """The judge of `train_text`; fluency=False skips the 5-gram and the word
  segmenter (those figures are then nan), for scoring candidates
  quickly."""
  counts = {}
  for ch in train_text:
    counts[ch] = counts.get(ch, 0) + 1
  ids = vocab.encode(train_text, unknown='skip')
  kn = (ngram.fit_kneser_ney(ids, vocab.size, FLUENCY_ORDER)
        if fluency and len(ids) else None)
  lines, choruses, deletions = training_lines(train_text)
  return Judge(train_text, vocab, gram_set(train_text, COPY_N), lines,
               choruses, deletions, counts, kn, words=fluency)


def report(texts: Sequence[str], judge: Judge) -> dict[str, float]:
  """Every figure of the module docstring over `texts` (nan where a figure
  has no case, e.g. no complete line)."""
  lines_total = line_chars = one_char = 0
  grams4 = repeated4 = grams8 = copied8 = 0
  later_lines = recited = choruses = bent = 0
  eligible = rhymed = identical = 0
  distinct = []
  chars = rare = 0
  nll_bits = scored = 0.0
  finished = inside = word_chars = 0
  for text in texts:
    lines = complete_lines(text)
    if judge.words:
      f, w, c = word_counts(lines)
      finished, inside, word_chars = finished + f, inside + w, word_chars + c
    lines_total += len(lines)
    line_chars += sum(map(len, lines))
    one_char += sum(len(line) == 1 for line in lines)
    later_lines += len(lines[1:])
    recited += sum(line in judge.lines for line in lines[1:])
    choruses += sum(line in judge.choruses for line in lines[1:])
    bent += sum(is_bent(line, judge.lines, judge.deletions)
                for line in lines[1:])
    e, r, i = rhyme_pairs(lines)
    eligible, rhymed, identical = eligible + e, rhymed + r, identical + i
    flat = text.replace(' ', '')
    seen = set()
    for g in _grams(flat, REPEAT_N):
      repeated4 += g in seen
      seen.add(g)
      grams4 += 1
    for g in _grams(flat, COPY_N):
      copied8 += g in judge.copy_grams
      grams8 += 1
    bigrams = _grams(flat, 2)
    if bigrams:
      distinct.append(len(set(bigrams)) / len(bigrams))
    chars += len(flat)
    rare += sum(judge.char_counts.get(ch, 0) < RARE_COUNT for ch in flat)
    ids = judge.vocab.encode(text, unknown='skip')
    if judge.fluency is not None and len(ids) > 1:
      logp = judge.fluency.stream_log_probs(ids[:-1], ids[1:])
      nll_bits -= float(np.sum(logp)) / math.log(2)
      scored += len(ids) - 1
  ratio = lambda a, b: a / b if b else float('nan')
  return {
      'mean_line_length': ratio(line_chars, lines_total),
      'one_char_lines': ratio(one_char, lines_total),
      'finished_lines': (ratio(finished, lines_total) if judge.words
                         else float('nan')),
      'word_chars': (ratio(inside, word_chars) if judge.words
                     else float('nan')),
      'self_repetition': ratio(repeated4, grams4),
      'training_copies': ratio(copied8, grams8),
      'training_lines': ratio(recited, later_lines),
      'chorus_lines': ratio(choruses, later_lines),
      'bent_lines': ratio(bent, later_lines),
      'rhyme_rate': ratio(rhymed, eligible),
      'identical_ends': ratio(identical, eligible),
      'distinct_2': float(np.mean(distinct)) if distinct else float('nan'),
      'rare_chars': ratio(rare, chars),
      'fluency_bpc': ratio(nll_bits, scored),
  }


def reference_pieces(valid_text: str, length: int, count: int) -> list[str]:
  """`count` pieces of `length` characters of the validation text, spread
  evenly over it, each starting at a line start (fewer if it is short)."""
  starts = [0] + [i + 1 for i, ch in enumerate(valid_text) if ch == ' ']
  starts = [s for s in starts if s + length <= len(valid_text)]
  if not starts:
    return [valid_text] if valid_text else []
  picks = np.linspace(0, len(starts) - 1, num=min(count, len(starts)))
  return [valid_text[starts[int(round(p))]:starts[int(round(p))] + length]
          for p in picks]


def line_length_bounds(train_text: str, low: float = 0.1,
                       high: float = 0.95) -> tuple[int, int, int]:
  """The `low` quantile, the lower quartile and the `high` quantile of the
  training text's line lengths: the decoder's default shortest line, the
  length from which rhymes are favoured, and the longest line."""
  lengths = [len(line) for line in train_text.split(' ') if line]
  if not lengths:
    return 1, 1, 1
  return tuple(max(1, int(round(q)))
               for q in np.quantile(lengths, [low, 0.25, high]))


def format_table(columns: dict[str, dict[str, float]]) -> str:
  """A plain-text table: one row per figure, one column per report."""
  names = list(columns)
  width = max(len(n) for n in names + ['x' * 9]) + 2
  out = ['figure'.ljust(18) + ''.join(n.rjust(width) for n in names)]
  for fig in FIGURES:
    cells = []
    for n in names:
      v = columns[n].get(fig, float('nan'))
      is_share = fig not in ('mean_line_length', 'fluency_bpc')
      cells.append((f'{v:.1%}' if is_share else f'{v:.2f}').rjust(width))
    out.append(fig.ljust(18) + ''.join(cells))
  return '\n'.join(out)


def copy_rate(generated: str, train_text: str, n: int = 4) -> float:
  """Share of the generated n-character strings (spaces removed) that occur
  verbatim in the training text (spaces removed too); nan if there are none.

  A low bits-per-character must not come from reciting the training lyrics.
  """
  seen = gram_set(train_text, n)
  text = generated.replace(' ', '')
  grams = [text[i:i + n] for i in range(len(text) - n + 1)]
  if not grams:
    return float('nan')
  return sum(g in seen for g in grams) / len(grams)
