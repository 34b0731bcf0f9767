"""The songwriter behind the demo page (its JSON API: test_web_requests.py)."""

import dataclasses

import pytest

from conftest import tiny_songwriter
import jaylyrics_jax as jl
from jaylyrics_jax.data import rhyme
from jaylyrics_jax.errors import JaylyricsError


@pytest.fixture(scope='module')
def writer():
  return tiny_songwriter(writer=None)  # A character at a time.


def test_write_gives_the_lines_asked_for_rhyming(writer):
  song = writer.write('春天', lines=5, rng_seed=1)
  assert len(song.lines) == 5 and song.lines[0].text.startswith('春天')
  assert song.text == ' '.join(line.text for line in song.lines) + ' '
  group = rhyme.group_of(song.lines[0].end)
  assert song.rhyme == rhyme.group_name(group)
  assert all(line.rhymes for line in song.lines), song.lines
  assert all(line.final == rhyme.final_of(line.end).rstrip('12345')
             for line in song.lines)
  assert set(song.figures) >= {'self_repetition', 'training_copies',
                               'rhyme_rate', 'copy_rate'}
  assert song.figures['self_repetition'] == 0.0
  # (to_dict: the figures hold nan, which never equals itself.)
  assert writer.write('春天', lines=5, rng_seed=1).to_dict() == song.to_dict()
  assert writer.write('春天', lines=5, rng_seed=2).lines != song.lines


@pytest.mark.parametrize('whole_lines', [False, True])
def test_write_draws_what_the_library_draws_with_the_text_key(writer,
                                                               whole_lines):
  songwriter = tiny_songwriter() if whole_lines else writer
  model = songwriter.model
  config = dataclasses.replace(songwriter.config, lines=4, rhyme='none')
  for seed in ('春天', '秋天'):
    song = songwriter.write(seed, lines=4, rhyme_choice='none', rng_seed=5)
    text = jl.sample_text(model.params, model.model_config, model.vocab, seed,
                          jl.text_key(5, seed), config=config,
                          train_text=songwriter.train_text,
                          writer=songwriter.writer)[0]
    assert song.text == text


def test_a_chosen_rhyme_and_no_rhyme(writer):
  song = writer.write('春', lines=4, rhyme_choice='ang', rng_seed=3)
  assert song.rhyme.startswith('江阳')
  assert all(rhyme.group_of(line.end) == rhyme.group_of_text('ang')
             for line in song.lines)
  plain = writer.write('春', lines=4, rhyme_choice='none', rng_seed=3)
  assert plain.rhyme == '' and not any(line.rhymes for line in plain.lines)


@pytest.mark.parametrize('index', [0, 1, 3])
def test_rewrite_one_line_keeps_the_others(writer, index):
  song = writer.write('春天', lines=4, rng_seed=4)
  texts = [line.text for line in song.lines]
  for rng_seed in range(5, 12):
    new = writer.rewrite_line(texts, index, '春天', rng_seed=rng_seed)
    new_texts = [line.text for line in new.lines]
    if new_texts[index] != texts[index]:
      break
  assert new_texts[index] != texts[index]
  assert new_texts[:index] + new_texts[index + 1:] == (
      texts[:index] + texts[index + 1:])
  assert new.rhyme == song.rhyme and new.lines[index].rhymes
  if index == 0:
    assert new_texts[0].startswith('春天')


@pytest.mark.parametrize('call, match', [
    (lambda w: w.write('晴朗', 4), "'晴'"),
    (lambda w: w.write('', 4), 'empty'),
    (lambda w: w.write('春', 65), 'lines=65'),
    (lambda w: w.write('春', 0), 'lines=0'),
    (lambda w: w.write('春', 4, best_of=65), 'best_of=65'),
    (lambda w: w.write('春', 4, temperature=0), 'temperature=0'),
    (lambda w: w.write('春', 4, rhyme_choice='xyz'), "rhyme='xyz'"),
    (lambda w: w.write('春' * 1990, 64), 'limit'),
    (lambda w: w.rewrite_line(['春天', '夏'], 2, '春'), 'index=2'),
    (lambda w: w.rewrite_line([], 0, '春'), 'song_lines'),
])
def test_bad_requests_are_refused_with_the_problem(writer, call, match):
  with pytest.raises(JaylyricsError, match=match):
    call(writer)

