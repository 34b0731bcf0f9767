"""The workdir lock: one writer, refused with the holder's name, never stale."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO
import jaylyrics_jax as jl
from jaylyrics_jax.runs import lock as workdir_lock
from jaylyrics_jax.runs.lock import WorkdirLockError
from jaylyrics_jax.runs import tune

# Another process holding the lock until its stdin closes.
_HOLDER = ('import sys\n'
           'from jaylyrics_jax.runs import lock as workdir_lock\n'
           'with workdir_lock.hold(sys.argv[1]):\n'
           '  sys.stdin.read()\n')


def _lock_record(workdir):
  try:
    with open(os.path.join(workdir, workdir_lock.LOCK_FILE),
              encoding='utf-8') as f:
      return json.loads(f.read())
  except (OSError, ValueError):
    return None


def _start_holder(workdir):
  """A child process holding `workdir`'s lock (its record written)."""
  child = subprocess.Popen([sys.executable, '-c', _HOLDER, str(workdir)],
                           cwd=REPO, stdin=subprocess.PIPE)
  deadline = time.time() + 120
  while (_lock_record(workdir) or {}).get('pid') != child.pid:
    assert child.poll() is None and time.time() < deadline, 'no lock taken'
    time.sleep(0.05)
  return child


@pytest.fixture
def holder(tmp_path):
  workdir = tmp_path / 'run'
  child = _start_holder(workdir)
  yield str(workdir), child
  child.kill()
  child.wait(timeout=30)


def test_second_writer_is_refused_naming_the_first(holder):
  workdir, child = holder
  with pytest.raises(WorkdirLockError) as raised:
    with workdir_lock.hold(workdir):
      pytest.fail('took a lock another process holds')
  message = str(raised.value)
  assert f'pid {child.pid} on host {socket.gethostname()}' in message
  assert 'started 20' in message and 'UTC' in message
  assert 'another folder as the `workdir` argument' in message
  assert raised.value.holder['pid'] == child.pid
  assert '--workdir' in raised.value.message('--workdir')
  # Once the holder ends, the lock is free and its file is gone.
  child.stdin.close()
  assert child.wait(timeout=60) == 0
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))
  with workdir_lock.hold(workdir):
    assert _lock_record(workdir)['pid'] == os.getpid()


def test_library_train_and_tune_touch_nothing_while_held(holder, tiny_corpus):
  workdir, child = holder
  before = sorted(os.listdir(workdir))
  config = jl.TrainConfig(workdir=workdir, batch_size=4, seq_length=8,
                          num_epochs=1)
  with pytest.raises(WorkdirLockError, match=f'pid {child.pid}'):
    jl.train(tiny_corpus, jl.ModelConfig(embedding_size=8, rnn_size=16),
             config)
  with pytest.raises(WorkdirLockError, match=f'pid {child.pid}'):
    tune.tune_run(workdir, tiny_corpus)
  assert sorted(os.listdir(workdir)) == before == [workdir_lock.LOCK_FILE]
  assert _lock_record(workdir)['pid'] == child.pid


def test_a_killed_holder_leaves_a_file_that_does_not_block(tmp_path):
  workdir = tmp_path / 'run'
  child = _start_holder(workdir)
  child.send_signal(signal.SIGKILL)
  assert child.wait(timeout=30) == -signal.SIGKILL
  assert _lock_record(workdir)['pid'] == child.pid  # Stale, not live.
  with workdir_lock.hold(str(workdir)):
    assert _lock_record(workdir)['pid'] == os.getpid()


def test_reentrant_in_one_process_and_released_at_the_outermost(tmp_path):
  workdir = str(tmp_path / 'run')
  lock_file = os.path.join(workdir, workdir_lock.LOCK_FILE)
  with workdir_lock.hold(workdir):
    with workdir_lock.hold(workdir):
      assert os.path.exists(lock_file)
    assert _lock_record(workdir)['pid'] == os.getpid()
    with open(os.path.join(workdir, 'kept.txt'), 'w', encoding='utf-8'):
      pass
  assert os.listdir(workdir) == ['kept.txt']


def test_a_folder_made_for_nothing_is_removed(tmp_path):
  workdir = tmp_path / 'new' / 'run'
  with workdir_lock.hold(str(workdir)):
    assert workdir.is_dir()
  assert not workdir.exists() and (tmp_path / 'new').is_dir()


def test_disabled_takes_no_lock(tmp_path):
  with workdir_lock.hold(str(tmp_path / 'run'), enabled=False):
    assert not (tmp_path / 'run').exists()


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder', encoding='utf-8')
  with pytest.raises(WorkdirLockError, match='is not writable'):
    with workdir_lock.hold(str(blocker / 'run')):
      pass
  assert blocker.read_text(encoding='utf-8') == 'not a folder'
