"""Logit processors: the decoding controls that run inside the sampling scan.

A processor is a frozen (hashable, static under jit) dataclass with

  init(tables) -> state
  update(logits <float32>[V], state, token <int32>[], tables)
      -> (logits <float32>[V], state)

`update` first reads `token`, the character just fed to the model (the seed's
characters too, before generation starts), then changes the logits of the
next character: -inf bans a character. `tables` are the processor's arrays
(traced, like the mixture's tables: a new rhyme or temperature does not
recompile); `state` is whatever it carries from step to step. A `Chain`
runs processors in order, like `optax.chain`, and keeps every constraint
from emptying the choice: when a constraining processor would ban every
character, its change is dropped for that step (a line that cannot both
rhyme and stop at its longest length stops unrhymed).

Streams: line form and rhyme count characters between spaces (a space ends a
line); no-repeat and max-copy look at the text with the spaces removed, the
way a reader compares phrases across line breaks and the way
`jaylyrics_jax.scoring.realism` measures repetition and copying.
"""

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from jaylyrics_jax.scoring import ngram

NEG_INF = -jnp.inf


def _ban(logits: jax.Array, banned: jax.Array) -> jax.Array:
  return jnp.where(banned, NEG_INF, logits)


def _mask_of(tokens: jax.Array, valid: jax.Array, vocab_size: int) -> jax.Array:
  """<bool>[V]: True at every tokens[i] with valid[i]."""
  return jnp.zeros((vocab_size,), bool).at[
      jnp.where(valid, tokens, vocab_size)].set(True, mode='drop')


# ---------------------------------------------------------------- sampling


@dataclasses.dataclass(frozen=True)
class Temperature:
  """Divides the logits by tables = <float32>[] temperature (> 0)."""
  constrains = False

  def init(self, tables):
    return ()

  def update(self, logits, state, token, tables):
    return logits / tables, state


TOP_P_RADIX_BITS = 2  # TopP's search: 3 thresholds a round, 16 rounds.


@dataclasses.dataclass(frozen=True)
class TopK:
  """Keeps the k most likely characters (ties at the k-th kept too)."""
  k: int
  constrains = False

  def init(self, tables):
    return ()

  def update(self, logits, state, token, tables):
    kth = jax.lax.top_k(logits, min(self.k, logits.shape[-1]))[0][-1]
    return jnp.where(logits < kth, NEG_INF, logits), state


@dataclasses.dataclass(frozen=True)
class TopP:
  """Nucleus: keeps the smallest set of characters whose probability
  reaches tables = <float32>[] top_p (ties at its least likely kept too).

  Without a sort: the set is every character whose probability is at
  least t, t the largest probability for which that mass still reaches
  top_p. t is found by a search over the bit patterns of the float32
  probabilities (non-negative floats order as their int32 bits),
  TOP_P_RADIX_BITS bits a round: each round sums the mass above 2^bits - 1
  candidate thresholds at once, so the 31 bits below the sign (always 0)
  take 16 vectorised rounds and no loop. Sorting the vocabulary at every
  character cost ~0.75 ms a step on a 2-core CPU; 2 bits a round do the
  least work (48 sums over V in all; 4 bits take 120) and cost about 40 µs
  a step at batch 1, 4 bits about 75 (BUILD_NOTES.md, "Sampling,
  evaluation and start-up speed on CPU").
  """
  constrains = False

  def init(self, tables):
    return ()

  def update(self, logits, state, token, tables):
    probs = jax.nn.softmax(logits)
    bits = jax.lax.bitcast_convert_type(probs, jnp.int32)
    # The answer lies in [low, low + 2^shift): narrowed a digit a round.
    low, shift = jnp.int32(0), 31
    while shift > 0:  # Python: unrolled, one round per digit.
      width = min(TOP_P_RADIX_BITS, shift)
      shift -= width
      ups = low + (jnp.arange(1, 2 ** width, dtype=jnp.int32) << shift)
      mass = jnp.sum(jnp.where(bits[None, :] >= ups[:, None], probs[None, :],
                               0.0), axis=1)
      low = low + (jnp.sum(mass >= tables).astype(jnp.int32) << shift)
    return jnp.where(bits >= low, logits, NEG_INF), state


@dataclasses.dataclass(frozen=True)
class Greedy:
  """Leaves only the most likely character; with `draw_after` >= 0 only when
  the character just read is not `draw_after` (the original's 'combined'
  mode: draw after a space, argmax elsewhere)."""
  draw_after: int = -1
  constrains = False

  def init(self, tables):
    return ()

  def update(self, logits, state, token, tables):
    best = jnp.arange(logits.shape[-1]) == jnp.argmax(logits)
    greedy = jnp.where(best, logits, NEG_INF)
    if self.draw_after < 0:
      return greedy, state
    return jnp.where(token == self.draw_after, logits, greedy), state


# ------------------------------------------------------------ line form


@dataclasses.dataclass(frozen=True)
class LineForm:
  """Lines of min_len..max_len characters: no space before min_len
  characters, a space forced after max_len."""
  space_id: int
  min_len: int
  max_len: int
  constrains = True

  def init(self, tables):
    return jnp.zeros((), jnp.int32)  # Characters in the current line.

  def update(self, logits, line_len, token, tables):
    line_len = jnp.where(token == self.space_id, 0, line_len + 1)
    is_space = jnp.arange(logits.shape[-1]) == self.space_id
    logits = jnp.where((line_len < self.min_len) & is_space, NEG_INF, logits)
    logits = jnp.where((line_len >= self.max_len) & ~is_space, NEG_INF, logits)
    return logits, line_len


@flax.struct.dataclass
class RhymeTables:
  """rhyme_of <int32>[V]: each character's rhyme group (-1: none);
  target <int32>[]: the group lines must end on, -1 = take the first
  line's."""
  rhyme_of: jax.Array
  target: jax.Array


@flax.struct.dataclass
class RhymeState:
  target: jax.Array    # <int32>[] the group line ends rhyme on (-1: not yet).
  line_len: jax.Array  # <int32>[] characters in the current line.
  last: jax.Array      # <int32>[] the last character read (-1: none).
  prev_end: jax.Array  # <int32>[] the character that ended the last line.


@dataclasses.dataclass(frozen=True)
class Rhyme:
  """Line ends rhyme.

  A line of at least min_len characters may end (a space) only after a
  character of the target group that differs from the previous line's last
  character. From `start_len` characters on, the characters of the target
  group gain `bonus` (in logits), growing linearly to 2 * bonus at
  max_len - 1 (except the character just written and the last line's
  end), so lines find a rhyme about where lines usually end, and
  after a rhyming character the space gains `bonus` too, so the line ends
  there. The max_len-th character of a line must rhyme. The target is the first complete line's group when tables.target is
  -1 (a line ending on a character without a group sets nothing).
  """
  space_id: int
  min_len: int
  start_len: int
  max_len: int
  bonus: float = 2.0
  strict: bool = True
  constrains = True

  def init(self, tables):
    minus = jnp.full((), -1, jnp.int32)
    return RhymeState(jnp.asarray(tables.target, jnp.int32),
                      jnp.zeros((), jnp.int32), minus, minus)

  def update(self, logits, state, token, tables):
    ends = token == self.space_id
    last_group = tables.rhyme_of[jnp.maximum(state.last, 0)]
    line_done = ends & (state.line_len > 0)
    take = line_done & (state.target < 0) & (state.last >= 0) & (
        last_group >= 0)
    state = RhymeState(
        target=jnp.where(take, last_group, state.target),
        line_len=jnp.where(ends, 0, state.line_len + 1),
        last=jnp.where(ends, state.last, token),
        prev_end=jnp.where(line_done, state.last, state.prev_end))
    target = state.target
    known = (target >= 0) & ~ends
    is_space = jnp.arange(logits.shape[-1]) == self.space_id
    rhymes = (tables.rhyme_of[jnp.maximum(state.last, 0)] == target) & (
        state.last != state.prev_end)
    long_enough = state.line_len >= self.min_len
    if self.strict:
      logits = jnp.where(known & long_enough & ~rhymes & is_space, NEG_INF,
                         logits)
    span = max(self.max_len - 1 - self.start_len, 1)
    ramp = 1.0 + jnp.minimum((state.line_len + 1 - self.start_len) / span, 1.0)
    near_end = known & (state.line_len + 1 >= self.start_len)
    # Not for the character just written, nor the last line's end: the
    # bonus would pull them again (小小小小 at a line's end).
    ids = jnp.arange(logits.shape[-1])
    fresh = (ids != state.last) & (ids != state.prev_end)
    bonus = jnp.where(is_space, jnp.where(rhymes & long_enough, 1.0, 0.0),
                      jnp.where((tables.rhyme_of == target) & fresh, ramp,
                                0.0))
    logits = logits + jnp.where(near_end, self.bonus * bonus, 0.0)
    # The last character a line may have: a rhyme, or the line ends now.
    can_end = jnp.where(is_space, rhymes & long_enough,
                        (tables.rhyme_of == target) &
                        (jnp.arange(logits.shape[-1]) != state.prev_end))
    last_slot = known & (state.line_len + 1 >= self.max_len)
    return jnp.where(last_slot & ~can_end, NEG_INF, logits), state


# ------------------------------------------------------------ repetition


@flax.struct.dataclass
class NoRepeatState:
  """A ring buffer over the last W non-space characters.

  hist/stamp: the character and its position in the space-free stream (-1:
  empty slot). match[s]: how many characters before slot s's position equal
  the end of the stream (at most n - 1), so slots with match == n - 1 hold
  the characters that would repeat an n-gram. line_start[s]: that character
  began a line; count[s]: at a line start, how often that line's text has
  appeared. chorus[s]: line starts whose line so far equals the current
  line so far (candidates for a repeated line). t: characters read;
  line_start_pos: position of the current line's first character;
  new_line: the next character starts a line.
  """
  hist: jax.Array
  stamp: jax.Array
  match: jax.Array
  line_start: jax.Array
  count: jax.Array
  chorus: jax.Array
  t: jax.Array
  line_start_pos: jax.Array
  new_line: jax.Array


@dataclasses.dataclass(frozen=True)
class NoRepeat:
  """Never repeats an n-gram of the space-free text, except by repeating a
  whole earlier line (a chorus), each line's text at most
  `max_line_repeats` more times: a line that has begun as an earlier line
  for n - 1 characters must go on as one, to its end. Remembers the last
  `window` characters."""
  n: int
  space_id: int
  window: int
  max_line_repeats: int = 1
  constrains = True

  def init(self, tables):
    w = self.window
    return NoRepeatState(
        hist=jnp.zeros((w,), jnp.int32), stamp=jnp.full((w,), -1, jnp.int32),
        match=jnp.zeros((w,), jnp.int32), line_start=jnp.zeros((w,), bool),
        count=jnp.zeros((w,), jnp.int32), chorus=jnp.zeros((w,), bool),
        t=jnp.zeros((), jnp.int32), line_start_pos=jnp.zeros((), jnp.int32),
        new_line=jnp.ones((), bool))

  def _at(self, state, pos):
    """(character, is it stored, is it a line start) at stream positions."""
    slot = pos % self.window
    stored = (pos >= 0) & (state.stamp[slot] == pos)
    return state.hist[slot], stored, state.line_start[slot]

  def _read_space(self, state):
    """A line ended: record its appearances, open chorus candidates."""
    cur_len = state.t - state.line_start_pos
    after, stored, starts = self._at(state, state.stamp + cur_len)
    # Candidates whose line ended exactly where the current one does.
    ended = ((state.stamp + cur_len == state.line_start_pos) |
             (stored & starts))
    whole = state.chorus & ended & ~state.new_line
    seen = 1 + jnp.max(jnp.where(whole, state.count, 0))
    own = state.line_start_pos % self.window
    count = jnp.where(whole, seen, state.count)
    count = jnp.where(
        ~state.new_line & (state.stamp[own] == state.line_start_pos),
        count.at[own].set(seen), count)
    chorus = state.line_start & (state.stamp >= 0) & (
        count <= self.max_line_repeats)
    return state.replace(count=count, chorus=chorus,
                         new_line=jnp.ones((), bool))

  def _read_char(self, state, token):
    t = state.t
    slot = t % self.window
    old_match = state.match
    hist = state.hist.at[slot].set(token)
    stamp = state.stamp.at[slot].set(t)
    line_start = state.line_start.at[slot].set(state.new_line)
    count = state.count.at[slot].set(jnp.where(state.new_line, 1, 0))
    # match[s] = 1 + old match of the slot before s, where s's predecessor
    # (one position earlier, still stored) is the character just read.
    prev_hist, prev_stamp = jnp.roll(hist, 1), jnp.roll(stamp, 1)
    extends = (stamp >= 1) & (prev_stamp == stamp - 1) & (prev_hist == token)
    match = jnp.where(extends, jnp.minimum(jnp.roll(old_match, 1) + 1,
                                           self.n - 1), 0)
    line_start_pos = jnp.where(state.new_line, t, state.line_start_pos)
    # The chorus candidates that this character continues.
    offset = t - line_start_pos
    pos = state.stamp + offset
    ch, stored, starts = self._at(state, pos)
    follows = (stored & (starts == (offset == 0)) & (ch == token) &
               (pos < line_start_pos))
    chorus = state.chorus & follows & (state.stamp >= 0)
    return state.replace(hist=hist, stamp=stamp, match=match,
                         line_start=line_start, count=count, chorus=chorus,
                         t=t + 1, line_start_pos=line_start_pos,
                         new_line=jnp.zeros((), bool))

  def _read(self, state, token):
    """The state after reading `token` (a space or a character)."""
    return jax.lax.cond(token == self.space_id, self._read_space,
                        lambda s: self._read_char(s, token), state)

  def update(self, logits, state, token, tables):
    state = self._read(state, token)
    return self._ban_next(logits, state), state

  def _ban_next(self, logits, state):
    """Bans what would repeat an n-gram, and what breaks off a chorus."""
    v = logits.shape[-1]
    banned = _mask_of(state.hist, (state.stamp >= 0) &
                      (state.match >= self.n - 1), v)
    # What the chorus candidates would write next.
    offset = jnp.where(state.new_line, 0, state.t - state.line_start_pos)
    current = jnp.where(state.new_line, state.t, state.line_start_pos)
    pos = state.stamp + offset
    ch, stored, starts = self._at(state, pos)
    go_on = (state.chorus & stored & (starts == (offset == 0)) &
             (pos < current))
    allowed = _mask_of(ch, go_on, v)
    # Once a line has repeated n - 1 characters of an earlier line, it is a
    # chorus: it goes on as one of the lines it repeats, to their end.
    ended = state.chorus & (offset > 0) & ((pos == current) | (stored & starts))
    committed = (offset >= self.n - 1) & jnp.any(go_on | ended)
    allowed = allowed | ((jnp.arange(v) == self.space_id) & jnp.any(ended))
    banned = jnp.where(committed, ~allowed, banned & ~allowed)
    return _ban(logits, banned)


@flax.struct.dataclass
class CopyTables:
  """The distinct 1..n+1-grams of the space-free training text, numbered as
  in `scoring.ngram` (the k-gram `h w` is key id(h) * V + w, its id is
  that key's rank): keys[k - 1] <int32>[G_k + 1] sorted, padded with one
  key no query matches; starts <int32>[G_n + 1]: the (n+1)-grams that extend
  n-gram id c are keys[n][starts[c]:starts[c + 1]]."""
  keys: tuple[jax.Array, ...]
  starts: jax.Array


@dataclasses.dataclass(frozen=True)
class MaxCopy:
  """Never writes more than n consecutive characters (spaces removed) that
  occur verbatim in the training text: after a training n-gram, every
  character that would extend it to a training (n+1)-gram is banned.

  width: the most distinct characters any training n-gram is followed by.
  """
  n: int
  space_id: int
  vocab_size: int
  width: int
  constrains = True

  def init(self, tables):
    # ids[j]: id of the (j+1)-gram ending at the last character, -1: none.
    return jnp.full((self.n,), -1, jnp.int32)

  def update(self, logits, ids, token, tables):
    v = self.vocab_size
    new_ids = ngram.extend_ids(tables.keys, ids, token, v)
    ids = jnp.where(token == self.space_id, ids, new_ids)
    ctx = ids[-1]
    lo = tables.starts[jnp.maximum(ctx, 0)]
    hi = tables.starts[jnp.maximum(ctx, 0) + 1]
    idx = lo + jnp.arange(self.width)
    last = tables.keys[self.n]
    nexts = last[jnp.minimum(idx, last.shape[0] - 1)] % v
    banned = _mask_of(nexts, (ctx >= 0) & (idx < hi), v)
    return _ban(logits, banned), ids


# ----------------------------------------------------------------- chain


@dataclasses.dataclass(frozen=True)
class Chain:
  """Processors run in order; `tables` is a tuple with one entry each."""
  processors: tuple[Any, ...] = ()

  def init(self, tables: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p.init(t) for p, t in zip(self.processors, tables))

  def update(self, logits: jax.Array, states: tuple[Any, ...],
             token: jax.Array, tables: tuple[Any, ...]):
    new_states = []
    for p, s, t in zip(self.processors, states, tables):
      changed, s = p.update(logits, s, token, t)
      if p.constrains:  # Never ban everything: drop this step's change.
        changed = jnp.where(jnp.any(changed > NEG_INF), changed, logits)
      logits = changed
      new_states.append(s)
    return logits, tuple(new_states)

  def read(self, states: tuple[Any, ...], token: jax.Array,
           tables: tuple[Any, ...], vocab_size: int) -> tuple[Any, ...]:
    """Reads a seed character: the states move on, no logits are needed."""
    return self.update(jnp.zeros((vocab_size,), jnp.float32), states, token,
                       tables)[1]
