"""Flags and start-up shared by the entry points; the library never reads flags."""

import logging as std_logging
import os
import sys
import threading
import time
import traceback
from typing import Callable

from absl import app
from absl import flags
from absl import logging

from experiments import config_flags
from jaylyrics_jax import runtime
from jaylyrics_jax.config import check_rng_seed
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.errors import explain_failure
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.runs.lock import WorkdirLockError

# Defaults and help from the library's TrainConfig (one source); train.py's
# generated TrainConfig flags reuse these two.
WORKDIR = flags.DEFINE_string('workdir', TrainConfig.workdir,
                              config_flags.field_help(TrainConfig, 'workdir'))
RNG_SEED = flags.DEFINE_integer(
    'rng_seed', TrainConfig.rng_seed,
    config_flags.field_help(TrainConfig, 'rng_seed'))


def _valid_rng_seed(value: int) -> bool:
  try:
    check_rng_seed(value)
  except JaylyricsError as e:
    raise flags.ValidationError(str(e).split(': ', 1)[1]) from None
  return True


flags.register_validator('rng_seed', _valid_rng_seed)

# Library arguments that entry points pass on from differently named flags.
config_flags.rename_arguments({'unknown': 'unknown_chars',
                               'corpus_path': 'corpus'})
COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', runtime.default_cache_dir(),
    'Folder of the persistent XLA compilation cache; empty turns it off.')


def _say(line: str) -> None:
  """One line on stderr in one write: print() writes the text and its
  newline apart, and a writer thread (orbax's, after a failed save) could
  slip its own output in between."""
  sys.stderr.write(line + '\n')
  sys.stderr.flush()


def warn(message: str) -> None:
  _say('warning: ' + message)


def exit_now(code: int, grace: float = 2.0) -> None:
  """Exits with `code` within about `grace` seconds, whatever threads run.

  After a failed save, orbax's writer threads can wait forever, and Python
  joins every non-daemon thread before it exits: they get `grace` seconds
  to end, then the process ends without them (output flushed first).
  """
  deadline = time.monotonic() + grace
  for thread in threading.enumerate():
    if thread is not threading.current_thread() and not thread.daemon:
      thread.join(max(0.0, deadline - time.monotonic()))
  if any(t.is_alive() and not t.daemon and t is not threading.current_thread()
         for t in threading.enumerate()):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def fail(message: str) -> None:
  """Prints one paragraph naming the problem and the fix, then exits 1.

  The library names its Python arguments (`batch_size=0`); they are shown
  as the flags that set them (`--batch_size=0`).
  """
  _say('error: ' + config_flags.to_flag_names(message))
  exit_now(1)


class _QuietCheckpointThreads(std_logging.Filter):
  """Drops orbax's and its writer threads' own error logs.

  When a save fails (a full disk), orbax logs tracebacks from its background
  threads; the failure reaches `jaylyrics_jax.runs.checkpoints.save`, which
  raises one clear error, so the tracebacks are noise for a CLI user.
  """

  def filter(self, record):
    return not ('/orbax/' in record.pathname or
                record.name in ('concurrent.futures', 'asyncio'))


def run(main: Callable[[list[str]], None]) -> None:
  """`app.run(main)` with quiet orbax logs, the cache, and clean errors."""

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
    logging.set_verbosity(logging.WARNING)  # orbax logs ~70 INFO lines a save.
    logging.get_absl_handler().addFilter(_QuietCheckpointThreads())
    if COMPILATION_CACHE.value:
      try:
        runtime.enable_compilation_cache(COMPILATION_CACHE.value)
      except OSError as e:
        logging.warning('Compilation cache off (%s).', e)
    try:
      main(argv)
    except WorkdirLockError as e:
      fail(e.message('--workdir'))
    except JaylyricsError as e:
      fail(str(e))
    except OSError as e:  # A full disk or a vanished folder mid-run.
      cause, fix = explain_failure(e)
      fail(f'A file operation failed: {cause}. {fix}, then run again (with '
           '--resume for training): finished checkpoints are kept.')
    except app.UsageError:
      raise
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()  # A bug: the traceback, and no hang either.
      exit_now(1)

  app.run(wrapped, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, but a bad flag is one line on stderr and exit 2 (a
  usage error), as the command line's other bad input is one paragraph."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _say(f'error: {" ".join(str(e).split())} (see --helpshort)')
    sys.exit(2)
