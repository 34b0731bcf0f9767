r"""Tunes a run's inference mixture on its validation text.

  python -m experiments.tune --workdir=runs/best [--corpus=PATH] [--ngram_order=6]

`experiments.train` (the library's `train`) does this itself after a
single-process run; run it by hand after a multi-process run, to change the
n-gram order, or for a model written by `save_model` with its corpus. Writes
the settings into the tuned checkpoint step (its `inference` item) and prints
the validation scores as JSON.
"""

import json

from absl import flags

from experiments import common
from jaylyrics_jax.runs import tune
from jaylyrics_jax.scoring import tuning

CORPUS = flags.DEFINE_string(
    'corpus', None, 'The run\'s training corpus (default: the path recorded '
    'in the checkpoint).')
NGRAM_ORDER = flags.DEFINE_integer('ngram_order',
                                   tuning.DEFAULT_NGRAM_ORDER,
                                   'Kneser-Ney order (0 = no n-gram).',
                                   lower_bound=0, upper_bound=8)


def main(argv):
  del argv
  tuned, scores = tune.tune_run(common.WORKDIR.value, CORPUS.value,
                                     NGRAM_ORDER.value, warn=common.warn)
  print(json.dumps(dict(scores, settings=tuned.to_dict())), flush=True)


if __name__ == '__main__':
  common.run(main)
