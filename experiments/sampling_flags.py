"""The decoding flags of `sample` and `judge`, and the run they write with.

Every default, and the help of every flag, is `jaylyrics_jax.SamplingConfig`'s
(one source); the library checks the values when the config is built and the
CLI reports its error under the flag's name.
"""

import dataclasses

from absl import flags

from experiments import common
from experiments.inference_flags import CACHE_SIZE
from experiments.inference_flags import CHECKPOINT
from experiments.inference_flags import CORPUS
from experiments.inference_flags import NGRAM_ORDER
import jaylyrics_jax as jl
from jaylyrics_jax import config as config_lib
from jaylyrics_jax import inference
from jaylyrics_jax import mixture_step
from jaylyrics_jax import rhyme

_D = jl.SamplingConfig()

SEED = flags.DEFINE_string('seed', '从前', 'Text the lyrics start from.')
LENGTH = flags.DEFINE_integer(
    'length', 200, 'Characters to generate, spaces included (with --lines, '
    'the most to generate).', lower_bound=1)
NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1,
                                   'Independent samples, drawn in one call.',
                                   lower_bound=1)
UNKNOWN_CHARS = flags.DEFINE_enum(
    'unknown_chars', 'error', ['error', 'skip'],
    'Seed characters outside the vocabulary: stop with an error listing '
    'them, or drop them with a warning.')
SAMPLING = flags.DEFINE_enum(
    'sampling', _D.mode, list(config_lib.MODES),
    'weighted: draw from the softmax; argmax: most likely character; '
    'combined: draw right after a space, argmax elsewhere.')
TEMPERATURE = flags.DEFINE_float('temperature', _D.temperature,
                                 'Divide the logits by this before drawing.')
TOP_K = flags.DEFINE_integer('top_k', _D.top_k, 'Draw among the k most likely '
                             'characters only (0 = all).')
TOP_P = flags.DEFINE_float('top_p', _D.top_p, 'Nucleus sampling mass (1 = all).')
MIN_COPY_DISTANCE = flags.DEFINE_integer(
    'min_copy_distance', _D.min_copy_distance, 'Attention models and the '
    'caches: copy only from positions at least this far back (0 = as '
    'trained; small values fall into copy loops such as 的的的).')
MIXTURE = flags.DEFINE_enum(
    'mixture', _D.mixture, list(config_lib.MIXTURES), 'What to draw from: '
    'the model alone, the model with its Kneser-Ney n-gram (tuned weights, '
    'no caches), or the whole tuned inference (caches too).')
LINES = flags.DEFINE_integer('lines', _D.lines, 'Stop after this many lines '
                             '(0 = no limit: --length characters).')
MIN_LINE = flags.DEFINE_integer(
    'min_line', _D.min_line, 'Shortest line in characters (-1: the 5% '
    'quantile of the training text\'s lines, 0: no bound).')
MAX_LINE = flags.DEFINE_integer(
    'max_line', _D.max_line, 'Longest line in characters (-1: the 95% '
    'quantile of the training text\'s lines, 0: no bound).')
RHYME = flags.DEFINE_string(
    'rhyme', _D.rhyme, 'auto: line ends rhyme with the first line\'s end; '
    'none; or a character, a pinyin final (ang, ian, ...) or a rhyme group '
    '(江阳) to rhyme on.')
RHYME_BONUS = flags.DEFINE_float(
    'rhyme_bonus', _D.rhyme_bonus, 'Logit bonus of rhyming characters near '
    'the end of a line.')
NO_REPEAT_NGRAM = flags.DEFINE_integer(
    'no_repeat_ngram', _D.no_repeat_ngram, 'Never repeat an n-gram already '
    'written (0 = off), except whole lines repeated as a chorus.')
MAX_LINE_REPEATS = flags.DEFINE_integer(
    'max_line_repeats', _D.max_line_repeats,
    'How often a whole earlier line may be repeated (a chorus).')
MAX_COPY = flags.DEFINE_integer(
    'max_copy', _D.max_copy, 'Never write more than this many consecutive '
    'characters found verbatim in the training text (0 = off).')
BEST_OF = flags.DEFINE_integer(
    'best_of', _D.best_of, 'Draw this many candidates per sample in one call '
    'and keep the best (mean log-probability minus realism penalties).')

# Library argument -> flag, for the library's error messages.
_FLAG_OF = {'mode': 'sampling'}


def sampling_config() -> jl.SamplingConfig:
  """The SamplingConfig of the flags; a bad value fails naming its flag."""
  values = dict(mode=SAMPLING.value, temperature=TEMPERATURE.value,
                top_k=TOP_K.value, top_p=TOP_P.value,
                min_copy_distance=MIN_COPY_DISTANCE.value,
                mixture=MIXTURE.value, lines=LINES.value,
                min_line=MIN_LINE.value, max_line=MAX_LINE.value,
                rhyme=RHYME.value, rhyme_bonus=RHYME_BONUS.value,
                no_repeat_ngram=NO_REPEAT_NGRAM.value,
                max_line_repeats=MAX_LINE_REPEATS.value,
                max_copy=MAX_COPY.value, best_of=BEST_OF.value)
  assert set(values) == {f.name for f in dataclasses.fields(jl.SamplingConfig)}
  try:
    config = jl.SamplingConfig(**values)
    if config.rhyme not in ('auto', 'none'):
      rhyme.group_of_text(config.rhyme)
    return config
  except jl.JaylyricsError as e:
    raise jl.JaylyricsError(flag_words(str(e))) from None


def flag_words(message: str) -> str:
  """A library message that starts with an argument's name, reworded with
  its flag's name."""
  message = message.replace("mode='argmax'", '--sampling=argmax')
  for field in dataclasses.fields(jl.SamplingConfig):
    if message.startswith((field.name + ' ', field.name + '=')):
      flag = _FLAG_OF.get(field.name, field.name)
      return f'--{flag}{message[len(field.name):]}'
  return message


@dataclasses.dataclass(frozen=True)
class Run:
  """What writing needs from a run: the model, its default inference and
  the training and validation text (None when the corpus is not here)."""
  model: jl.LoadedModel
  mixture: object
  train_text: str | None
  valid_text: str | None


def load_run() -> Run:
  model = jl.load_model(common.WORKDIR.value, which=CHECKPOINT.value,
                        warn=common.warn)
  settings, train_ids = inference.settings_for(
      model, CACHE_SIZE.value, NGRAM_ORDER.value, CORPUS.value, common.warn)
  mixture = inference.device_mixture_for(settings, model.vocab.size,
                                         train_ids)
  try:
    train_text, valid_text = inference.run_corpus_split(model, CORPUS.value)
  except jl.JaylyricsError as e:
    common.warn(f'{e} The controls that need it fall back.')
    train_text = valid_text = None
  return Run(model, mixture, train_text, valid_text)


def generation_spec(run: Run, config: jl.SamplingConfig):
  """The part of the run's default inference that `config` draws from."""
  return mixture_step.for_generation(run.mixture.spec, config.mixture)


def describe(spec) -> str:
  names = ('model', f'cache{spec.cache_size}', f'ngram{spec.ngram_order}',
           f'ngram_cache{spec.ngram_cache_order}')
  return '+'.join(f'{w:.2f}*{n}' for n, w in zip(names, spec.weights) if w)
