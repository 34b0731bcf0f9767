r"""Bits per character of a trained model on a lyrics file.

  python -m experiments.evaluate --workdir=runs/lstm --text_file=lyrics.txt

The file is cleaned by the training rule first. The last line printed is one
JSON object: {"bpc", "ppl", "oov_rate", "chars", "bpc_model",
"bpc_model_cache", "bpc_ngram", "bpc_ngram_cache", "bpc_mixture", ...}, where
"bpc" is the default inference (the model mixed with its neural cache and the
n-grams, as tuned on the validation text after training).
"""

import json

from absl import flags

import dataclasses

from experiments import common
import jaylyrics_jax as jl
from jaylyrics_jax import inference

TEXT_FILE = flags.DEFINE_string('text_file', None,
                                'Raw UTF-8 lyrics file to score.')
CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                               'Which checkpoint of the run to use.')
CACHE_SIZE = flags.DEFINE_integer(
    'cache_size', -1, 'Neural-cache window (-1: as tuned after training, '
    '0: off).', lower_bound=-1)
NGRAM_ORDER = flags.DEFINE_integer(
    'ngram_order', -1, 'Kneser-Ney n-gram order mixed in (-1: as tuned, '
    '0: off).', lower_bound=-1, upper_bound=8)
CORPUS = flags.DEFINE_string(
    'corpus', None, 'The run\'s training corpus, for the n-gram components '
    '(default: the path recorded in the checkpoint).')
flags.mark_flag_as_required('text_file')


def main(argv):
  del argv
  text = jl.load_clean_text(TEXT_FILE.value, min_chars=1, what='text')
  model = jl.load_model(common.WORKDIR.value, which=CHECKPOINT.value,
                        warn=common.warn)
  config = inference.read_inference_config(common.WORKDIR.value)
  if config is None:
    common.warn('no inference.json in the workdir (tuned after training): '
                'scoring the model alone.')
    config = inference.InferenceConfig()
  if CACHE_SIZE.value >= 0:
    config = dataclasses.replace(config, cache_size=CACHE_SIZE.value,
                                 mix_cache_size=CACHE_SIZE.value)
  if NGRAM_ORDER.value >= 0:
    config = dataclasses.replace(config, ngram_order=NGRAM_ORDER.value)
  train_ids = None
  if config.ngram_order > 0:
    train_ids = inference.training_ids(model, CORPUS.value)
  result = inference.evaluate_components(model, text, train_ids, config)
  result['step'] = model.step
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  common.run(main)
