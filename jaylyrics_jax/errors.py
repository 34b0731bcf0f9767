"""The one exception type users see for bad input, and what a failure means.

Every message names the problem and the fix. The command-line entry points
print it without a traceback and exit non-zero.
"""

import errno
import os
import re
from typing import Iterator


class JaylyricsError(Exception):
  """A problem with the user's input, files or flags, with its fix."""


def _chain(e: BaseException) -> Iterator[BaseException]:
  """`e`, then what it wraps: causes, contexts and grouped exceptions."""
  seen, todo = set(), [e]
  while todo:
    e = todo.pop(0)
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    yield e
    todo.extend([e.__cause__, e.__context__,
                 *getattr(e, 'exceptions', ())])


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)
_KNOWN = (*_NO_SPACE, *_NO_PERMISSION, errno.EFBIG, errno.ENOENT, errno.EEXIST)


def _os_error(x: BaseException) -> tuple[int, str, str] | None:
  """(errno, strerror, filename) of an OS error, also when it is only text.

  tensorstore (orbax's array writer) reports OS errors as text such as
  `... No space left on device [os_error_code='28']` inside a ValueError.
  """
  if isinstance(x, OSError) and x.errno is not None:
    return x.errno, x.strerror or str(x), x.filename or ''
  text = str(x)
  match = re.search(r"os_error_code='?(\d+)", text)
  if match:
    code = int(match.group(1))
    return code, os.strerror(code), ''
  for code in _KNOWN:
    if os.strerror(code) in text:
      return code, os.strerror(code), ''
  return None


def os_error_code(e: BaseException) -> int | None:
  """The errno of the first OS error in `e`'s chain (see `explain_failure`)."""
  for x in _chain(e):
    found = _os_error(x)
    if found is not None:
      return found[0]
  return None


def explain_failure(e: BaseException) -> tuple[str, str]:
  """(cause, fix) of a failed file write or read, e.g. of a checkpoint.

  Both are sentence fragments: callers add what to do afterwards. orbax
  wraps the error of its writer threads (in other errors, or as their
  `__cause__`/`__context__`), so the whole chain is searched, most telling
  cause first: a step that exists, then the OS error's errno.
  """
  chain = list(_chain(e))
  for x in chain:
    if type(x).__name__ == 'StepAlreadyExistsError':
      return (f'the checkpoint step already exists ({x}): another run is '
              'probably writing this workdir, or the step was saved before',
              'Make sure no other run uses this workdir')
  for x in chain:
    found = _os_error(x)
    if found is None:
      continue
    code, strerror, filename = found
    where = f' ({filename})' if filename else ''
    if code in _NO_SPACE:
      return f'the disk is full{where}: {strerror}', 'Free disk space'
    if code == errno.EFBIG:
      return (f'a file outgrew the size limit{where}: {strerror} (the '
              "process's file-size limit, `ulimit -f`, or the file system's)",
              'Raise the limit, or write to another file system')
    if code == errno.EROFS:
      return (f'the file system is read-only{where}',
              'Write to a writable file system')
    if code in _NO_PERMISSION:
      return (f'permission denied{where}: {strerror}',
              'Fix the permissions of the workdir')
    if code == errno.ENOENT:
      return (f'a file or folder vanished while in use{where}: {strerror} '
              '(was the workdir moved or deleted, or is another run writing '
              'it?)', 'Check that nothing else deletes files in the workdir')
    if code == errno.EEXIST:
      return (f'a file it was about to create already exists{where}: '
              f'{strerror}; another run is probably writing this workdir',
              'Make sure no other run uses this workdir')
    return f'{strerror}{where}', 'Fix the cause'
  first = str(e).splitlines()[0] if str(e) else ''
  return f'{type(e).__name__}: {first}', 'Fix the cause'
