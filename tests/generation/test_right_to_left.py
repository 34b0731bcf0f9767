"""A right-to-left run, end to end: trained on reversed lines, read and
written in reading order.

A tiny corpus of distinct lines in a fixed order is learned by heart, so
the run must write the corpus's next lines, forwards, whichever way it
writes: a run that trained forwards but was read backwards (or the other
way round), or whose lines came back unturned, writes other text.
"""

import dataclasses

import jax
import pytest

import jaylyrics_jax as jl
from jaylyrics_jax.runs import tune

LINES = ('春风吹花开', '夏雨打荷叶', '秋月照山水', '冬雪落天地', '你我心相爱',
         '星光满云海')
TEXT = ' '.join(LINES) + ' '
MODEL = jl.ModelConfig(embedding_size=16, rnn_size=64, num_layers=1,
                       right_to_left=True)
# Nothing that keeps a learned line from coming back.
CLEAN_OFF = dict(no_repeat_ngram=0, max_copy=0, rhyme='none', min_line=0,
                 max_line=0)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  folder = tmp_path_factory.mktemp('rtl')
  corpus = folder / 'corpus.txt'
  corpus.write_text('\n'.join(LINES * 40) + '\n', encoding='utf-8')
  config = jl.TrainConfig(workdir=str(folder / 'run'), batch_size=4,
                          seq_length=16, num_epochs=40, learning_rate=1e-2,
                          patience=0, save_every=10000, rng_seed=1)
  jl.train(str(corpus), MODEL, config)
  return jl.load_run(config.workdir, corpus_path=str(corpus))


def _write(run, seed, config, writer=None, warn=lambda message: None):
  model = run.model
  return jl.sample_text(model.params, model.model_config, model.vocab, seed,
                        jax.random.key(0), length=40, config=config,
                        mixture=run.mixture, train_text=run.train_text,
                        warn=warn, writer=writer)[0]


def test_the_run_learned_its_lines_backwards(run):
  model = run.model
  assert model.model_config.right_to_left
  forward = jl.evaluate_text(model.params, model.model_config, model.vocab,
                             TEXT * 3)['bpc']
  unturned = jl.evaluate_text(
      model.params, dataclasses.replace(model.model_config,
                                        right_to_left=False),
      model.vocab, TEXT * 3)['bpc']
  assert forward < 0.5 < unturned
  # The n-grams of its default inference count the lines as it reads them.
  _, train_ids = tune.settings_for(model)
  assert model.vocab.decode(train_ids) == jl.reverse_lines(run.train_text)


def test_a_character_at_a_time_it_writes_the_next_lines_forwards(run):
  config = jl.SamplingConfig(mode='argmax', lines=4, **CLEAN_OFF)
  # The seed's line is kept whole: a line is written from its end.
  assert _write(run, '夏雨打荷叶', config) == ' '.join(LINES[1:5]) + ' '
  # With rhyme asked for, it says the control would rhyme line starts.
  said = []
  text = _write(run, '秋月照山水', dataclasses.replace(config, rhyme='auto'),
                warn=said.append)
  assert text == ' '.join(LINES[2:6]) + ' '
  assert any('rhyme is off' in s for s in said)


def test_the_line_writer_writes_the_next_lines_forwards(run):
  config = jl.SamplingConfig(temperature=0.5, lines=4, **CLEAN_OFF)
  writer = jl.LineConfig(candidates=4, recital_penalty=0.0, bent_penalty=0.0)
  text = _write(run, '秋月照山水', config, writer)
  assert text == ' '.join(LINES[2:6]) + ' '
  # A seed that is not a whole line is kept as one.
  assert _write(run, '冬雪', config, writer).startswith('冬雪 ')


def test_the_songwriter_keeps_the_seed_as_the_first_line(run):
  writer = run.songwriter(jl.SamplingConfig(temperature=0.5, **CLEAN_OFF),
                          writer=jl.LineConfig(candidates=4,
                                               recital_penalty=0.0,
                                               bent_penalty=0.0))
  song = writer.write('春风吹花开', lines=4, rhyme_choice='none')
  assert [line.text for line in song.lines] == list(LINES[:4])
  with pytest.raises(jl.JaylyricsError, match='first line is the seed'):
    writer.rewrite_line(list(LINES[:4]), 0, '春风吹花开')
  again = writer.rewrite_line(list(LINES[:4]), 2, '春风吹花开',
                              rhyme_choice='none', temperature=5.0)
  assert again.lines[2].text != LINES[2]
  assert [line.text for line in again.lines[:2]] == list(LINES[:2])
