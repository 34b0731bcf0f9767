r"""Trains a character-level lyrics model.

  python -m experiments.train --flagfile=experiments/lstm.flags

Stop it with Ctrl-C (or SIGTERM): it saves a checkpoint first. Continue with
the same command plus --resume. One run at a time per --workdir: a second
one (fresh or --resume) stops at once, naming the run that holds it. On a
terminal a progress bar shows the epoch; redirected to a file, the output is
one line per epoch (and a progress line every --progress_seconds).
"""

import signal
import sys
import time

from absl import flags
import jax
import tqdm

from experiments import common
from experiments import config_flags
import jaylyrics_jax as jl
from jaylyrics_jax.runs import lock
from jaylyrics_jax.scoring import tuning
from jaylyrics_jax.training import parallel

CORPUS = flags.DEFINE_string(
    'corpus', None,
    'Raw UTF-8 lyrics file. Default: data/jaychou/origin.txt, downloaded '
    'from the original project when missing.')
# One flag per field of the library's configs: defaults, help and checks are
# the dataclasses' own (experiments/config_flags.py).
MODEL_FLAGS = config_flags.define_config_flags(
    jl.ModelConfig, renames={'cell': 'rnncell'}, skip=('vocab_size',))
TRAIN_FLAGS = config_flags.define_config_flags(jl.TrainConfig)
COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for training over '
    'several processes/hosts (jax.distributed).')
NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                     'Processes in a multi-process run.',
                                     lower_bound=1)
PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                  'This process in a multi-process run.',
                                  lower_bound=0)
DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Initialise jax.distributed from the environment '
    '(SLURM, TPU, cloud) without the three flags above.')
NGRAM_ORDER = flags.DEFINE_integer(
    'ngram_order', tuning.DEFAULT_NGRAM_ORDER, 'Order of the Kneser-Ney '
    'n-gram mixed in at inference (tuned on the validation text after '
    'training; 0 = no n-gram).', lower_bound=0, upper_bound=8)
RESUME = flags.DEFINE_bool('resume', False,
                           'Continue the run in --workdir where it stopped.')
PROGRESS_SECONDS = flags.DEFINE_float(
    'progress_seconds', 30.0, 'When the output is not a terminal (a log '
    'file): print a progress line at most this often within an epoch, '
    'instead of a progress bar.', lower_bound=0.0)

flags.register_validator(
    'coordinator_address',
    lambda v: v is None or (':' in v and v.rsplit(':', 1)[1].isdigit()),
    message='--coordinator_address must be host:port, e.g. 127.0.0.1:12345.')


class _Console:
  """One line per epoch; between them a progress bar on a terminal, or
  a plain line every `progress_seconds` when the output goes to a file
  (a bar's carriage-return redraws make a log file unreadable)."""

  def __init__(self, progress_seconds: float):
    self._bar = None
    self._tty = sys.stdout.isatty() and sys.stderr.isatty()
    self._every = progress_seconds
    self._last_line = time.monotonic()

  def on_step(self, epoch, position, total):
    if not self._tty:
      now = time.monotonic()
      if now - self._last_line >= self._every and position < total:
        self._last_line = now
        print(f'epoch {epoch + 1:3d}  batch {position}/{total} '
              f'({100 * position / total:.0f}%)', flush=True)
      return
    if self._bar is None:
      self._bar = tqdm.tqdm(total=total, initial=position - 1,
                            desc=f'epoch {epoch + 1}', leave=False,
                            unit='batch', dynamic_ncols=True)
    self._bar.update(1)

  def close_bar(self):
    self._last_line = time.monotonic()
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def on_epoch(self, r):
    self.close_bar()
    valid = ('valid loss n/a' if r['valid_loss'] is None else
             f"valid loss {r['valid_loss']:.4f} ({r['valid_bpc']:.3f} bpc)")
    print(f"epoch {r['epoch']:3d}  step {r['step']:6d}  train loss "
          f"{r['train_loss']:.4f}  {valid}  lr {r['lr']:.2e}  grad norm "
          f"{r['grad_norm']:.3f}  {r['seconds']:.1f}s  "
          f"{r['chars_per_s']:,.0f} chars/s", flush=True)

  def on_message(self, text):
    self.close_bar()
    print(text, flush=True)


def main(argv):
  del argv
  if COORDINATOR.value or DISTRIBUTED.value:
    # Before anything else touches JAX.
    parallel.initialize_distributed(COORDINATOR.value, NUM_PROCESSES.value,
                                    PROCESS_ID.value)
  model_config = MODEL_FLAGS.build()
  train_config = TRAIN_FLAGS.build()
  corpus = jl.resolve_corpus(CORPUS.value)

  signals = []
  def request_stop(signum, unused_frame):
    signals.append(signum)
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, request_stop)

  console = _Console(PROGRESS_SECONDS.value)
  quiet = lambda *unused: None
  primary = parallel.is_primary()
  # Held across training and tuning, which both write the workdir; the
  # library calls take it again (re-entrant within this process).
  with lock.hold(train_config.workdir, enabled=primary):
    result = jl.train(corpus, model_config, train_config,
                      resume=RESUME.value,
                      on_step=console.on_step if primary else quiet,
                      on_epoch=console.on_epoch if primary else quiet,
                      on_message=console.on_message if primary else quiet,
                      stop_requested=lambda: bool(signals),
                      ngram_order=NGRAM_ORDER.value)
    if primary:
      _report(result, train_config, console)


def _report(result, train_config, console):
  """Says how the run ended and what the tuning found."""
  console.close_bar()
  if result.stopped == 'interrupted':
    print(f'Stopped by signal at step {result.step}; the checkpoint is saved. '
          'Continue with the same command plus --resume.', flush=True)
    return
  print(f'Done ({result.stopped}) after {result.epochs} epochs, step '
        f'{result.step}; best valid loss {result.best_valid_loss:.4f}. '
        f'Run folder: {result.workdir}', flush=True)
  if result.inference is not None:
    tuned, scores = result.inference, result.inference_scores
    print(f'Inference tuned on the validation text (cache {tuned.cache_size}'
          f', theta {tuned.theta}, n-gram order {tuned.ngram_order}): '
          + ', '.join(f'{k} {v:.3f}' for k, v in scores.items()
                      if k.startswith('bpc_')), flush=True)
  elif train_config.valid_fraction > 0 and jax.process_count() > 1:
    print('Tune the inference mixture in one process: python -m '
          f'experiments.tune --workdir={train_config.workdir}', flush=True)


if __name__ == '__main__':
  common.run(main)
