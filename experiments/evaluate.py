r"""Bits per character of a trained model on a lyrics file.

  python -m experiments.evaluate --workdir=runs/lstm --text_file=lyrics.txt

The file is cleaned by the training rule first. The last line printed is one
JSON object: {"bpc", "ppl", "oov_rate", "chars", ...}.
"""

import json

from absl import flags

from experiments import common
import jaylyrics_jax as jl

TEXT_FILE = flags.DEFINE_string('text_file', None,
                                'Raw UTF-8 lyrics file to score.')
CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                               'Which checkpoint of the run to use.')
flags.mark_flag_as_required('text_file')


def main(argv):
  del argv
  text = jl.load_clean_text(TEXT_FILE.value, min_chars=1, what='text')
  model = jl.load_model(common.WORKDIR.value, which=CHECKPOINT.value,
                        warn=common.warn)
  result = jl.evaluate_text(model.params, model.model_config, model.vocab,
                            text)
  result['step'] = model.step
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  common.run(main)
