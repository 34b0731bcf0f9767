"""The command-line tools end to end, as a user runs them, in a temp dir."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import jaylyrics_jax as jl

from conftest import REPO
from conftest import synthetic_lyrics

TINY = ['--rnn_size=16', '--embedding_size=8', '--batch_size=4',
        '--seq_length=8']


def _run(module, *args, cache, check=True, timeout=240):
  env = dict(os.environ, PYTHONUTF8='1')
  proc = subprocess.run(
      [sys.executable, '-m', f'experiments.{module}', *args,
       f'--compilation_cache={cache}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f'{module} failed:\n{proc.stdout}\n{proc.stderr}')
  return proc


@pytest.fixture(scope='module')
def trained(tmp_path_factory, compilation_cache):
  root = tmp_path_factory.mktemp('cli')
  corpus = root / 'lyrics.txt'
  corpus.write_text(synthetic_lyrics(), encoding='utf-8')
  workdir = root / 'run'
  proc = _run('train', '--flagfile=experiments/lstm.flags', f'--corpus={corpus}',
              f'--workdir={workdir}', '--num_epochs=2', '--save_every=5',
              *TINY, cache=compilation_cache)
  return corpus, workdir, proc, compilation_cache


def test_train_logs_epochs_and_writes_the_run(trained):
  _, workdir, proc, _ = trained
  assert 'epoch   2' in proc.stdout and 'Done (finished)' in proc.stdout
  assert {'checkpoints', 'log.jsonl', 'loss.png'} <= set(os.listdir(workdir))


def test_sample_is_reproducible(trained):
  _, workdir, _, cache = trained
  args = ('--seed=春天', '--length=60', f'--workdir={workdir}',
          '--sampling=weighted', '--nonewlines')
  one = _run('sample', *args, '--rng_seed=1', cache=cache).stdout
  again = _run('sample', *args, '--rng_seed=1', cache=cache).stdout
  other = _run('sample', *args, '--rng_seed=2', cache=cache).stdout
  assert one == again != other
  text, rate_line, realism_line = one.strip().splitlines()
  # Whole lines only: the line writer stops before the line that would pass
  # --length, so the text ends on a line break within one line of it.
  assert text.startswith('春天') and text.endswith(' ')
  assert 62 - 12 < len(text) <= 62
  assert rate_line.startswith('copy rate') and rate_line.endswith('%')
  assert realism_line.startswith('realism: line length')
  with open(workdir / 'samples.txt', encoding='utf-8') as f:
    written = f.read()
  assert written.count(text) == 2
  # By default from the model and the n-gram `train` tuned and stored in the
  # checkpoint; the caches only when asked for.
  assert '*ngram6' in written and '*cache' not in written
  _run('sample', *args, '--rng_seed=1', '--mixture=tuned', cache=cache)
  with open(workdir / 'samples.txt', encoding='utf-8') as f:
    assert '*cache' in f.read()
  _run('sample', *args, '--rng_seed=1', '--cache_size=0', '--ngram_order=0',
       cache=cache)
  # Each run records what it drew from (the texts themselves may agree where
  # a component's tuned weight is tiny, as in this little run).
  with open(workdir / 'samples.txt', encoding='utf-8') as f:
    mixtures = [line.rsplit(' mixture=', 1)[1].strip() for line in f
                if line.startswith('# ')]
  assert mixtures[-1] == '1.00*model'
  assert len(set(mixtures[-2:]) | {mixtures[0]}) == 3, mixtures


def test_sample_draws_with_the_seed_texts_key(trained):
  # The key folds the seed text in (`text_key`): two seed texts with one
  # --rng_seed draw different random numbers.
  _, workdir, _, cache = trained
  text = _run('sample', '--seed=春天', '--length=60', '--rng_seed=1',
              '--nonewlines', f'--workdir={workdir}',
              cache=cache).stdout.splitlines()[0]
  run = jl.load_run(str(workdir))
  model = run.model
  expected = jl.sample_text(model.params, model.model_config, model.vocab,
                            '春天', jl.text_key(1, '春天'), length=60,
                            mixture=run.mixture, train_text=run.train_text)
  assert text == expected[0]


def test_sample_writes_lines_and_judge_reports(trained):
  _, workdir, _, cache = trained
  out = _run('sample', '--seed=春', '--lines=3', '--min_line=2',
             '--max_line=5', '--rhyme=花', f'--workdir={workdir}',
             cache=cache).stdout
  lines = out.split('\ncopy rate')[0].strip().splitlines()
  assert len(lines) == 3 and all(2 <= len(line) <= 5 for line in lines), out
  proc = _run('judge', '--seeds=春,夏', '--num_samples=4', '--length=40',
              '--json', f'--workdir={workdir}', cache=cache)
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  for column in ('samples', 'validation'):
    assert set(report[column]) == {
        'mean_line_length', 'one_char_lines', 'finished_lines', 'word_chars',
        'self_repetition', 'training_copies', 'training_lines',
        'chorus_lines', 'bent_lines',
        'rhyme_rate', 'identical_ends', 'distinct_2', 'rare_chars',
        'fluency_bpc'}
  assert report['samples']['self_repetition'] == 0.0


def test_sample_needs_the_corpus_for_its_ngram(trained, tmp_path):
  _, workdir, _, cache = trained
  proc = _run('sample', f'--workdir={workdir}', '--length=5',
              f'--corpus={tmp_path}/moved.txt', check=False, cache=cache)
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  assert '--ngram_order=0' in proc.stderr


def test_sample_many_in_one_call(trained):
  _, workdir, _, cache = trained
  out = _run('sample', '--seed=春', '--length=20', '--num_samples=3',
             '--top_k=5', '--top_p=0.9', '--temperature=0.8',
             f'--workdir={workdir}', cache=cache).stdout
  assert out.count('--- sample') == 3


def test_evaluate_prints_json_last(trained):
  corpus, workdir, _, cache = trained
  out = _run('evaluate', f'--workdir={workdir}', f'--text_file={corpus}',
             cache=cache).stdout
  result = json.loads(out.strip().splitlines()[-1])
  assert {'bpc', 'ppl', 'oov_rate', 'chars'} <= set(result)
  assert 0 < result['bpc'] < 6 and result['oov_rate'] == 0.0


def test_plot_writes_png(trained):
  _, workdir, _, cache = trained
  os.remove(workdir / 'loss.png')
  out = _run('plot', f'--workdir={workdir}', cache=cache).stdout
  assert out.strip().endswith('loss.png')
  with open(workdir / 'loss.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('module, args, message', [
    ('train', ['--batch_size=0'], '--batch_size=0'),
    ('train', ['--seq_length=-3'], '--seq_length=-3'),
    ('train', ['--rnn_size=0'], '--rnn_size=0'),
    ('train', ['--num_layers=-1'], '--num_layers=-1'),
    ('train', ['--rnncell=transformer'], 'lstm|gru|rnn'),
    ('train', ['--corpus=/no/such/file.txt'], 'does not exist'),
    ('train', ['--corpus={tmp}'], 'is a directory'),
    ('train', ['--corpus={tmp}/latin.txt'], 'after cleaning'),
    ('train', ['--corpus={tmp}/gbk.txt'], 'not valid UTF-8: byte offset 0'),
    ('train', ['--corpus={tmp}/empty.txt'], 'is empty'),
    ('sample', ['--sampling=best'], 'weighted|argmax|combined'),
    ('sample', ['--temperature=0'], '--temperature=0.0: must be in'),
    ('sample', ['--rhyme=xyz'], '--rhyme='),
    ('sample', ['--no_repeat_ngram=1'], '--no_repeat_ngram=1: must be'),
    ('sample', ['--min_line=9', '--max_line=3'], '--min_line=9: must not exceed --max_line=3'),
    ('sample', ['--top_p=1.5'], '--top_p=1.5: must be in (0, 1]'),
    ('sample', ['--length=0'], '--length=0'),
    ('sample', ['--seed='], '--seed must not be empty'),
    ('evaluate', ['--text_file={tmp}/latin.txt'], 'after cleaning'),
])
def test_bad_input_fails_cleanly(tmp_path, compilation_cache, module, args,
                                 message):
  (tmp_path / 'latin.txt').write_text('only latin text\n', encoding='utf-8')
  (tmp_path / 'gbk.txt').write_bytes('周杰伦'.encode('gbk'))
  (tmp_path / 'empty.txt').write_bytes(b'')
  workdir = tmp_path / 'run'
  workdir.mkdir()
  args = [a.format(tmp=tmp_path) for a in args]
  proc = _run(module, f'--workdir={workdir}', *args, check=False,
              cache=compilation_cache)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert os.listdir(workdir) == []


def test_unknown_seed_and_missing_checkpoint(trained, tmp_path):
  _, workdir, _, cache = trained
  proc = _run('sample', '--seed=晴天', f'--workdir={workdir}', check=False,
              cache=cache)
  assert proc.returncode == 1 and "'晴'" in proc.stderr
  assert 'Traceback' not in proc.stderr
  proc = _run('sample', '--seed=晴春', '--unknown_chars=skip', '--length=5',
              f'--workdir={workdir}', '--nonewlines', cache=cache)
  assert proc.stdout.strip().startswith('春')
  proc = _run('sample', f'--workdir={tmp_path}', check=False, cache=cache)
  assert proc.returncode == 1 and 'No checkpoint' in proc.stderr


def test_sigterm_saves_and_resume_finishes(trained, tmp_path):
  corpus, _, _, cache = trained
  workdir = tmp_path / 'run'
  cmd = [sys.executable, '-m', 'experiments.train',
         '--flagfile=experiments/lstm.flags', f'--corpus={corpus}',
         f'--workdir={workdir}', '--num_epochs=200', '--patience=0',
         f'--compilation_cache={cache}', *TINY]
  proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONUTF8='1'),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 120
  while not os.path.exists(workdir / 'log.jsonl') and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  assert '--resume' in out and 'Traceback' not in err
  with open(workdir / 'log.jsonl', encoding='utf-8') as f:
    epochs_done = len(f.readlines())
  assert epochs_done < 200
  proc = _run('train', *cmd[3:-len(TINY) - 1], *TINY, '--resume',
              f'--num_epochs={epochs_done + 1}', cache=cache)
  assert 'Resumed from step' in proc.stdout
  assert f'after {epochs_done + 1} epochs' in proc.stdout
