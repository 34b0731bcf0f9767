"""Append-only JSON-lines logs that a kill cannot corrupt.

Each record is written as one line with a single `write`, flushed and fsynced,
so earlier lines are never touched; a reader ignores a last line cut short by
a kill. Rewriting (to drop epochs a resumed run will redo) goes through a
temporary file and an atomic rename; the renamed file gets the mode a
plain `open` would give it (`tempfile.mkstemp` makes 0600 files).
"""

import json
import os
import tempfile
import threading
from typing import Any, Callable

_umask_guard = threading.Lock()


def new_file_mode() -> int:
  """0o666 less the process's umask: the mode `open` gives a new file."""
  with _umask_guard:  # Reading the umask means setting it: keep it brief.
    umask = os.umask(0o077)
    os.umask(umask)
  return 0o666 & ~umask


def append_jsonl(path: str, record: dict[str, Any]) -> None:
  line = json.dumps(record, ensure_ascii=False) + '\n'
  with open(path, 'a', encoding='utf-8') as f:
    f.write(line)
    f.flush()
    os.fsync(f.fileno())


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """Every complete record; a missing file reads as no records."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path, encoding='utf-8', errors='replace') as f:
    for line in f:
      if not line.endswith('\n'):
        break  # Cut short by a kill while writing.
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


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


def keep_records(path: str, keep: Callable[[dict[str, Any]], bool]) -> None:
  """Atomically rewrites `path` with only the records where `keep` is true."""
  records = [r for r in read_jsonl(path) if keep(r)]

  def write(tmp):
    with open(tmp, 'w', encoding='utf-8') as f:
      for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + '\n')
      f.flush()
      os.fsync(f.fileno())

  if os.path.exists(path):
    atomic_write(path, write)
