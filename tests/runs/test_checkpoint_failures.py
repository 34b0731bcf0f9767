"""Failed checkpoint saves and restores say what happened and what to do."""

import errno
import os
import shutil

import numpy as np
import pytest

from jaylyrics_jax.errors import explain_failure
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.runs import checkpoints

STATE = {'w': np.arange(6, dtype=np.float32)}
IS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0


def _save(workdir, step, state=None):
  manager = checkpoints.open_manager(str(workdir))
  try:
    checkpoints.save(manager, step, STATE if state is None else state,
                       {'note': step}, valid_loss=1.0)
  finally:
    checkpoints.close_manager(manager, failed=False)


def _restore(workdir, **kw):
  abstract = lambda meta: {'w': np.zeros(6, np.float32)}
  return checkpoints.restore(str(workdir), abstract, **kw)


def _wrapped(error):
  """`error` two levels down, the way orbax's writer threads report it."""
  try:
    try:
      raise error
    except OSError as e:
      raise RuntimeError('save_finalize failed') from e
  except RuntimeError as outer:
    try:
      raise ValueError('checkpoint write failed')
    except ValueError as e:
      e.__context__ = outer
      return e


def test_a_step_that_exists_says_another_run_may_be_writing(tmp_path):
  _save(tmp_path, 5)
  # A second manager, as a second run would open: orbax refuses step 5.
  with pytest.raises(JaylyricsError) as raised:
    _save(tmp_path, 5)
  message = str(raised.value)
  assert message.startswith('Could not write checkpoint 5')
  assert 'step already exists' in message and 'another run' in message
  assert 'disk space' not in message and 'permission' not in message
  assert _restore(tmp_path)[2] == 5  # The first one is intact.


def test_full_disk_from_the_os_and_from_tensorstore_text():
  try:
    with open('/dev/full', 'w', encoding='utf-8') as f:
      f.write('x')
  except OSError as e:
    cause, fix = explain_failure(_wrapped(e))
  assert cause.startswith('the disk is full') and fix == 'Free disk space'
  # What orbax raised on a full 64 KiB tmpfs (BUILD_NOTES): text only.
  text = ValueError(
      'RESOURCE_EXHAUSTED: Error writing "a/0" in OCDBT database: Failed to '
      "write 1457118 bytes to file 4: No space left on device "
      "[os_error_code='28']")
  assert explain_failure(text) == (
      'the disk is full: No space left on device', 'Free disk space')


@pytest.mark.parametrize('code, cause, fix', [
    (errno.EACCES, 'permission denied (/w/x): ', 'Fix the permissions'),
    (errno.EROFS, 'the file system is read-only (/w/x)', 'Write to a writ'),
    (errno.EFBIG, 'a file outgrew the size limit (/w/x)', 'Raise the limit'),
    (errno.EEXIST, 'a file it was about to create already exists', 'Make '
     'sure no other run uses this workdir'),
    (errno.ENOENT, 'a file or folder vanished', 'Check that nothing else'),
])
def test_each_os_error_has_its_own_cause(code, cause, fix):
  error = OSError(code, os.strerror(code), '/w/x')
  got_cause, got_fix = explain_failure(_wrapped(error))
  assert got_cause.startswith(cause) and got_fix.startswith(fix)


def test_a_missing_file_read_for_real_is_a_vanished_file(tmp_path):
  try:
    open(tmp_path / 'gone.txt', encoding='utf-8').close()
  except OSError as e:
    cause, _ = explain_failure(_wrapped(e))
  assert cause.startswith('a file or folder vanished') and 'gone.txt' in cause


def test_other_errors_keep_their_type_and_first_line():
  assert explain_failure(KeyError('x')) == ("KeyError: 'x'", 'Fix the cause')


def test_a_step_deleted_while_read_is_skipped_not_called_damaged(tmp_path):
  _save(tmp_path, 1)
  _save(tmp_path, 2)
  warnings = []

  def abstract(meta):
    if meta['note'] == 2:  # A writing run removes step 2 as we read it.
      shutil.rmtree(os.path.join(checkpoints.checkpoint_dir(tmp_path), '2'))
    return {'w': np.zeros(6, np.float32)}

  _, meta, step = checkpoints.restore(str(tmp_path), abstract,
                                        warn=warnings.append,
                                        move_damaged=True)
  assert step == 1 and meta['note'] == 1
  assert len(warnings) == 1 and 'Checkpoint 2' in warnings[0]
  assert 'vanished' in warnings[0] and 'damaged' not in warnings[0]
  assert not os.path.exists(tmp_path / 'damaged_checkpoints')


@pytest.mark.skipif(IS_ROOT, reason='root ignores file permissions')
def test_unreadable_and_unwritable_checkpoints_name_the_permissions(tmp_path):
  _save(tmp_path, 1)
  directory = checkpoints.checkpoint_dir(tmp_path)
  step_files = [os.path.join(r, f) for r, _, fs in
                os.walk(os.path.join(directory, '1', 'state')) for f in fs]
  for path in step_files:
    os.chmod(path, 0)
  try:
    with pytest.raises(JaylyricsError, match='permission denied') as raised:
      _restore(tmp_path)
    assert 'damaged' not in str(raised.value)
  finally:
    for path in step_files:
      os.chmod(path, 0o644)
  os.chmod(directory, 0o555)
  try:
    with pytest.raises(JaylyricsError, match='permission denied'):
      _save(tmp_path, 2)
  finally:
    os.chmod(directory, 0o755)
