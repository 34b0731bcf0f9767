"""Frozen configuration dataclasses; the library's only settings.

Every field carries its help text in `dataclasses.field(metadata={'help':
...})` (and `'choices'` where it takes one of a few strings), and every
check lives once, in `__post_init__`: an invalid config cannot be built.
`experiments/config_flags.py` turns these fields into absl flags, so the
defaults, help and checks of the command line are these.

Error messages name the Python argument (`cell='LSTM'`), never a flag.
"""

import dataclasses
from typing import Any

from jaylyrics_jax.data.rhyme import group_of_text
from jaylyrics_jax.errors import JaylyricsError

CELLS = ('lstm', 'gru', 'rnn')
# PRNG seeds: JAX keys (without 64-bit mode) use a seed's low 32 bits, so a
# wider seed would silently share its key with another; refused instead.
MAX_RNG_SEED = 2**32 - 1
# Temperatures: logits / temperature stays finite (model logits and the
# decoding bonuses are at most a few thousand) above the floor.
MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 1e3
# Sampling sizes: lines and candidates of a config, characters and rows
# (samples x candidates) of one call; keys, tokens and log-probs take 16
# bytes per drawn character, so rows x length is bounded too.
MAX_LINES = 10_000
MAX_BEST_OF = 1024
MAX_LENGTH = 1_000_000
MAX_ROWS = 4096
MAX_DRAWS = 2**26
IMPLS = ('fused', 'flax')


def _field(default: Any, help_text: str, **metadata: Any) -> Any:
  return dataclasses.field(default=default,
                           metadata=dict(help=help_text, **metadata))


def _positive(name: str, value: int) -> None:
  if value < 1:
    raise JaylyricsError(f'{name}={value!r}: must be a positive integer.')


def check_rng_seed(rng_seed: int, name: str = 'rng_seed') -> None:
  """Raises a `JaylyricsError` unless `rng_seed` is an int in
  0..MAX_RNG_SEED (2**32 - 1): the seeds that give distinct PRNG keys.

  Seeds are not folded into that range: `jax.random.key(2**32)` silently
  equals `jax.random.key(0)`, and 2**63 and above do not convert at all.
  """
  if isinstance(rng_seed, bool) or not isinstance(rng_seed, int) or not (
      0 <= rng_seed <= MAX_RNG_SEED):
    shown = repr(rng_seed)
    if len(shown) > 40:
      shown = shown[:20] + '...' + shown[-8:]
    raise JaylyricsError(f'{name}={shown}: must be a whole number in '
                         f'0..{MAX_RNG_SEED} (2**32 - 1).')


def _at_least_zero(name: str, value: float) -> None:
  if not value >= 0:
    raise JaylyricsError(f'{name}={value!r}: must be >= 0.')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The shape of a `CharLM`; stored in every checkpoint.

  `vocab_size=0` means "not known yet": `train` takes it from the corpus,
  and anything that builds a model (`CharLM`, `init_params`,
  `make_train_step`, ...) refuses it with a `JaylyricsError`. Set it with
  `dataclasses.replace(config, vocab_size=vocab.size)`.
  """
  vocab_size: int = _field(
      0, 'Characters in the vocabulary; 0 = taken from the corpus by train.')
  embedding_size: int = _field(100, 'Character embedding size.')
  rnn_size: int = _field(128, 'Hidden units per layer.')
  num_layers: int = _field(2, 'Recurrent layers.')
  cell: str = _field('lstm', 'Recurrent cell.', choices=CELLS)
  dropout: float = _field(
      0.0, 'Dropout rate between layers and before the output, in [0, 1).')
  embed_init_std: float = _field(
      0.0, "Std of the embedding's normal init (0 = flax default, "
      '1/sqrt(embedding_size)).')
  attn_length: int = _field(
      0, 'Attend over (and copy from) the last N positions, carried across '
      'windows; 0 = no attention.')
  attn_size: int = _field(64, 'Query/key size of the attention.')
  softmax_loss_weight: float = _field(
      0.0, 'With attention: weight of the loss of the softmax alone (no '
      'copying) added to the training objective, so the recurrent model '
      'stays a good model without copying too.')
  attn_min_distance: int = _field(
      1, 'With attention: copy only from positions at least this far back '
      '(1 = all). A decoding setting: SamplingConfig.min_copy_distance '
      'raises it for generation.')
  impl: str = _field(
      'fused', 'How the train step computes the same model: fused = '
      'whole-window LSTM layers and output softmax loss with hand-written '
      'gradients (jaylyrics_jax/models/fused.py; faster on CPU); flax = '
      'nn.RNN(OptimizedLSTMCell) and optax autodiff, the reference. Same '
      'parameters and results (to float32 rounding); not part of the '
      "model's shape.", choices=IMPLS)
  right_to_left: bool = _field(
      False, 'Read and write every line from its last character to its '
      'first (the corpus lines reversed in training, each written line '
      'turned back): the line writer then chooses the rhyming line end '
      'first and writes the line back from it. The seed is kept as whole '
      'lines.')

  def __post_init__(self):
    if self.vocab_size < 0:
      raise JaylyricsError(
          f'vocab_size={self.vocab_size!r}: must be >= 0 (0: taken from the '
          'corpus by train).')
    for name in ('embedding_size', 'rnn_size', 'num_layers', 'attn_size',
                 'attn_min_distance'):
      _positive(name, getattr(self, name))
    for name, choices in (('cell', CELLS), ('impl', IMPLS)):
      if getattr(self, name) not in choices:
        raise JaylyricsError(
            f'{name}={getattr(self, name)!r}: must be one of '
            f'{", ".join(repr(c) for c in choices)}.')
    if not 0.0 <= self.dropout < 1.0:
      raise JaylyricsError(f'dropout={self.dropout!r}: must be in [0, 1).')
    for name in ('embed_init_std', 'attn_length', 'softmax_loss_weight'):
      _at_least_zero(name, getattr(self, name))

  def require_vocab(self) -> None:
    """Raises a `JaylyricsError` unless `vocab_size` is set (>= 1)."""
    if self.vocab_size < 1:
      raise JaylyricsError(
          'ModelConfig(vocab_size=0) cannot build a model: set it to the '
          'vocabulary size, e.g. dataclasses.replace(model_config, '
          'vocab_size=vocab.size) (train does this from the corpus).')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'ModelConfig':
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train; everything a run needs besides the model shape."""
  workdir: str = _field(
      'runs/lstm',
      'Folder of the run: checkpoints/, log.jsonl, loss.png, samples.txt.')
  batch_size: int = _field(32, 'Parallel text streams.')
  seq_length: int = _field(
      16, 'Characters per window (truncated BPTT length).')
  num_epochs: int = _field(50, 'Epochs to train.')
  learning_rate: float = _field(1e-3, 'Adam step size.')
  decay_rate: float = _field(
      1.0, 'Learning rate multiplier per epoch, in (0, 1] (1.0 = constant).')
  grad_clip: float = _field(5.0, 'Global gradient-norm clip.')
  rng_seed: int = _field(
      0, 'Seed of the random number generator (PRNG key), in '
      f'0..{MAX_RNG_SEED}.')
  save_every: int = _field(
      1000, 'Save a checkpoint every this many steps (and at every epoch '
      'end).')
  keep_checkpoints: int = _field(
      5, 'Newest checkpoints kept (the best is kept too).')
  patience: int = _field(
      5, 'Stop after this many epochs without a better valid loss (0 = '
      'never).')
  valid_fraction: float = _field(
      0.1, 'Share of the cleaned text, at its end, kept for validation, in '
      '[0, 1).')
  random_offset: bool = _field(
      False, 'Start each epoch at a random offset below seq_length.')
  num_devices: int = _field(
      0, 'Devices in the data-parallel mesh (batch streams are split over '
      'them); 0 = every device, of every process.')

  def __post_init__(self):
    if not self.workdir:
      raise JaylyricsError("workdir='': name the run's folder.")
    for name in ('batch_size', 'seq_length', 'num_epochs', 'save_every',
                 'keep_checkpoints'):
      _positive(name, getattr(self, name))
    for name in ('learning_rate', 'grad_clip'):
      if not getattr(self, name) > 0:
        raise JaylyricsError(f'{name}={getattr(self, name)!r}: must be > 0.')
    if not 0.0 < self.decay_rate <= 1.0:
      raise JaylyricsError(
          f'decay_rate={self.decay_rate!r}: must be in (0, 1].')
    for name in ('patience', 'num_devices'):
      _at_least_zero(name, getattr(self, name))
    check_rng_seed(self.rng_seed)
    if not 0.0 <= self.valid_fraction < 1.0:
      raise JaylyricsError(
          f'valid_fraction={self.valid_fraction!r}: must be in [0, 1).')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'TrainConfig':
    return cls(**d)


MODES = ('weighted', 'argmax', 'combined')
MIXTURES = ('model', 'ngram', 'tuned')


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How characters are drawn, and the per-character decoding controls.

  The line writer (`LineConfig`, the default) draws its candidate lines
  with these settings (temperature, top-k/p, mode, mixture, no-repeat,
  max-copy, the shortest line; `rhyme` names the scheme's first group) and
  keeps whole lines; with the line writer off, text is written a
  character at a time and every control here applies, rhyme forcing and
  the longest line included. The defaults are the ones that read best, chosen with
  `jaylyrics_jax.scoring.realism` against the validation text (BUILD_NOTES.md,
  "Decoding"); `experiments.sample` makes its flags from these fields, so
  the command line and the library write the same way. `controls_off()`
  gives the plain sampler (bit-identical to the sampler before the decoding
  controls).
  """
  mode: str = _field(
      'weighted', "weighted: draw from the softmax; argmax: the most likely "
      "character; combined: draw right after a space, argmax elsewhere (the "
      "original's mode 2).", choices=MODES)
  temperature: float = _field(
      0.95, f'Divide the logits by this, in [{MIN_TEMPERATURE:g}, '
      f'{MAX_TEMPERATURE:g}], before drawing.')
  top_k: int = _field(
      0, 'Draw among the k most likely characters only (0 = all).')
  top_p: float = _field(
      1.0, 'Nucleus sampling: draw from the smallest set of characters whose '
      'probability reaches this, in (0, 1] (1 = all).')
  min_copy_distance: int = _field(
      32, 'Attention models and the caches copy only from positions at '
      'least this far back (0 = as trained; small values fall into copy '
      'loops such as 的的的).')
  mixture: str = _field(
      'ngram', "With a run's default inference: draw from the model alone, "
      'the model with its Kneser-Ney n-gram in their tuned proportion (no '
      'caches: they make generation loop), or the whole tuned mixture.',
      choices=MIXTURES)
  lines: int = _field(
      0, 'Stop after this many lines, the seed\'s included (0 = no limit; '
      'the length is then what is written).')
  min_line: int = _field(
      -1, "Shortest line in characters (-1 = the 10% quantile of the "
      "training text's lines, 0 = no bound).")
  max_line: int = _field(
      -1, "Longest line in characters (-1 = the 95% quantile of the "
      "training text's lines, 0 = no bound).")
  rhyme: str = _field(
      'auto', "auto: line ends rhyme with the first line's end; none; or "
      'the rhyme to keep: a character, a pinyin final (ang, ian, ...) or a '
      'rhyme group (江阳; jaylyrics_jax.data.rhyme).')
  rhyme_bonus: float = _field(
      3.0, 'Logit bonus of rhyming characters near the end of a line.')
  no_repeat_ngram: int = _field(
      4, 'Never write an n-gram (spaces removed) already written (0 = off), '
      'except whole lines repeated as a chorus.')
  max_line_repeats: int = _field(
      0, 'How often each earlier line may come back whole, as a chorus.')
  max_copy: int = _field(
      7, 'Never write more than this many consecutive characters found '
      'verbatim in the training text (0 = off).')
  best_of: int = _field(
      1, 'Draw this many candidates per sample in one call and keep the '
      'best by jaylyrics_jax.generation.lyrics.candidate_score.')

  def __post_init__(self):
    for name, choices in (('mode', MODES), ('mixture', MIXTURES)):
      if getattr(self, name) not in choices:
        raise JaylyricsError(f'{name}={getattr(self, name)!r}: must be one '
                             f'of {", ".join(choices)}.')
    if not MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE:
      raise JaylyricsError(
          f'temperature={self.temperature!r}: must be in '
          f'[{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] (below it the '
          "logits overflow); use mode='argmax' for greedy decoding.")
    if not 0.0 < self.top_p <= 1.0:
      raise JaylyricsError(f'top_p={self.top_p!r}: must be in (0, 1].')
    for name in ('top_k', 'min_copy_distance', 'lines', 'max_line_repeats',
                 'max_copy', 'rhyme_bonus'):
      _at_least_zero(name, getattr(self, name))
    for name in ('min_line', 'max_line'):
      if getattr(self, name) < -1:
        raise JaylyricsError(f'{name}={getattr(self, name)!r}: must be >= -1 '
                             '(-1: from the training text).')
    if self.min_line > 0 and self.max_line > 0 and (
        self.min_line > self.max_line):
      raise JaylyricsError(f'min_line={self.min_line!r}: must not exceed '
                           f'max_line={self.max_line!r}.')
    if self.no_repeat_ngram == 1 or self.no_repeat_ngram < 0:
      raise JaylyricsError(f'no_repeat_ngram={self.no_repeat_ngram!r}: must '
                           'be 0 (off) or >= 2.')
    _positive('best_of', self.best_of)
    for name, most in (('lines', MAX_LINES), ('best_of', MAX_BEST_OF)):
      if getattr(self, name) > most:
        raise JaylyricsError(f'{name}={getattr(self, name)!r}: must be at '
                             f'most {most}.')
    if self.rhyme not in ('auto', 'none'):
      group_of_text(self.rhyme)  # Raises for what is not a rhyme.

  def controls_off(self) -> 'SamplingConfig':
    """This config with every decoding control off: the plain sampler."""
    return dataclasses.replace(self, lines=0, min_line=0, max_line=0,
                               rhyme='none', no_repeat_ngram=0, max_copy=0,
                               best_of=1)


SCHEME_NAMES = ('free', 'AABB', 'ABAB', 'AAAA')
# The shortest training line whose near copies count as bent: by the line
# writer's `bent_penalty` and by the realism report's `bent_lines`.
BENT_MIN = 4


@dataclasses.dataclass(frozen=True)
class LineConfig:
  """How the line writer (`jaylyrics_jax.generation.line_writer`) writes:
  whole candidate lines, each ended where the model writes a line break,
  one kept per line by its score, length and rhyme.

  The defaults are the ones that read best in the realism report against
  the validation text (BUILD_NOTES.md, "Decoding"). `candidates=0` turns
  the line writer off: text is then written a character at a time with the
  per-character controls of `SamplingConfig` (line form and rhyme forcing
  included).
  """
  candidates: int = _field(
      16, 'Candidate lines drawn for every line, in one call; the best is '
      'kept (0 = write character by character instead).')
  rhyme_scheme: str = _field(
      'AABB', 'Which lines rhyme: AABB (couplets), ABAB (alternate lines), '
      'AAAA (every line) or free (no rhyme preference). SamplingConfig.rhyme '
      "chooses the A group (auto: the first line's).", choices=SCHEME_NAMES)
  likelihood_weight: float = _field(
      1.0, "Weight of a candidate line's mean log-probability per character "
      'in its score: how likely the model finds the whole line (0 = chosen '
      'by its break, length and rhyme only; a high weight keeps the '
      'blandest line).')
  length_weight: float = _field(
      0.25, "Weight of the training text's line-length distribution (log "
      'probability) in a candidate line\'s score.')

  break_weight: float = _field(
      1.0, "Weight of the line break's own log-probability in a candidate "
      'line\'s score: how sure the model is that the line is finished '
      'where it ends.')
  recital_penalty: float = _field(
      1.0, 'Subtracted, times log2(1 + n), from the score of a candidate '
      'line that is a whole line of the training text, which has it n '
      'times (a recited line: once loses this, a chorus repeated 3 times '
      'twice this; 0 = off).')
  bent_penalty: float = _field(
      1.5, 'Subtracted from the score of a candidate line one character '
      f'away from a training line of {BENT_MIN}+ characters (one changed, '
      'dropped or added: 雨下整遍 for 雨下整夜; 0 = off).')
  novelty_weight: float = _field(
      0.0, "Weight of a candidate line's mean surprise (-log p per "
      "character) under the run's Kneser-Ney n-gram of its training text in "
      'its score: prefers lines the model composes over phrases pieced '
      'together from the training songs (needs a run with an n-gram; '
      '0 = off).')

  rhyme_weight: float = _field(
      4.0, "Added to the score of a candidate line that ends on its "
      "scheme letter's rhyme group: how much worse a rhyming line may score "
      'and still be kept (inf = any allowed rhyming line is kept before '
      'every line that does not rhyme; 0 = rhyme only breaks ties).')

  seek_bonus: float = _field(
      0.0, "Logit bonus of the line's rhyme group in half the candidates' "
      'draw (the rhyme seekers), wherever a line ending there would be long '
      'enough: more candidates that rhyme, among which a whole one; their '
      'scores leave it out, and they still end where the model writes a '
      'break (0 = off).')

  def __post_init__(self):
    _at_least_zero('candidates', self.candidates)
    _at_least_zero('rhyme_weight', self.rhyme_weight)
    _at_least_zero('seek_bonus', self.seek_bonus)
    _at_least_zero('likelihood_weight', self.likelihood_weight)
    _at_least_zero('length_weight', self.length_weight)
    _at_least_zero('break_weight', self.break_weight)
    _at_least_zero('recital_penalty', self.recital_penalty)
    _at_least_zero('bent_penalty', self.bent_penalty)
    _at_least_zero('novelty_weight', self.novelty_weight)
    if self.rhyme_scheme not in SCHEME_NAMES:
      raise JaylyricsError(
          f'rhyme_scheme={self.rhyme_scheme!r}: must be one of '
          f'{", ".join(SCHEME_NAMES)}.')


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
  """The default inference's tuned settings; stored in a checkpoint step.

  `tune_run` (or `scoring.tuning.tune_inference`) fits them; a weight list
  names its components in order. The model+cache pair and the full mixture
  are tuned separately, so each has its own cache window and sharpness (the
  full mixture prefers a shorter, sharper cache: the n-gram cache already
  covers long repeats).
  """
  cache_size: int = _field(
      0, 'Neural cache window of the model+cache pair (0 = no cache).')
  theta: float = _field(10.0, 'Sharpness of that cache, > 0.')
  mix_cache_size: int = _field(
      0, 'Neural cache window inside the full mixture (0 = no cache).')
  mix_theta: float = _field(10.0, 'Sharpness of that cache, > 0.')
  ngram_order: int = _field(
      0, 'Order of the Kneser-Ney n-gram of the training text (0 = off).')
  ngram_cache_order: int = _field(
      5, 'Order of the Witten-Bell n-gram of the text already read.')
  cache_weights: tuple[float, ...] = _field(
      (1.0, 0.0), 'Weights of model and cache.')
  ngram_weights: tuple[float, ...] = _field(
      (1.0, 0.0), 'Weights of ngram and ngram_cache.')
  full_weights: tuple[float, ...] = _field(
      (1.0, 0.0, 0.0, 0.0), 'Weights of model, cache, ngram, ngram_cache.')
  step: int = _field(-1, 'The checkpoint step they were tuned for.')

  def __post_init__(self):
    for name in ('cache_size', 'mix_cache_size', 'ngram_order'):
      _at_least_zero(name, getattr(self, name))
    _positive('ngram_cache_order', self.ngram_cache_order)
    for name in ('theta', 'mix_theta'):
      if not getattr(self, name) > 0:
        raise JaylyricsError(f'{name}={getattr(self, name)!r}: must be > 0.')
    for name, size in (('cache_weights', 2), ('ngram_weights', 2),
                       ('full_weights', 4)):
      weights = getattr(self, name)
      if len(weights) != size or not all(w >= 0 for w in weights):
        raise JaylyricsError(f'{name}={weights!r}: must be {size} weights '
                             '>= 0.')

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'InferenceConfig':
    d = dict(d)
    for key in ('cache_weights', 'ngram_weights', 'full_weights'):
      d[key] = tuple(d[key])
    return cls(**d)
