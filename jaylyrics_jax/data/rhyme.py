"""Rhyme groups of Chinese characters, from their pinyin finals.

A line of a Chinese song rhymes on the final (韵母) of its last syllable,
and songwriters group finals that sound alike into the thirteen rhyme
classes of popular song and opera (十三辙). We use those classes:

  group  name      finals (pinyin, ü written v)
  0      发花 a    a ia ua
  1      梭波 o    o e uo
  2      乜斜 ie   ie ve
  3      一七 i    i v er        (zhi/chi/shi/ri/zi/ci/si included)
  4      姑苏 u    u
  5      怀来 ai   ai uai
  6      灰堆 ei   ei ui
  7      遥条 ao   ao iao
  8      油求 ou   ou iu
  9      言前 an   an ian uan van
  10     人辰 en   en in un vn
  11     江阳 ang  ang iang uang
  12     中东 ong  eng ing ong iong

A character's final is pypinyin's phonetic (`strict=True`) final of its most
common reading, so 雨/去/女 (yu/qu/nü) are `v` and rhyme with 你 (i), as they
are sung. Characters whose common reading has the neutral tone (的 了 着 吗
呢 吧 ...) get no group (-1): they end lines as particles, not as rhymes.
Characters pypinyin cannot read (Latin letters, punctuation, the space) get
-1 too.

`rhyme_table(vocab)` is the per-vocabulary table <int32>[V] the decoder keeps
on the device; `group_of_text` reads a user's rhyme choice (a character or a
final). Only the pronunciation table of pypinyin is used: no word lists.
"""

import functools
from typing import Sequence

import numpy as np

from jaylyrics_jax.errors import JaylyricsError

NONE = -1

GROUPS = (
    ('发花', ('a', 'ia', 'ua')),
    ('梭波', ('o', 'e', 'uo')),
    ('乜斜', ('ie', 've', 'ue')),
    ('一七', ('i', 'v', 'er')),
    ('姑苏', ('u',)),
    ('怀来', ('ai', 'uai')),
    ('灰堆', ('ei', 'ui', 'uei')),
    ('遥条', ('ao', 'iao')),
    ('油求', ('ou', 'iu', 'iou')),
    ('言前', ('an', 'ian', 'uan', 'van')),
    ('人辰', ('en', 'in', 'un', 'uen', 'vn')),
    ('江阳', ('ang', 'iang', 'uang')),
    ('中东', ('eng', 'ing', 'ong', 'iong', 'ueng')),
)
GROUP_OF_FINAL = {final: g for g, (_, finals) in enumerate(GROUPS)
                  for final in finals}


@functools.lru_cache(maxsize=8192)
def final_of(ch: str) -> str:
  """The phonetic pinyin final of a character's most common reading, with a
  trailing '5' for the neutral tone ('' if pypinyin cannot read it)."""
  from pypinyin import lazy_pinyin, Style  # pylint: disable=g-import-not-at-top
  if len(ch) != 1 or not '\u3400' <= ch <= '\u9fff':
    return ''
  final = lazy_pinyin(ch, style=Style.FINALS_TONE3, strict=True,
                      neutral_tone_with_five=True, errors=lambda _: [''])[0]
  return final


def group_of(ch: str) -> int:
  """The rhyme group of one character (NONE for neutral-tone particles and
  characters without a reading)."""
  final = final_of(ch)
  if not final or final.endswith('5'):
    return NONE
  return GROUP_OF_FINAL.get(final.rstrip('1234'), NONE)


def group_name(group: int) -> str:
  """'言前 (an ian uan van)' for group 9; '' for NONE."""
  if group == NONE:
    return ''
  name, finals = GROUPS[group]
  return f'{name} ({" ".join(finals)})'


def rhyme_table(chars: Sequence[str]) -> np.ndarray:
  """<int32>[V] the rhyme group of every vocabulary character (NONE: none)."""
  return np.array([group_of(ch) for ch in chars], dtype=np.int32)


def group_of_text(rhyme: str) -> int:
  """Reads a rhyme choice: one Chinese character, or a pinyin final such as
  'ang' or 'ian' (ü as v), or a group's name such as 江阳."""
  text = rhyme.strip().lower().replace('ü', 'v')
  for g, (name, _) in enumerate(GROUPS):
    if text == name:
      return g
  if text in GROUP_OF_FINAL:
    return GROUP_OF_FINAL[text]
  if len(text) == 1:
    g = group_of(text)
    if g != NONE:
      return g
    raise JaylyricsError(
        f'rhyme={rhyme!r}: the character has no rhyming final (a neutral-tone '
        'particle, or not Chinese). Pass a character that ends a line with a '
        'full syllable, a final such as "ang", or "auto".')
  raise JaylyricsError(
      f'rhyme={rhyme!r}: not a Chinese character, a pinyin final ('
      f'{", ".join(sorted(GROUP_OF_FINAL))}) or a rhyme group name. Pass one '
      'of those, "auto" or "none".')
