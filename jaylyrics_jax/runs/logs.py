"""Append-only JSON-lines logs that a kill cannot corrupt.

Each record is written as one line with a single `write`, flushed and fsynced,
so earlier lines are never touched; a reader ignores a last line cut short by
a kill. Rewriting (to drop epochs a resumed run will redo) goes through
`files.atomic_write`.
"""

import json
import os
from typing import Any, Callable

from jaylyrics_jax.files import atomic_write

LOG_FILE = 'log.jsonl'  # The run's log, in its workdir.


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
