"""The decoding flags of `sample` and `judge`, and the run they write with.

The decoding flags are made from `jaylyrics_jax.SamplingConfig`'s fields
(`config_flags`): its defaults, help and checks are theirs.
"""

import dataclasses

from absl import flags

from experiments import common
from experiments import config_flags
from experiments.inference_flags import CACHE_SIZE
from experiments.inference_flags import CHECKPOINT
from experiments.inference_flags import CORPUS
from experiments.inference_flags import NGRAM_ORDER
import jaylyrics_jax as jl
from jaylyrics_jax import inference
from jaylyrics_jax import mixture_step
from jaylyrics_jax.config import MAX_LENGTH
from jaylyrics_jax.config import MAX_ROWS

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


def sampling_config() -> jl.SamplingConfig:
  """The SamplingConfig of the parsed flags."""
  return SAMPLING_FLAGS.build()


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
