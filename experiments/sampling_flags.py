"""The decoding flags of `sample` and `judge`, and the run they write with.

The decoding flags are made from the fields of `jaylyrics_jax.SamplingConfig`
and `jaylyrics_jax.LineConfig` (`config_flags`): their defaults, help and
checks are the flags'.
"""

from absl import flags

from experiments import common
from experiments import config_flags
from experiments.inference_flags import CACHE_SIZE
from experiments.inference_flags import CHECKPOINT
from experiments.inference_flags import CORPUS
from experiments.inference_flags import NGRAM_ORDER
import jaylyrics_jax as jl
from jaylyrics_jax.config import MAX_LENGTH
from jaylyrics_jax.config import MAX_ROWS
from jaylyrics_jax.scoring import mixture

SEED = flags.DEFINE_string('seed', '从前', 'Text the lyrics start from.')
LENGTH = flags.DEFINE_integer(
    'length', 200, 'Characters to generate, spaces included (with --lines, '
    'the most to generate).', lower_bound=1, upper_bound=MAX_LENGTH)
NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1,
                                   'Independent samples, drawn in one call.',
                                   lower_bound=1,
                                   upper_bound=MAX_ROWS)
UNKNOWN_CHARS = flags.DEFINE_enum(
    'unknown_chars', 'error', ['error', 'skip'],
    'Seed characters outside the vocabulary: stop with an error listing '
    'them, or drop them with a warning.')
# One flag per SamplingConfig field (its default, help and checks);
# --sampling keeps the original's name for `mode`.
SAMPLING_FLAGS = config_flags.define_config_flags(
    jl.SamplingConfig, renames={'mode': 'sampling'})
# One flag per LineConfig field: the line writer (--candidates=0 turns it
# off and writes a character at a time).
LINE_FLAGS = config_flags.define_config_flags(jl.LineConfig)


def sampling_config() -> jl.SamplingConfig:
  """The SamplingConfig of the parsed flags."""
  return SAMPLING_FLAGS.build()


def line_config() -> jl.LineConfig:
  """The LineConfig of the parsed flags."""
  return LINE_FLAGS.build()


def load_run() -> jl.Run:
  """The run of --workdir/--checkpoint with --cache_size, --ngram_order and
  --corpus (`jaylyrics_jax.load_run`)."""
  return jl.load_run(common.WORKDIR.value, which=CHECKPOINT.value,
                     cache_size=CACHE_SIZE.value,
                     ngram_order=NGRAM_ORDER.value, corpus_path=CORPUS.value,
                     warn=common.warn)


def generation_spec(run: jl.Run, config: jl.SamplingConfig):
  """The part of the run's default inference that `config` draws from."""
  drawn = mixture.for_generation(run.mixture, config.mixture)
  return drawn.spec if drawn is not None else mixture.MixtureSpec()


def describe(spec) -> str:
  names = ('model', f'cache{spec.cache_size}', f'ngram{spec.ngram_order}',
           f'ngram_cache{spec.ngram_cache_order}')
  return '+'.join(f'{w:.2f}*{n}' for n, w in zip(names, spec.weights) if w)
