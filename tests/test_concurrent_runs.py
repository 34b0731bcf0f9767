"""Runs sharing a workdir, and output that reads well in a log file.

Real `python -m experiments.*` processes on a tiny synthetic corpus; every
one has a deadline.
"""

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from conftest import REPO
from conftest import synthetic_lyrics
from conftest import cli_command as _cmd
from conftest import cli_env as _env
from conftest import logged_losses as _losses
from conftest import TINY_RUN as TINY
from jaylyrics_jax.files import atomic_write



@pytest.fixture(scope='module')
def reference(tmp_path_factory, compilation_cache):
  """An undisturbed run, its output redirected to files, under umask 022."""
  root = tmp_path_factory.mktemp('shared_workdir')
  corpus = root / 'lyrics.txt'
  corpus.write_text(synthetic_lyrics(num_lines=200, seed=1), encoding='utf-8')
  workdir = root / 'reference'
  with open(root / 'out.log', 'w', encoding='utf-8') as out, \
       open(root / 'err.log', 'w', encoding='utf-8') as err:
    subprocess.run(_cmd('train', f'--corpus={corpus}', f'--workdir={workdir}',
                        *TINY, cache=compilation_cache),
                   cwd=REPO, env=_env(), check=True, stdout=out, stderr=err,
                   timeout=300, umask=0o022)
  read = lambda name: (root / name).read_text(encoding='utf-8')
  return str(corpus), str(workdir), read('out.log'), read('err.log'), \
      compilation_cache


@pytest.mark.slow
def test_redirected_output_is_one_line_per_epoch(reference):
  _, _, out, err, _ = reference
  assert '\r' not in out and '\r' not in err
  lines = out.splitlines()
  assert [line.split()[:2] for line in lines[:3]] == [
      ['epoch', '1'], ['epoch', '2'], ['epoch', '3']]
  assert lines[3].startswith('Done (finished) after 3 epochs')
  assert len(lines) == 5 and lines[4].startswith('Inference tuned')


@pytest.mark.slow
def test_files_are_readable_by_others_under_umask_022(reference):
  _, workdir, _, _, _ = reference
  modes = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      mode = stat.S_IMODE(os.stat(path).st_mode)
      modes[os.path.relpath(path, workdir)] = mode
  assert {'loss.png', 'log.jsonl'} <= set(modes)
  assert any(p.startswith('checkpoints') for p in modes)
  assert not os.path.exists(os.path.join(workdir, '.lock'))  # Released.
  unreadable = {p: oct(m) for p, m in modes.items() if m & 0o044 != 0o044}
  assert not unreadable


def test_atomic_write_gives_the_mode_open_would(tmp_path):
  old = os.umask(0o027)
  try:
    atomic_write(str(tmp_path / 'a'), lambda tmp: open(tmp, 'w').close())
    open(tmp_path / 'b', 'w').close()
  finally:
    os.umask(old)
  mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
  assert mode('a') == mode('b') == 0o640


def _lock_pid(workdir):
  try:
    with open(os.path.join(workdir, '.lock'), encoding='utf-8') as f:
      return json.loads(f.read())['pid']
  except (OSError, ValueError, KeyError):
    return None


def _wait_for(condition, what, timeout=120):
  deadline = time.time() + timeout
  while not condition():
    assert time.time() < deadline, f'timed out waiting for {what}'
    time.sleep(0.05)


@pytest.mark.slow
def test_two_runs_on_one_workdir_then_a_resume_and_readers(reference,
                                                           tmp_path):
  corpus, reference_dir, _, _, cache = reference
  workdir = tmp_path / 'run'
  args = (f'--corpus={corpus}', f'--workdir={workdir}', *TINY,
          '--progress_seconds=0.5')
  children, logs = [], []
  try:
    for i in range(2):  # Started together.
      logs.append((open(tmp_path / f'out{i}', 'w', encoding='utf-8'),
                   open(tmp_path / f'err{i}', 'w', encoding='utf-8')))
      children.append(subprocess.Popen(
          _cmd('train', *args, cache=cache), cwd=REPO, env=_env(),
          stdout=logs[i][0], stderr=logs[i][1]))
    _wait_for(lambda: _lock_pid(workdir) in [c.pid for c in children],
              'a run to take the lock')
    winner = next(c for c in children if c.pid == _lock_pid(workdir))
    loser = next(c for c in children if c is not winner)
    started = time.time()
    assert loser.wait(timeout=120) == 1
    loser_i = children.index(loser)
    loser_out = (tmp_path / f'out{loser_i}').read_text(encoding='utf-8')
    loser_err = (tmp_path / f'err{loser_i}').read_text(encoding='utf-8')
    assert loser_out == ''  # Not one epoch line: it touched nothing.
    assert f'is in use by another run (pid {winner.pid} on host' in loser_err
    assert 'Wait for that run to finish, or pass another folder as ' \
        '--workdir' in loser_err and 'Traceback' not in loser_err

    # Pause the winner once it has a checkpoint: it still holds the lock.
    def has_checkpoint():
      folder = workdir / 'checkpoints'
      return folder.exists() and any(d.isdigit() for d in os.listdir(folder))
    _wait_for(has_checkpoint, 'the first checkpoint')
    winner.send_signal(signal.SIGSTOP)
    listing = sorted(os.listdir(workdir))
    resume = subprocess.run(_cmd('train', *args, '--resume', cache=cache),
                            cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert resume.returncode == 1 and resume.stdout == ''
    assert f'(pid {winner.pid} on host' in resume.stderr
    assert sorted(os.listdir(workdir)) == listing
    # Readers take no lock and work while the run holds it.
    sample = subprocess.run(
        _cmd('sample', f'--workdir={workdir}', '--checkpoint=latest',
             '--seed=春', '--length=10', cache=cache),
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith('春')
    evaluate = subprocess.run(
        _cmd('evaluate', f'--workdir={workdir}', '--checkpoint=latest',
             f'--text_file={corpus}', '--ngram_order=0', cache=cache),
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert evaluate.returncode == 0, evaluate.stderr
    assert 'bpc' in json.loads(evaluate.stdout.strip().splitlines()[-1])
    winner.send_signal(signal.SIGCONT)

    assert winner.wait(timeout=300) == 0
    winner_i = children.index(winner)
    out = (tmp_path / f'out{winner_i}').read_text(encoding='utf-8')
    assert 'Done (finished) after 3 epochs' in out and '\r' not in out
    assert ' batch ' in out  # Progress lines, at most one per 0.5 s.
    assert _losses(workdir) == _losses(reference_dir)
    assert time.time() - started < 300
  finally:
    for child in children:
      if child.poll() is None:
        child.send_signal(signal.SIGCONT)
        child.kill()
        child.wait(timeout=30)
    for out, err in logs:
      out.close()
      err.close()
