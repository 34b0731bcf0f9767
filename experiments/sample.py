r"""Writes lyrics from a trained model.

  python -m experiments.sample --seed=从前 --length=200

Characters are drawn from the run's model, or from its default inference
(the model mixed with its neural cache and n-grams as tuned after training);
the decoding controls (line form, rhyme, no loops, no long copies of the
training text, best-of) run inside the same compiled scan. Under the samples
it prints the copy rate and the realism figures (`experiments.judge`
compares them with the validation text).
"""

import datetime
import os
import sys

from absl import flags

from experiments import common
from experiments import sampling_flags as sf
import jaylyrics_jax as jl
from jaylyrics_jax.scoring import realism

NEWLINES = flags.DEFINE_bool('newlines', True,
                             'Print each space as a line break.')
CHUNK = flags.DEFINE_integer(
    'chunk', 2000, 'Texts longer than this are generated this many '
    'characters at a time (same text), with progress on stderr; Ctrl-C '
    'stops between chunks.', lower_bound=1)

flags.register_validator('seed', lambda s: bool(s),
                         message='--seed must not be empty, e.g. --seed=从前.')


def _progress(total):
  def show(done):
    print(f'\r{done}/{total} characters', end='' if done < total else '\n',
          file=sys.stderr, flush=True)
  return show


def main(argv):
  del argv
  config = sf.sampling_config()
  run = sf.load_run()
  model = run.model
  missing = model.vocab.unknown_chars(sf.SEED.value)
  if missing and sf.UNKNOWN_CHARS.value == 'skip':
    common.warn('dropping seed characters not in the vocabulary: '
                + ' '.join(missing))
  length = sf.LENGTH.value
  long_text = length > CHUNK.value
  try:
    texts = jl.sample_text(
        model.params, model.model_config, model.vocab, sf.SEED.value,
        jl.text_key(common.RNG_SEED.value, sf.SEED.value), length=length,
        config=config,
        num_samples=sf.NUM_SAMPLES.value, unknown=sf.UNKNOWN_CHARS.value,
        mixture=run.mixture, train_text=run.train_text, warn=common.warn,
        writer=sf.line_config(),
        chunk=CHUNK.value if long_text else 0,
        on_chunk=_progress(length) if long_text else None)
  except KeyboardInterrupt:
    print('\ninterrupted: nothing written.', file=sys.stderr)
    sys.exit(130)
  stamp = datetime.datetime.now().isoformat(timespec='seconds')
  settings = ' '.join(f'{k}={v}' for k, v in
                      {**config.__dict__, **sf.line_config().__dict__}.items())
  header = (f'# {stamp} step {model.step} seed={sf.SEED.value!r} '
            f'rng_seed={common.RNG_SEED.value} {settings} '
            f'mixture={sf.describe(sf.generation_spec(run, config))}')
  with open(os.path.join(common.WORKDIR.value, 'samples.txt'), 'a',
            encoding='utf-8') as f:
    f.write(header + '\n' + '\n'.join(texts) + '\n\n')
  for i, text in enumerate(texts):
    if len(texts) > 1:
      print(f'--- sample {i + 1}')
    print(text.replace(' ', '\n') if NEWLINES.value else text, flush=True)
  if run.train_text is not None:
    seed_len = len(model.vocab.decode(model.vocab.encode(
        sf.SEED.value, unknown='skip')))
    # Only the generated part: the seed is the user's.
    rates = [realism.copy_rate(t[seed_len:], run.train_text) for t in texts]
    print(f'copy rate (generated 4-character strings found verbatim in the '
          f'training text): {", ".join(f"{r:.1%}" for r in rates)}',
          flush=True)
    fig = jl.realism_report(texts, realism.make_judge(
        run.train_text, model.vocab, fluency=False))
    print(f'realism: line length {fig["mean_line_length"]:.1f}, one-character '
          f'lines {fig["one_char_lines"]:.0%}, self-repetition '
          f'{fig["self_repetition"]:.0%}, training 8-gram copies '
          f'{fig["training_copies"]:.0%}, rhyme rate {fig["rhyme_rate"]:.0%}',
          flush=True)


if __name__ == '__main__':
  common.run(main)
