"""Writing files: the mode a new file gets, and atomic replacement.

`atomic_write` writes through a temporary file and an atomic rename; the
renamed file gets the mode a plain `open` would give it
(`tempfile.mkstemp` makes 0600 files).
"""

import os
import tempfile
import threading
from typing import Callable

_umask_guard = threading.Lock()


def new_file_mode() -> int:
  """0o666 less the process's umask: the mode `open` gives a new file."""
  with _umask_guard:  # Reading the umask means setting it: keep it brief.
    umask = os.umask(0o077)
    os.umask(umask)
  return 0o666 & ~umask


def atomic_write(path: str, write: Callable[[str], None]) -> None:
  """Calls `write(tmp_path)`, then renames the result over `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp.')
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
