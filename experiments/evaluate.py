r"""Bits per character of a trained model on a lyrics file.

  python -m experiments.evaluate --workdir=runs/lstm --text_file=lyrics.txt

The file is cleaned by the training rule first. The last line printed is one
JSON object: {"bpc", "ppl", "oov_rate", "chars", "bpc_model",
"bpc_model_cache", "bpc_ngram", "bpc_ngram_cache", "bpc_mixture", ...}, where
"bpc" is the default inference (the model mixed with its neural cache and the
n-grams, as tuned on the validation text after training and stored in the
checkpoint).
"""

import json

from absl import flags

from experiments import common
from experiments.inference_flags import CACHE_SIZE
from experiments.inference_flags import CHECKPOINT
from experiments.inference_flags import CORPUS
from experiments.inference_flags import NGRAM_ORDER
import jaylyrics_jax as jl
from jaylyrics_jax.runs import tune
from jaylyrics_jax.scoring import tuning

TEXT_FILE = flags.DEFINE_string('text_file', None,
                                'Raw UTF-8 lyrics file to score.')
flags.mark_flag_as_required('text_file')


def main(argv):
  del argv
  text = jl.load_clean_text(TEXT_FILE.value, min_chars=1, what='text')
  model = jl.load_model(common.WORKDIR.value, which=CHECKPOINT.value,
                        warn=common.warn)
  config, train_ids = tune.settings_for(
      model, CACHE_SIZE.value, NGRAM_ORDER.value, CORPUS.value, common.warn)
  result = tuning.evaluate_components(
      model, tune.in_reading_order(model, text), train_ids, config)
  result['step'] = model.step
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  common.run(main)
