r"""How much the samples read like real songs: the realism report.

  python -m experiments.judge --workdir=runs/best [--num_samples=32]
      [--seeds=从前,天空,...] [every flag of experiments.sample]

Draws --num_samples samples (an equal share from each seed, --rng_seed
fixed) with the sample command's settings, and prints the realism figures
(`jaylyrics_jax.scoring.realism`) beside those of as many equal-length pieces of the
run's validation text, songs the model never trained on. --json ends with
one JSON object {"samples": {...}, "validation": {...}, "settings": {...}}.
"""

import json

from absl import flags
import jax
import numpy as np

from experiments import common
from experiments import sampling_flags as sf
import jaylyrics_jax as jl
from jaylyrics_jax.scoring import realism

SEEDS = flags.DEFINE_list(
    'seeds', ['从前', '天空', '我们', '爱情', '回忆', '下雨', '夜晚', '微风'],
    'Seed texts; the samples are shared out evenly among them.')
JSON = flags.DEFINE_bool('json', False, 'End with one JSON line.')
flags.FLAGS.set_default('num_samples', 32)


def main(argv):
  del argv
  config = sf.sampling_config()
  run = sf.load_run()
  if run.train_text is None:
    raise jl.JaylyricsError(
        'The report needs the run\'s training and validation text: pass the '
        'corpus it was trained on with --corpus.')
  model = run.model
  seeds = [s for s in SEEDS.value if s]
  if not seeds:
    raise jl.JaylyricsError('--seeds is empty: pass seed texts, e.g. '
                            '--seeds=从前,天空.')
  per_seed = max(1, sf.NUM_SAMPLES.value // len(seeds))
  texts = []
  key = jax.random.key(common.RNG_SEED.value)
  for i, seed in enumerate(seeds):
    texts += jl.sample_text(
        model.params, model.model_config, model.vocab, seed,
        jax.random.fold_in(key, i), length=sf.LENGTH.value, config=config,
        num_samples=per_seed, unknown=sf.UNKNOWN_CHARS.value,
        mixture=run.mixture, train_text=run.train_text, warn=common.warn,
        writer=sf.line_config())
  judge = realism.make_judge(run.train_text, model.vocab)
  length = int(round(np.mean([len(t) for t in texts])))
  pieces = realism.reference_pieces(run.valid_text, length, len(texts))
  columns = {'samples': realism.report(texts, judge),
             'validation': realism.report(pieces, judge)}
  print(f'{len(texts)} samples ({per_seed} per seed, {length} characters on '
        f'average) against {len(pieces)} pieces of the validation text; '
        f'mixture={sf.describe(sf.generation_spec(run, config))}')
  print(realism.format_table(columns))
  for text in texts[::per_seed][:3]:
    print('  ' + text)
  if JSON.value:
    columns['settings'] = dict(config.__dict__, **sf.line_config().__dict__,
                               seeds=seeds, step=model.step,
                               mixture=sf.describe(sf.generation_spec(run, config)))
    print(json.dumps(columns, ensure_ascii=False))


if __name__ == '__main__':
  common.run(main)
