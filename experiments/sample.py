r"""Writes lyrics from a trained model.

  python -m experiments.sample --seed=从前 --length=200

By default characters are drawn from the run's default inference: the model
mixed with its neural cache and n-grams as tuned after training (stored in
the checkpoint); --cache_size=0 --ngram_order=0 draws from the model alone.
"""

import datetime
import os

from absl import flags
import jax

from experiments import common
from experiments.inference_flags import CACHE_SIZE
from experiments.inference_flags import CHECKPOINT
from experiments.inference_flags import CORPUS
from experiments.inference_flags import NGRAM_ORDER
import jaylyrics_jax as jl
from jaylyrics_jax import inference
from jaylyrics_jax import mixture_step
from jaylyrics_jax import sampling

SEED = flags.DEFINE_string('seed', '从前', 'Text the lyrics start from.')
LENGTH = flags.DEFINE_integer('length', 200, 'Characters to generate.',
                              lower_bound=1)
SAMPLING = flags.DEFINE_enum(
    'sampling', 'combined', list(sampling.MODES),
    'weighted: draw from the softmax; argmax: most likely character; '
    'combined: draw right after a space, argmax elsewhere.')
TEMPERATURE = flags.DEFINE_float('temperature', 1.0,
                                 'Divide the logits by this before drawing.')
TOP_K = flags.DEFINE_integer('top_k', 0, 'Draw among the k most likely '
                             'characters only (0 = all).', lower_bound=0)
TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus sampling mass (1 = all).')
MIN_COPY_DISTANCE = flags.DEFINE_integer(
    'min_copy_distance', 32, 'Attention models: copy only from positions at '
    'least this far back (0 = as trained; small values fall into copy loops '
    'such as 的的的).', lower_bound=0)
NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1,
                                   'Independent samples, drawn in one call.',
                                   lower_bound=1)
UNKNOWN_CHARS = flags.DEFINE_enum(
    'unknown_chars', 'error', ['error', 'skip'],
    'Seed characters outside the vocabulary: stop with an error listing '
    'them, or drop them with a warning.')
NEWLINES = flags.DEFINE_bool('newlines', True,
                             'Print each space as a line break.')

flags.register_validator(
    'temperature', lambda t: t > 0,
    message='--temperature must be > 0 (use --sampling=argmax for greedy '
    'decoding).')
flags.register_validator('top_p', lambda p: 0 < p <= 1,
                         message='--top_p must be in (0, 1].')
flags.register_validator('seed', lambda s: bool(s),
                         message='--seed must not be empty, e.g. --seed=从前.')


def _training_text(model):
  """The run's training text when its corpus is still where it was."""
  try:
    return inference.run_corpus_split(model, CORPUS.value)[0]
  except jl.JaylyricsError:
    return None


def _describe(spec):
  names = ('model', f'cache{spec.cache_size}', f'ngram{spec.ngram_order}',
           f'ngram_cache{spec.ngram_cache_order}')
  return '+'.join(f'{w:.2f}*{n}' for n, w in zip(names, spec.weights) if w)


def main(argv):
  del argv
  model = jl.load_model(common.WORKDIR.value, which=CHECKPOINT.value,
                        warn=common.warn)
  missing = model.vocab.unknown_chars(SEED.value)
  if missing and UNKNOWN_CHARS.value == 'skip':
    common.warn('dropping seed characters not in the vocabulary: '
                + ' '.join(missing))
  config = jl.SamplingConfig(mode=SAMPLING.value,
                             temperature=TEMPERATURE.value, top_k=TOP_K.value,
                             top_p=TOP_P.value,
                             min_copy_distance=MIN_COPY_DISTANCE.value)
  settings, train_ids = inference.settings_for(
      model, CACHE_SIZE.value, NGRAM_ORDER.value, CORPUS.value, common.warn)
  mixture = mixture_step.for_settings(settings, model.vocab.size, train_ids)
  texts = jl.sample_text(model.params, model.model_config, model.vocab,
                         SEED.value, jax.random.key(common.RNG_SEED.value),
                         length=LENGTH.value, config=config,
                         num_samples=NUM_SAMPLES.value,
                         unknown=UNKNOWN_CHARS.value, mixture=mixture)
  # The n-grams' training ids decode to the training text: no second read.
  train_text = (model.vocab.decode(train_ids) if train_ids is not None
                else _training_text(model))
  rates = []
  if train_text is not None:
    # Only the generated part: the seed is the user's.
    rates = [sampling.copy_rate(t[len(t) - LENGTH.value:], train_text)
             for t in texts]
  stamp = datetime.datetime.now().isoformat(timespec='seconds')
  header = (f'# {stamp} step {model.step} seed={SEED.value!r} '
            f'rng_seed={common.RNG_SEED.value} sampling={SAMPLING.value} '
            f'temperature={TEMPERATURE.value} top_k={TOP_K.value} '
            f'top_p={TOP_P.value} mixture={_describe(mixture.spec)}')
  with open(os.path.join(common.WORKDIR.value, 'samples.txt'), 'a',
            encoding='utf-8') as f:
    f.write(header + '\n' + '\n'.join(texts) + '\n\n')
  for i, text in enumerate(texts):
    if len(texts) > 1:
      print(f'--- sample {i + 1}')
    print(text.replace(' ', '\n') if NEWLINES.value else text, flush=True)
  if rates:
    print(f'copy rate (generated 4-character strings found verbatim in the '
          f'training text): {", ".join(f"{r:.1%}" for r in rates)}',
          flush=True)


if __name__ == '__main__':
  common.run(main)
