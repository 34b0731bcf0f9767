"""The line writer: lyrics written a whole line at a time.

A songwriter tries whole lines and keeps one that says something, has a
usual length and lands on the rhyme; cutting a phrase wherever a rhyming
character fits reads as broken (我可以电线). So for every line:

1. K candidate lines are drawn in one vmapped `lax.scan`, all from the same
   state (the model's carry and the decoding controls' states after the
   lines chosen so far). The per-character controls that keep text clean
   (no-repeat, max-copy) run inside the draw as hard filters; nothing
   pushes a line break into the middle of a phrase. With a seek bonus
   (`LineConfig.seek_bonus`, off by default) the first half of the
   candidates draw the line's rhyme group with that logit bonus wherever a
   line ending there would reach min_len: more candidates that rhyme, each
   still ended by the model's own break and scored without the bonus.
2. A candidate ends where the model itself writes a line break. One that
   reaches `max_line` characters without one is capped, and one that ends
   before `min_line` characters is too short: both fail. (Banning the
   break before `min_line` instead made the model add one character and
   stop: 天空 + 气.)
3. Each candidate gets the documented score (`line_scores`):

     score = likelihood_weight * mean log-probability per character, the
             line break included, under the generating distribution
             (before the controls)
           + break_weight * log-probability of the line break itself
           + length_weight * log P(line length)
           + novelty_weight * mean surprise per character (-log p, the
             break included) under the run's Kneser-Ney n-gram of its
             training text

           - recital_penalty * log2(1 + n), if the candidate is a whole
             line of the training text, which has it n times (and the
             line has no seed characters)
           - bent_penalty, if instead it is one character away from one
             (`bent_lines`; no seed characters either)

   where P is the training text's line-length distribution (add-half
   smoothed). The break's own log-probability says whether the model
   thinks the line is finished there: a line stopped mid-phrase (你却前)
   has an unlikely break even when its characters are likely. A recited
   line (不用麻烦了) is the likeliest candidate wherever it fits, so without
   the penalty it comes back in verse after verse; the more often the
   training songs repeat a line (a chorus: 不用麻烦了 18 times), the
   better the model knows it and the more it loses, while a line written
   once, as real songs reuse common lines, loses recital_penalty. The chosen
   line is the allowed one (uncapped and, when rewriting, different from
   the line it replaces) with the best score + rhyme_weight if it rhymes
   (the rhyme scheme gives the line a rhyme group and the line ends in it).
   With rhyme_weight=inf a rhyming line is kept whenever one is allowed;
   but then a line the model broke off where a rhyming character fell
   (爱上个水) beats a whole line that does not rhyme, so a finite weight
   lets rhyme win only among lines that score about as well.
4. The next line continues from exactly the chosen line's state: the
   state the draw reached at its end (kept for every candidate and step),
   or, when that state is too big to keep K x steps times (an attention
   model's memory, the neural cache: over `KEEP_STATES_BYTES`), the chosen
   line read again from the line's start (a batch-1 scan).

The novelty term needs the run's n-gram (`write_verses(ngram=...)`); the
likelihood term alone keeps the candidate the model finds likeliest, and
the model finds the phrases it learned by heart likeliest, so the kept
lines are pieced together from training phrases. The n-gram is the
measure of that: a line the model finds likely and the n-gram does not
is one the model composed.

A rhyme scheme (`LineConfig.rhyme_scheme`) names the lines that rhyme:
AABB (couplets), ABAB (alternate lines), AAAA (one rhyme throughout) or
free. AABB and ABAB rhyme anew every four lines, as songs change rhyme from
stanza to stanza. A letter's rhyme group is the one `SamplingConfig.rhyme`
names for A (auto: none), otherwise that of the stanza's first chosen line
of that letter that ends on a character with a group. A line "rhymes" when
its last character is in its letter's group and differs from the previous
line's last character. A candidate is also not allowed when it repeats a
line already written (one of the last SEEN_LINES) or writes one character
three times in a row.

Everything runs on the device: a verse of `LINES_PER_CALL` lines is one
compiled program (a scan over lines around the scan over characters),
vmapped over samples; longer texts call it again from the state it left.
"""

import collections
import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.config import BENT_MIN
from jaylyrics_jax.config import LineConfig
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation import controls
from jaylyrics_jax.generation import processors
from jaylyrics_jax.generation import sampler
from jaylyrics_jax.generation.sampler import DecodeState
from jaylyrics_jax.scoring.mixture import DeviceMixture
from jaylyrics_jax.scoring.mixture import kneser_ney_log_prob
from jaylyrics_jax.scoring.mixture import KneserNeyTables
from jaylyrics_jax.scoring.mixture import MixtureSpec
from jaylyrics_jax.scoring.ngram import extend_ids
from jaylyrics_jax.scoring.ngram import insertion_index

LINES_PER_CALL = 8
# Which letter of the scheme each line takes (-1: the line need not rhyme).
SCHEMES = {'free': (), 'AABB': (0, 0, 1, 1), 'ABAB': (0, 1, 0, 1),
           'AAAA': (0,)}
LETTERS = 2
UNBOUNDED_LINE = 32  # The cap of a line when SamplingConfig.max_line is 0.
SEEN_LINES = 64  # Lines remembered so that none is written twice.
NO_LINE = np.iinfo(np.int32).max  # The fingerprint of an empty slot.
# The largest sampler state (model carry and controls) the draw keeps for
# every candidate and step; a bigger one is read again instead.
KEEP_STATES_BYTES = 1 << 16


@dataclasses.dataclass(frozen=True)
class LineSpec:
  """The static shape of the line writer (part of the compiled program).

  space_id: the line break; min_len: the shortest line (a shorter
  candidate fails); max_len: the longest line (a longer candidate
  is capped); candidates: K; pattern: the scheme's letters (`SCHEMES`);
  seek: whether half the candidates seek the rhyme (a seek bonus; without
  one the draw adds nothing to the logits); reverse: the model writes each
  line from its last character (`ModelConfig.right_to_left`), so a line's
  rhyme is the first character drawn.
  """
  space_id: int
  max_len: int
  candidates: int
  pattern: tuple[int, ...]
  min_len: int = 1
  seek: bool = False
  reverse: bool = False

  @property
  def steps(self) -> int:
    """Characters drawn per candidate: the longest line and its break."""
    return self.max_len + 1


@flax.struct.dataclass
class LineTables:
  """rhyme_of <int32>[V]: each character's rhyme group (-1: none);
  length_prior <float32>[max_len + 1]: log P(line length);
  likelihood_weight, length_weight, break_weight <float32>[]; targets
  <int32>[LETTERS]: each letter's rhyme group to start with (-1: the first line of that letter sets it); avoid
  <int32>[steps]: a line (its characters then the break, padded with -1)
  that the chosen line must differ from, all -1 for none; train_lines
  <int32>[N]: the fingerprints (`line_hash`) of the training text's lines
  and recital_weights <float32>[N] log2(1 + how often the text has each),
  recital_penalty <float32>[] what a candidate among them loses per unit
  of its weight;
  train_deletions <int32>[M]: the fingerprints of the training lines of
  BENT_MIN+ characters with one character left out (`deletion_hashes`),
  bent_penalty <float32>[] what a bent line loses;
  novelty_weight <float32>[] and ngram: the Kneser-Ney tables whose surprise
  it weighs (None: no novelty term); rhyme_weight <float32>[]: what a
  rhyming candidate gains over the others (inf: it is kept whenever one
  is allowed); seek_bonus <float32>[]: the rhyme seekers' logit bonus
  (used when LineSpec.seek)."""
  rhyme_of: jax.Array
  length_prior: jax.Array
  likelihood_weight: jax.Array
  length_weight: jax.Array
  break_weight: jax.Array
  targets: jax.Array
  avoid: jax.Array
  train_lines: jax.Array
  recital_weights: jax.Array
  recital_penalty: jax.Array
  train_deletions: jax.Array
  bent_penalty: jax.Array
  novelty_weight: jax.Array
  rhyme_weight: jax.Array
  seek_bonus: jax.Array
  ngram: KneserNeyTables | None = None


@flax.struct.dataclass
class VerseState:
  """Where a verse stands: the sampler's state after the last chosen line
  (its token the line break, not yet read), each letter's rhyme group
  (-1: not set yet), the last line's last character (-1: none), the index
  of the line being written, the characters it already has (a seed's) and
  the fingerprints of the last SEEN_LINES lines written (`line_hash`),
  and the ids of the n-grams ending at the last character read
  (`scoring.mixture.kneser_ney_step`; empty without a novelty n-gram)."""
  decode: DecodeState
  targets: jax.Array
  prev_end: jax.Array
  line: jax.Array
  line_len: jax.Array
  seen: jax.Array
  grams: jax.Array


def seed_grams(ngram: KneserNeyTables | None, seed_ids: jax.Array,
               seed_len: jax.Array) -> jax.Array:
  """The n-gram ids after seed_ids[:seed_len - 1] (the decode state's token
  is the seed's last character, not yet read); empty without an n-gram."""
  if ngram is None:
    return jnp.zeros((0,), jnp.int32)

  def read(g, x):
    i, token = x
    new = extend_ids(ngram.keys, g, token, ngram.vocab_size)
    return jnp.where(i < seed_len - 1, new, g), None

  empty = jnp.full((len(ngram.keys) - 1,), -1, jnp.int32)
  return jax.lax.scan(read, empty, (jnp.arange(seed_ids.shape[0]),
                                    seed_ids))[0]


def empty_seen() -> jax.Array:
  """<int32>[SEEN_LINES]: no line written yet."""
  return jnp.full((SEEN_LINES,), NO_LINE, jnp.int32)


@flax.struct.dataclass
class LineChoice:
  """One line's draw: every candidate's characters and their
  log-probabilities <[K, steps]>, its score, allowed flag (ended by a break
  within min_len..max_len characters, no line written before, no character
  three times in a row, not the line to avoid) and rhyme flag <[K]>, and
  the chosen line: its index `best`, its characters with the break
  <int32>[steps] (`keep` of them), the sum of their log-probabilities, and
  whether it was capped (no candidate was allowed and the best one ran
  past max_len: it is cut there)."""
  tokens: jax.Array
  log_probs: jax.Array
  scores: jax.Array
  valid: jax.Array
  rhymes: jax.Array
  best: jax.Array
  line: jax.Array
  keep: jax.Array
  log_prob: jax.Array
  capped: jax.Array


def _line_mean(values: jax.Array, first_break: jax.Array) -> jax.Array:
  """<float32>[K]: the mean of each row of values <float32>[K, steps] over
  its line's characters and break (the first first_break + 1)."""
  n = first_break + 1
  upto = jnp.arange(values.shape[1])[None, :] < n[:, None]
  return jnp.sum(jnp.where(upto, values, 0.0), axis=1) / n


def line_scores(log_probs: jax.Array, first_break: jax.Array,
                length: jax.Array, tables: LineTables) -> jax.Array:
  """The documented score of candidates <[K]>, before the recital penalty
  and the novelty term: likelihood_weight * mean log-probability of their
  characters and break (log_probs <float32>[K, steps], the break at
  first_break), plus break_weight * the break's log-probability, plus
  length_weight * log P(length)."""
  mean = _line_mean(log_probs, first_break)
  at_break = jnp.take_along_axis(log_probs, first_break[:, None], 1)[:, 0]
  last = tables.length_prior.shape[0] - 1
  return (tables.likelihood_weight * mean + tables.break_weight * at_break +
          tables.length_weight * tables.length_prior[jnp.clip(length, 0, last)])


def ngram_surprise(ngram: KneserNeyTables, grams: jax.Array,
                   first_token: jax.Array, tokens: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
  """Each character's surprise -log p <float32>[steps] under the n-gram,
  for a candidate `tokens` <int32>[steps] drawn after first_token (not yet
  read) from where the n-gram ids are `grams`; and the ids after reading
  first_token and each token but the last, <int32>[steps, order - 1]."""
  def read(g, pair):
    last, token = pair
    g = extend_ids(ngram.keys, g, last, ngram.vocab_size)
    return g, (-kneser_ney_log_prob(ngram, g, token), g)

  inputs = jnp.concatenate([first_token[None], tokens[:-1]])
  return jax.lax.scan(read, grams, (inputs, tokens))[1]


def line_hash(tokens: jax.Array, length: jax.Array) -> jax.Array:
  """<int32>[K]: a fingerprint of each row's first `length` characters
  (a polynomial hash, wrapping in 32 bits; never NO_LINE in practice)."""
  powers = jnp.cumprod(jnp.full((tokens.shape[1],), 31, jnp.int32))
  inside = jnp.arange(tokens.shape[1])[None, :] < length[:, None]
  return jnp.sum(jnp.where(inside, (tokens + 1) * powers[None, :], 0),
                 axis=1) + length


def deletion_hashes(tokens: jax.Array, length: jax.Array) -> jax.Array:
  """<int32>[K, L]: entry j is the `line_hash` of row k's first length[k]
  characters with the j-th left out (NO_LINE for j >= length[k])."""
  powers = jnp.cumprod(jnp.full((tokens.shape[1],), 31, jnp.int32))
  lower = jnp.concatenate([jnp.ones((1,), jnp.int32), powers[:-1]])
  inside = jnp.arange(tokens.shape[1])[None, :] < length[:, None]
  # The characters before j keep their place, those after move down one.
  terms = jnp.where(inside, (tokens + 1) * powers[None, :], 0)
  moved = jnp.where(inside, (tokens + 1) * lower[None, :], 0)
  before = jnp.cumsum(terms, axis=1) - terms
  after = jnp.sum(moved, axis=1, keepdims=True) - jnp.cumsum(moved, axis=1)
  return jnp.where(inside, before + after + (length - 1)[:, None], NO_LINE)


def _member(table: jax.Array, queries: jax.Array) -> jax.Array:
  """<bool>[queries.shape]: each query is in the sorted `table`."""
  at = jnp.minimum(insertion_index(table, queries), table.shape[0] - 1)
  return table[at] == queries


def bent_lines(tokens: jax.Array, length: jax.Array, hashes: jax.Array,
               train_lines: jax.Array, train_deletions: jax.Array
               ) -> jax.Array:
  """<bool>[K]: the row's first `length` characters (fingerprint `hashes`)
  are one character from a training line of BENT_MIN+ characters: one
  changed (or two swapped), one dropped or one added (雨下整遍, 慢温习,
  你已得很远 from 雨下整夜, 慢慢温习, 你已走得很远). A training line itself
  is not bent."""
  dels = deletion_hashes(tokens, length)
  inside = jnp.arange(tokens.shape[1])[None, :] < length[:, None]
  changed = jnp.any(_member(train_deletions, dels) & inside, axis=1)
  dropped = _member(train_deletions, hashes)
  added = (length > BENT_MIN) & jnp.any(_member(train_lines, dels) & inside,
                                        axis=1)
  whole = _member(train_lines, hashes)
  return ~whole & (changed | dropped | added)


def _stutters(tokens: jax.Array, first: jax.Array) -> jax.Array:
  """<bool>[K]: the line (before its break) has one character three
  times in a row (公公公公)."""
  same = (tokens[:, 2:] == tokens[:, 1:-1]) & (tokens[:, 1:-1] == tokens[:, :-2])
  inside = jnp.arange(tokens.shape[1] - 2)[None, :] + 2 < first[:, None]
  return jnp.any(same & inside, axis=1)


def state_bytes(tree: Any) -> int:
  """Bytes of every array in `tree` (shapes known at trace time)."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _where(ok: jax.Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def _line_target(state: VerseState, lines: LineTables, spec: LineSpec
                 ) -> tuple[VerseState, jax.Array, jax.Array]:
  """The state with its stanza's groups (reset at a stanza's first line),
  the line's scheme letter and its rhyme group (-1: none yet, or no
  scheme)."""
  if not spec.pattern:
    return state, jnp.int32(-1), jnp.int32(-1)
  period = len(spec.pattern)
  letter = jnp.asarray(spec.pattern, jnp.int32)[state.line % period]
  if period > 1:  # Every stanza of `period` lines rhymes anew.
    state = state.replace(targets=jnp.where(
        state.line % period == 0, lines.targets, state.targets))
  return state, letter, state.targets[letter]


def _seek_bias(state: VerseState, lines: LineTables, target: jax.Array,
               spec: LineSpec) -> jax.Array:
  """<float32>[K, steps, V]: the rhyme seekers' bonus. The first half of
  the candidates, when the line has a group, draw its characters with
  lines.seek_bonus wherever a line ending on them would reach min_len
  (reverse: as the first character drawn, the line's last); the scores use
  the model's own log-probabilities, without it."""
  seeker = (jnp.arange(spec.candidates) < spec.candidates // 2) & (target >= 0)
  if spec.reverse:
    long_enough = (state.line_len + jnp.arange(spec.steps)) == 0
  else:
    long_enough = state.line_len + jnp.arange(spec.steps) + 1 >= spec.min_len
  return (lines.seek_bonus * seeker[:, None, None] *
          long_enough[None, :, None] *
          (lines.rhyme_of == target)[None, None, :])


def _line_end(last_drawn: jax.Array, first_drawn: jax.Array,
              drawn: jax.Array, state: VerseState, spec: LineSpec
              ) -> jax.Array:
  """The character a line ends on, the one that rhymes: the last one drawn
  before the break, or the seed's last when the line drew none; reverse:
  the first one drawn (a right-to-left line starts after whole lines, so
  an empty one ends on its break, which rhymes with nothing)."""
  if spec.reverse:
    return first_drawn
  return jnp.where(drawn > 0, last_drawn, state.decode.token)


def write_line(step_fn: Callable, chain: processors.Chain,
               tables: tuple[Any, ...], lines: LineTables, state: VerseState,
               keys: jax.Array, spec: LineSpec
               ) -> tuple[VerseState, LineChoice]:
  """Draws spec.candidates lines from `state` (keys <key>[K, steps]),
  keeps one (module docstring) and returns the state after it."""
  steps = spec.steps
  k = jnp.arange(spec.candidates)
  state, letter, target = _line_target(state, lines, spec)
  bias = _seek_bias(state, lines, target, spec) if spec.seek else None
  keep_states = state_bytes(state.decode) <= KEEP_STATES_BYTES
  draw = lambda ks, b: sampler.decode(step_fn, state.decode, ks, chain,
                                      tables, every_state=keep_states, bias=b)
  tokens, log_probs, after = jax.vmap(draw)(keys, bias)
  is_break = tokens == spec.space_id
  ended = jnp.any(is_break, axis=1)
  first = jnp.argmax(is_break, axis=1)
  length = state.line_len + first
  fresh = ~jnp.all(jnp.where(jnp.arange(steps) <= first[:, None],
                             tokens == lines.avoid[None, :], True), axis=1)
  hashes = line_hash(tokens, first)
  written = jnp.any(hashes[:, None] == state.seen[None, :], axis=1)
  valid = (ended & (length >= max(spec.min_len, 1)) &
           (length <= spec.max_len) & fresh &
           ~written & ~_stutters(tokens, first))
  last = _line_end(tokens[k, jnp.maximum(first - 1, 0)], tokens[:, 0],
                   first, state, spec)
  rhymes = ((target >= 0) & (lines.rhyme_of[last] == target) &
            (last != state.prev_end))
  recited = (state.line_len == 0) * jnp.sum(jnp.where(
      hashes[:, None] == lines.train_lines[None, :],
      lines.recital_weights[None, :], 0.0), axis=1)
  bent = (state.line_len == 0) & bent_lines(
      tokens, first, hashes, lines.train_lines, lines.train_deletions)
  scores = (line_scores(log_probs, first, length, lines) -
            lines.recital_penalty * recited - lines.bent_penalty * bent)
  if lines.ngram is not None:
    surprise, grams = jax.vmap(
        lambda t: ngram_surprise(lines.ngram, state.grams, state.decode.token,
                                 t))(tokens)
    scores = scores + lines.novelty_weight * _line_mean(surprise, first)
  # The allowed candidates (all of them when none is); among those, the
  # rhyming ones within rhyme_weight of the best score (inf: any rhyming
  # one); then the best score. The same as the best score + rhyme_weight
  # for a rhyme, without inf + score.
  allowed = valid == jnp.any(valid)
  top = jnp.max(jnp.where(allowed, scores, -jnp.inf))
  preferred = allowed & rhymes & (scores >= top - lines.rhyme_weight)
  pool = allowed & (preferred == jnp.any(preferred))
  best = jnp.argmax(jnp.where(pool, scores, -jnp.inf))
  # Only when no candidate is allowed can the kept one run past max_len:
  # it is then cut there (a break written at the longest length).
  capped = ~ended[best] | (length[best] > spec.max_len)
  keep = jnp.where(capped, jnp.maximum(spec.max_len - state.line_len, 0) + 1,
                   first[best] + 1)
  line = jnp.where(jnp.arange(steps) == keep - 1, spec.space_id,
                   tokens[best])
  log_prob = jnp.sum(jnp.where(jnp.arange(steps) < keep, log_probs[best], 0.))

  if keep_states:
    # The state after the line's last kept character: a capped line's
    # break was not drawn, so its token is set.
    decoded = jax.tree.map(lambda x: x[best, keep - 1], after).replace(
        token=jnp.int32(spec.space_id))
  else:

    def read(st, x):  # The chosen line, read again from the line's start.
      token, inside = x
      logits, carry = step_fn(st.carry, st.token)
      _, procs = chain.update(logits, st.processors, st.token, tables)
      return _where(inside, DecodeState(carry, token, procs), st), None

    decoded = jax.lax.scan(read, state.decode,
                           (line, jnp.arange(steps) < keep))[0]
  end = _line_end(line[jnp.maximum(keep - 2, 0)], line[0], keep - 1, state,
                  spec)
  group = lines.rhyme_of[end]
  targets = jnp.where((jnp.arange(LETTERS) == letter) & (state.targets < 0) &
                      (group >= 0), group, state.targets)
  seen = state.seen.at[state.line % SEEN_LINES].set(
      jnp.where(capped, NO_LINE, hashes[best]))
  # The n-grams after the chosen line's last character (before its break).
  grams = (grams[best, keep - 1] if lines.ngram is not None
           else state.grams)
  new = VerseState(decoded, targets, end, state.line + 1, jnp.int32(0), seen,
                   grams)
  return new, LineChoice(tokens, log_probs, scores, valid, rhymes, best,
                         line, keep, log_prob, capped)


@functools.lru_cache(maxsize=16)
def _programs(model_config: ModelConfig, chain: processors.Chain,
              spec: MixtureSpec | None, min_copy_distance: int,
              history_length: int, line_spec: LineSpec, padded: bool):
  """The jitted start(params, mix_tables, tables, lines, seed_ids,
  seed_len, line_len, line, keys <key>[R, LINES_PER_CALL, K, steps]) and
  resume(params, mix_tables, tables, lines, states, keys): each writes
  LINES_PER_CALL lines for R rows and returns (states, LineChoice with
  leading axes [R, LINES_PER_CALL]). `padded`: seed_ids is padded past
  seed_len (`sampler.ModelFunctions.padded_start_state`)."""
  fns = sampler.model_functions(model_config, spec, min_copy_distance,
                                history_length)

  def verse(params, mix_tables, tables, lines, state, keys):
    step_fn = functools.partial(fns.step, params, mix_tables)
    one = lambda s, k: write_line(step_fn, chain, tables, lines, s, k,
                                  line_spec)
    return jax.lax.scan(one, state, keys)

  @jax.jit
  def start(params, mix_tables, tables, lines, seed_ids, seed_len, line_len,
            line, keys):
    if padded:
      decoded = fns.padded_start_state(params, mix_tables, chain, tables,
                                       seed_ids, seed_len)
    else:
      decoded = fns.start_state(params, mix_tables, chain, tables, seed_ids)
    state = VerseState(decoded, lines.targets, jnp.int32(-1), line, line_len,
                       empty_seen(), seed_grams(lines.ngram, seed_ids,
                                                seed_len))
    return jax.vmap(lambda k: verse(params, mix_tables, tables, lines, state,
                                    k))(keys)

  @jax.jit
  def resume(params, mix_tables, tables, lines, states, keys):
    return jax.vmap(lambda s, k: verse(params, mix_tables, tables, lines, s,
                                       k))(states, keys)

  return start, resume


@functools.lru_cache(maxsize=4)
def length_prior(train_text: str, max_len: int) -> np.ndarray:
  """<float32>[max_len + 1]: log P(line length) over the training text's
  lines, lengths above max_len counted at max_len, add-half smoothed."""
  lengths = [min(len(line), max_len) for line in train_text.split(' ') if line]
  counts = np.bincount(np.asarray(lengths, np.int64),
                       minlength=max_len + 1)[:max_len + 1] + 0.5
  counts[0] = 1e-3  # An empty line is never a line.
  return np.log(counts / counts.sum()).astype(np.float32)


def _training_lines(train_text: str, vocab: Vocabulary, min_len: int,
                    max_len: int
                    ) -> tuple[jax.Array, jax.Array, np.ndarray] | None:
  """The distinct training lines of min_len..max_len characters as
  (ids <int32>[N, max_len] zero-padded, lengths <int32>[N], how many times
  the text has each <int64>[N]); None if none. A line with a character
  outside the vocabulary is never written whole, so it is left out."""
  encoded, counts = [], []
  for line, count in collections.Counter(train_text.split(' ')).items():
    ids = vocab.encode(line, unknown='skip')
    if 0 < min_len <= len(ids) == len(line) <= max_len:
      encoded.append(ids)
      counts.append(count)
  if not encoded:
    return None
  ids = np.zeros((len(encoded), max_len), np.int32)
  for i, e in enumerate(encoded):
    ids[i, :len(e)] = e
  return (jnp.asarray(ids),
          jnp.asarray([len(e) for e in encoded], jnp.int32),
          np.asarray(counts))


@functools.lru_cache(maxsize=4)
def training_line_hashes(train_text: str, vocab: Vocabulary, max_len: int
                         ) -> tuple[np.ndarray, np.ndarray]:
  """The distinct `line_hash` fingerprints <int32>[N] of the training
  text's lines of at most max_len characters (one NO_LINE when none), and
  the recital weight of each <float32>[N]: log2(1 + how many times the text
  has the line; 0 for NO_LINE)."""
  lines = _training_lines(train_text, vocab, 1, max_len)
  if lines is None:
    return np.full(1, NO_LINE, np.int32), np.zeros(1, np.float32)
  ids, lengths, counts = lines
  hashes, inverse = np.unique(np.asarray(line_hash(ids, lengths)),
                              return_inverse=True)
  per_hash = np.bincount(inverse.ravel(), weights=counts)
  return hashes, np.log2(1.0 + per_hash).astype(np.float32)


@functools.lru_cache(maxsize=4)
def training_deletion_hashes(train_text: str, vocab: Vocabulary,
                             max_len: int) -> np.ndarray:
  """<int32>[M]: the distinct `deletion_hashes` of the training text's
  lines of BENT_MIN to max_len + 1 characters (one NO_LINE when none)."""
  lines = _training_lines(train_text, vocab, BENT_MIN, max_len + 1)
  if lines is None:
    return np.full(1, NO_LINE, np.int32)
  dels = np.asarray(deletion_hashes(*lines[:2]))
  return np.unique(dels[dels != NO_LINE])


@dataclasses.dataclass(frozen=True)
class Verse:
  """One written text: the seed and the chosen lines (a space after each),
  its lines' texts, the mean log-probability per generated character, and
  how many of its lines were capped."""
  text: str
  lines: tuple[str, ...]
  mean_log_prob: float
  capped: int


def write_verses(params: Any, model_config: ModelConfig, vocab: Vocabulary,
                 seed_ids: np.ndarray, key: jax.Array, config: SamplingConfig,
                 writer: LineConfig, length: int, lines: int, rows: int,
                 mixture: DeviceMixture | None, train_text: str | None,
                 warn: Callable[[str], None] = lambda message: None,
                 avoid: str = '',
                 on_progress: Callable[[int], None] | None = None,
                 pad_seed_to: int = 0,
                 ngram: KneserNeyTables | None = None) -> list[Verse]:
  """Writes `rows` verses after the seed, whole lines only.

  Stops after `lines` lines in all, the seed's included (0: no count), or
  before the line that would take the generated characters past `length`.
  `avoid`: a line no written line may be (rewriting one). `mixture` is the
  part of the default inference to draw from (or None). on_progress(done)
  is called after each compiled call of LINES_PER_CALL lines with the
  characters written so far (the most of any row, at most `length`).
  pad_seed_to: as in `sampler.sample_tokens`. ngram: the run's Kneser-Ney
  tables (`DeviceMixture.tables`) for writer.novelty_weight; without them
  a novelty weight raises. All text is in the model's reading order.
  """
  if ' ' not in vocab:
    raise JaylyricsError(
        'The line writer needs a vocabulary with the line break (a space); '
        "this model has none. Pass writer=LineConfig(candidates=0) to write "
        'character by character.')
  space_id = vocab.chars.index(' ')
  min_len, _, max_len = controls.line_bounds(config, train_text, warn)
  max_len = max_len or UNBOUNDED_LINE
  pattern = SCHEMES[writer.rhyme_scheme] if config.rhyme != 'none' else ()
  line_spec = LineSpec(space_id, max_len, writer.candidates, pattern, min_len,
                       bool(pattern) and writer.seek_bonus > 0,
                       model_config.right_to_left)
  seed = vocab.decode(seed_ids)
  seed_len = len(seed_ids)
  if pad_seed_to:
    seed_ids = np.pad(np.asarray(seed_ids), (0, pad_seed_to - seed_len))
  # Characters the chosen lines' states read in all (sizes the no-repeat
  # memory and the n-gram cache).
  reach = lines * line_spec.steps if lines else length
  total = seed_len + reach + line_spec.steps
  # The per-character controls that run inside the draw: clean text; no
  # rhyme forcing and no line bounds (a candidate out of them fails).
  draw_config = dataclasses.replace(config, rhyme='none', min_line=0,
                                    max_line=0, lines=0, best_of=1)
  decoder = controls.build_decoder(draw_config, vocab, train_text, total,
                                   warn)
  tables = make_line_tables(vocab, config, writer, train_text, max_len,
                            space_id, avoid, ngram)
  spec = mixture.spec if mixture is not None else None
  mix_tables = mixture.tables if mixture is not None else None
  start, resume = _programs(model_config, decoder.chain, spec,
                            config.min_copy_distance,
                            controls.bucket(total, 256), line_spec,
                            bool(pad_seed_to))
  texts = [[] for _ in range(rows)]
  log_prob = np.zeros(rows)
  capped = np.zeros(rows, np.int64)
  open_rows = set(range(rows))
  seed_lines = seed.count(' ')
  states, call = None, 0
  while open_rows:
    keys = jax.random.split(jax.random.fold_in(key, call), rows * (
        LINES_PER_CALL * writer.candidates * line_spec.steps)).reshape(
            rows, LINES_PER_CALL, writer.candidates, line_spec.steps)
    if states is None:
      line_len = len(seed) - (seed.rfind(' ') + 1)
      states, choice = start(params, mix_tables, decoder.tables, tables,
                             jnp.asarray(seed_ids, jnp.int32),
                             jnp.int32(seed_len), jnp.int32(line_len),
                             jnp.int32(seed_lines), keys)
    else:
      states, choice = resume(params, mix_tables, decoder.tables, tables,
                              states, keys)
    chosen, keep = np.asarray(choice.line), np.asarray(choice.keep)
    lp, cut = np.asarray(choice.log_prob), np.asarray(choice.capped)
    for r in sorted(open_rows):
      for i in range(LINES_PER_CALL):
        piece = vocab.decode(chosen[r, i, :keep[r, i]])
        if sum(map(len, texts[r])) + len(piece) > length:
          open_rows.discard(r)
          break
        texts[r].append(piece)
        log_prob[r] += lp[r, i]
        capped[r] += cut[r, i]
        if lines and seed_lines + len(texts[r]) >= lines:
          open_rows.discard(r)
          break
    call += 1
    if on_progress is not None:
      on_progress(length if not open_rows else
                  min(length, max(sum(map(len, t)) for t in texts)))
  out = []
  for r in range(rows):
    generated = sum(len(t) for t in texts[r])
    out.append(Verse(seed + ''.join(texts[r]),
                     tuple(t.rstrip(' ') for t in texts[r]),
                     float(log_prob[r] / generated) if generated else 0.0,
                     int(capped[r])))
  return out


def make_line_tables(vocab: Vocabulary, config: SamplingConfig,
                     writer: LineConfig, train_text: str | None,
                     max_len: int, space_id: int, avoid: str,
                     ngram: KneserNeyTables | None = None) -> LineTables:
  """The device tables of one call (traced: a new rhyme, weight or line to
  avoid does not recompile). ngram: the run's Kneser-Ney tables, kept only
  for a novelty weight (which raises without them)."""
  if writer.novelty_weight and ngram is None:
    raise JaylyricsError(
        f'novelty_weight={writer.novelty_weight} needs the run\'s n-gram of '
        'its training text: pass mixture= from a run trained with an n-gram '
        '(load_run), or novelty_weight=0.')
  first = (-1 if config.rhyme in ('auto', 'none')
           else rhyme.group_of_text(config.rhyme))
  if train_text is not None:
    prior = length_prior(train_text, max_len)
  else:
    prior = np.zeros(max_len + 1, np.float32)
  train_lines, recital_weights = training_line_hashes(train_text or '',
                                                      vocab, max_len)
  train_deletions = training_deletion_hashes(train_text or '', vocab, max_len)
  avoid_ids = np.full(max_len + 1, -1, np.int32)
  if avoid:
    ids = list(vocab.encode(avoid, unknown='skip'))[:max_len] + [space_id]
    avoid_ids[:len(ids)] = ids
  return LineTables(
      rhyme_of=jnp.asarray(controls.rhyme_table(vocab.chars)),
      length_prior=jnp.asarray(prior),
      likelihood_weight=jnp.float32(writer.likelihood_weight),
      length_weight=jnp.float32(writer.length_weight),
      break_weight=jnp.float32(writer.break_weight),
      targets=jnp.asarray([first] + [-1] * (LETTERS - 1), jnp.int32),
      avoid=jnp.asarray(avoid_ids), train_lines=jnp.asarray(train_lines),
      recital_weights=jnp.asarray(recital_weights),
      recital_penalty=jnp.float32(writer.recital_penalty),
      train_deletions=jnp.asarray(train_deletions),
      bent_penalty=jnp.float32(writer.bent_penalty),
      novelty_weight=jnp.float32(writer.novelty_weight),
      rhyme_weight=jnp.float32(writer.rhyme_weight),
      seek_bonus=jnp.float32(writer.seek_bonus),
      ngram=ngram if writer.novelty_weight else None)
