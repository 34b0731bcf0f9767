"""One writing run per workdir: an advisory OS lock held for the whole run.

`hold(workdir)` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `<workdir>/.lock`
and writes the holder's pid, host and start time into it; a second writer
gets `WorkdirLockError` naming that run before it has touched anything. The
OS drops the lock when its process ends, however it ends, so a killed run
leaves at most a stale file, which never blocks: only a live lock does.
Readers (`load_model`, `evaluate`, `sample`) take no lock.

Within one process the lock is re-entrant, so a command can hold it across
several library calls that each take it (training, then tuning). Advisory
locks are per host on most network file systems: two hosts sharing a
workdir over NFS are only kept apart where the server supports `flock`.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from typing import Any, Iterator

from jaylyrics_jax.errors import JaylyricsError

LOCK_FILE = '.lock'

# Lock files this process holds: real path -> [file descriptor, depth].
_held: dict[str, list[int]] = {}
_held_guard = threading.Lock()


class WorkdirLockError(JaylyricsError):
  """The workdir is held by another run, or cannot hold a lock file.

  Attributes:
    workdir: the folder asked for.
    holder: the other run's record ({'pid', 'host', 'started'}), or None.
    problem: what is wrong, without the fix.
  """

  def __init__(self, workdir: str, problem: str, fix: str,
               holder: dict[str, Any] | None = None):
    self.workdir, self.problem, self.holder = workdir, problem, holder
    self._fix = fix
    super().__init__(self.message('the `workdir` argument'))

  def message(self, workdir_name: str) -> str:
    """The problem and its fix, naming the workdir setting `workdir_name`."""
    return f'{self.problem} {self._fix.format(workdir=workdir_name)}'


def describe_holder(holder: dict[str, Any] | None) -> str:
  if not holder:
    return 'another process (it has not written its details yet)'
  return (f"pid {holder.get('pid')} on host {holder.get('host')}, started "
          f"{holder.get('started')}")


def _read_holder(path: str) -> dict[str, Any] | None:
  """The record a live holder wrote; None while it is still writing it."""
  for _ in range(20):  # The holder writes it just after taking the lock.
    try:
      with open(path, encoding='utf-8') as f:
        return json.loads(f.read())
    except (OSError, ValueError):
      time.sleep(0.025)
  return None


def _acquire(workdir: str, path: str) -> int:
  """Locks `path`, retrying when a releasing holder unlinked it meanwhile."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      holder = _read_holder(path)
      raise WorkdirLockError(
          workdir,
          f'The workdir {workdir!r} is in use by another run '
          f'({describe_holder(holder)}; lock file {path}).',
          'Wait for that run to finish, or pass another folder as '
          '{workdir}. Nothing was changed.', holder) from None
    # A holder that was releasing may have unlinked the file between our
    # open and our lock: then we hold a lock nobody else can see. Retry.
    try:
      same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      same = False
    if same:
      return fd
    os.close(fd)


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds the workdir's lock for the `with` block (creating the folder).

  Args:
    workdir: the run's folder.
    enabled: False takes no lock (the processes other than 0 of a
      multi-process run: process 0 holds it for all of them).
  Raises:
    WorkdirLockError: another live process holds the lock, or the folder
      cannot be created or written.
  """
  if not enabled:
    yield
    return
  created = not os.path.isdir(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.path.realpath(workdir), LOCK_FILE)
    with _held_guard:
      if path in _held:
        _held[path][1] += 1
        fd = None
      else:
        fd = _acquire(workdir, path)
        _held[path] = [fd, 1]
  except OSError as e:
    raise WorkdirLockError(
        workdir, f'The workdir {workdir!r} is not writable ({e.strerror}).',
        'Pass a folder you can write to as {workdir}.') from None
  if fd is not None:
    record = {'pid': os.getpid(), 'host': socket.gethostname(),
              'started': time.strftime('%Y-%m-%d %H:%M:%S UTC',
                                       time.gmtime())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + '\n').encode('utf-8'), 0)
  try:
    yield
  finally:
    with _held_guard:
      _held[path][1] -= 1
      if not _held[path][1]:
        fd = _held.pop(path)[0]
        # Unlink while still locked (see `_acquire`), then unlock by closing.
        with contextlib.suppress(OSError):
          os.unlink(path)
        os.close(fd)
        if created:  # Leave no empty folder behind a run that failed early.
          with contextlib.suppress(OSError):
            os.rmdir(workdir)
