"""Faults: SIGKILL at any moment, a full disk, damaged checkpoints, bad paths."""

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from conftest import synthetic_lyrics
from conftest import cli_command as _cmd
from conftest import cli_env as _env
from conftest import logged_losses as _losses
from conftest import TINY_RUN as TINY



@pytest.fixture(scope='module')
def reference(tmp_path_factory, compilation_cache):
  """An uninterrupted CLI run with the flags every test here uses."""
  root = tmp_path_factory.mktemp('faults')
  corpus = root / 'lyrics.txt'
  corpus.write_text(synthetic_lyrics(num_lines=200, seed=1), encoding='utf-8')
  workdir = root / 'reference'
  subprocess.run(_cmd('train', f'--corpus={corpus}', f'--workdir={workdir}',
                      *TINY, cache=compilation_cache),
                 cwd=REPO, env=_env(), check=True, capture_output=True,
                 timeout=300)
  return str(corpus), str(workdir), compilation_cache


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_sigkill_at_a_random_moment_then_resume_is_exact(reference, tmp_path,
                                                         seed):
  corpus, reference_dir, cache = reference
  workdir = tmp_path / 'run'
  args = (f'--corpus={corpus}', f'--workdir={workdir}', *TINY)
  child = subprocess.Popen(_cmd('train', *args, cache=cache), cwd=REPO,
                           env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  # Wait for the first save, then kill at a random moment (often mid-save:
  # one happens every 7 steps).
  deadline = time.time() + 120
  while not (workdir / 'checkpoints').exists() and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(random.Random(seed).uniform(0.0, 1.5))
  child.send_signal(signal.SIGKILL)
  assert child.wait(timeout=60) == -signal.SIGKILL, 'finished before the kill'
  # The killed run's lock file stays, naming it; the OS released the lock.
  with open(workdir / '.lock', encoding='utf-8') as f:
    assert json.load(f)['pid'] == child.pid
  done = subprocess.run(_cmd('train', *args, '--resume', cache=cache),
                        cwd=REPO, env=_env(), capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr
  assert 'Done (finished) after 3 epochs' in done.stdout
  assert _losses(workdir) == _losses(reference_dir)
  assert not (workdir / '.lock').exists()


def test_damaged_newest_checkpoint_sample_and_resume_fall_back(reference,
                                                               tmp_path):
  corpus, reference_dir, cache = reference
  workdir = tmp_path / 'copy'
  shutil.copytree(reference_dir, workdir)
  steps = sorted(int(s) for s in os.listdir(workdir / 'checkpoints'))
  newest = workdir / 'checkpoints' / str(steps[-1])
  for root, _, files in os.walk(newest / 'state'):
    for f in files:
      os.truncate(os.path.join(root, f), 3)
  proc = subprocess.run(
      _cmd('sample', f'--workdir={workdir}', '--checkpoint=latest',
           '--seed=春', '--length=10', cache=cache),
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert f'Checkpoint {steps[-1]}' in proc.stderr and 'damaged' in proc.stderr
  proc = subprocess.run(
      _cmd('train', f'--corpus={corpus}', f'--workdir={workdir}', *TINY,
           '--resume', cache=cache),
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert 'damaged' in proc.stdout
  assert f'Resumed from step {steps[-2]}' in proc.stdout
  assert os.listdir(workdir / 'damaged_checkpoints') == [str(steps[-1])]
  assert _losses(workdir) == _losses(reference_dir)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(reference,
                                                              tmp_path):
  corpus, reference_dir, cache = reference
  workdir = tmp_path / 'copy'
  shutil.copytree(reference_dir, workdir)
  steps = lambda: sorted(d for d in os.listdir(workdir / 'checkpoints')
                         if d.isdigit())
  before = steps()

  def small_files():  # Any file write past 8 KiB fails, as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

  proc = subprocess.run(
      _cmd('train', f'--corpus={corpus}', f'--workdir={workdir}', *TINY,
           '--resume', '--num_epochs=4', cache=cache),
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
      preexec_fn=small_files)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert 'Could not write checkpoint' in proc.stderr
  # orbax's writer threads print asyncio tracebacks of their own on the way
  # (BUILD_NOTES); none may come from our code, and our paragraph ends it.
  assert 'jaylyrics_jax' not in proc.stderr.split('error: ')[0]
  assert 'experiments/' not in proc.stderr.split('error: ')[0]
  ours = [line for line in proc.stderr.splitlines()
          if line.startswith('error: Could not write checkpoint')]
  assert len(ours) == 1 and ours[0].endswith('untouched.')
  assert 'a file outgrew the size limit' in ours[0]  # EFBIG, the true cause.
  assert 'disk space' not in ours[0] and 'permission' not in ours[0]
  assert steps() == before
  proc = subprocess.run(
      _cmd('sample', f'--workdir={workdir}', '--checkpoint=latest',
           '--seed=春', '--length=10', cache=cache),
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and 'damaged' not in proc.stderr


# A command whose checkpoint save failed while a writer thread (as orbax's
# can) waits forever: Python would join that thread at exit and hang.
_STUCK_WRITER = """
import threading
from experiments import common
from jaylyrics_jax.errors import JaylyricsError

def main(argv):
  threading.Thread(target=threading.Event().wait, name='writer').start()
  raise JaylyricsError('Could not write checkpoint 7: the disk is full.')

common.run(main)
"""


@pytest.mark.slow
def test_a_failed_save_ends_the_process_whatever_threads_wait():
  started = time.time()
  proc = subprocess.run(
      [sys.executable, '-c', _STUCK_WRITER, '--compilation_cache='], cwd=REPO,
      env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert proc.stderr.strip() == ('error: Could not write checkpoint 7: the '
                                 'disk is full.')
  assert time.time() - started < 60


def test_workdir_that_cannot_be_created(reference, tmp_path):
  corpus, _, cache = reference
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder', encoding='utf-8')
  proc = subprocess.run(
      _cmd('train', f'--corpus={corpus}', f'--workdir={blocker}/run', *TINY,
           cache=cache),
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert 'is not writable' in proc.stderr and '--workdir' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert blocker.read_text(encoding='utf-8') == 'not a folder'
