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
import jaylyrics_jax as jl
from jaylyrics_jax import config as config_lib
from jaylyrics_jax import inference
from jaylyrics_jax import parallel
from jaylyrics_jax import workdir_lock

CORPUS = flags.DEFINE_string(
    'corpus', None,
    'Raw UTF-8 lyrics file. Default: data/jaychou/origin.txt, downloaded '
    'from the original project when missing.')
NUM_EPOCHS = flags.DEFINE_integer('num_epochs', 50, 'Epochs to train.',
                                  lower_bound=1)
BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Parallel text streams.',
                                  lower_bound=1)
SEQ_LENGTH = flags.DEFINE_integer(
    'seq_length', 16, 'Characters per window (truncated BPTT length).',
    lower_bound=1)
RNNCELL = flags.DEFINE_enum('rnncell', 'lstm', list(config_lib.CELLS),
                            'Recurrent cell.')
RNN_SIZE = flags.DEFINE_integer('rnn_size', 128, 'Hidden units per layer.',
                                lower_bound=1)
NUM_LAYERS = flags.DEFINE_integer('num_layers', 2, 'Recurrent layers.',
                                  lower_bound=1)
EMBEDDING_SIZE = flags.DEFINE_integer('embedding_size', 100,
                                      'Character embedding size.',
                                      lower_bound=1)
EMBED_INIT_STD = flags.DEFINE_float(
    'embed_init_std', 0.0, 'Std of the embedding\'s normal init (0 = flax '
    'default, 1/sqrt(embedding_size)).', lower_bound=0.0)
ATTN_LENGTH = flags.DEFINE_integer(
    'attn_length', 0, 'Attend over (and copy from) the last N positions, '
    'carried across windows; 0 = no attention.', lower_bound=0)
ATTN_SIZE = flags.DEFINE_integer('attn_size', 64,
                                 'Query/key size of the attention.',
                                 lower_bound=1)
SOFTMAX_LOSS_WEIGHT = flags.DEFINE_float(
    'softmax_loss_weight', 0.0, 'With --attn_length: weight of the loss of '
    'the softmax alone (no copying) added to the training objective.',
    lower_bound=0.0)
DROPOUT = flags.DEFINE_float(
    'dropout', 0.0, 'Dropout rate between layers and before the output.',
    lower_bound=0.0, upper_bound=0.99)
LEARNING_RATE = flags.DEFINE_float('learning_rate', 1e-3, 'Adam step size.')
DECAY_RATE = flags.DEFINE_float(
    'decay_rate', 1.0, 'Learning rate multiplier per epoch (1.0 = constant).')
GRAD_CLIP = flags.DEFINE_float('grad_clip', 5.0, 'Global gradient-norm clip.')
PATIENCE = flags.DEFINE_integer(
    'patience', 5,
    'Stop after this many epochs without a better valid loss (0 = never).',
    lower_bound=0)
VALID_FRACTION = flags.DEFINE_float(
    'valid_fraction', 0.1, 'Share of the cleaned text, at its end, kept for '
    'validation.', lower_bound=0.0, upper_bound=0.9)
RANDOM_OFFSET = flags.DEFINE_bool(
    'random_offset', False,
    'Start each epoch at a random offset below seq_length.')
SAVE_EVERY = flags.DEFINE_integer(
    'save_every', 1000, 'Save a checkpoint every this many steps (and at '
    'every epoch end).', lower_bound=1)
KEEP_CHECKPOINTS = flags.DEFINE_integer(
    'keep_checkpoints', 5, 'Newest checkpoints kept (the best is kept too).',
    lower_bound=1)
NUM_DEVICES = flags.DEFINE_integer(
    'num_devices', 0, 'Devices in the data-parallel mesh (batch streams are '
    'split over them); 0 = every device, of every process.', lower_bound=0)
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
    'ngram_order', 6, 'Order of the Kneser-Ney n-gram mixed in at inference '
    '(tuned on the validation text after training; 0 = no n-gram).',
    lower_bound=0, upper_bound=8)
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
flags.register_validator('learning_rate', lambda v: v > 0,
                         message='--learning_rate must be > 0.')
flags.register_validator('decay_rate', lambda v: 0 < v <= 1,
                         message='--decay_rate must be in (0, 1].')
flags.register_validator('grad_clip', lambda v: v > 0,
                         message='--grad_clip must be > 0.')


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
  model_config = jl.ModelConfig(
      embedding_size=EMBEDDING_SIZE.value, rnn_size=RNN_SIZE.value,
      num_layers=NUM_LAYERS.value, cell=RNNCELL.value, dropout=DROPOUT.value,
      embed_init_std=EMBED_INIT_STD.value, attn_length=ATTN_LENGTH.value,
      attn_size=ATTN_SIZE.value,
      softmax_loss_weight=SOFTMAX_LOSS_WEIGHT.value)
  train_config = jl.TrainConfig(
      workdir=common.WORKDIR.value, batch_size=BATCH_SIZE.value,
      seq_length=SEQ_LENGTH.value, num_epochs=NUM_EPOCHS.value,
      learning_rate=LEARNING_RATE.value, decay_rate=DECAY_RATE.value,
      grad_clip=GRAD_CLIP.value, rng_seed=common.RNG_SEED.value,
      save_every=SAVE_EVERY.value, keep_checkpoints=KEEP_CHECKPOINTS.value,
      patience=PATIENCE.value, valid_fraction=VALID_FRACTION.value,
      random_offset=RANDOM_OFFSET.value, num_devices=NUM_DEVICES.value)
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
  with workdir_lock.hold(train_config.workdir, enabled=primary):
    result = jl.train(corpus, model_config, train_config,
                      resume=RESUME.value,
                      on_step=console.on_step if primary else quiet,
                      on_epoch=console.on_epoch if primary else quiet,
                      on_message=console.on_message if primary else quiet,
                      stop_requested=lambda: bool(signals))
    if primary:
      _report(result, train_config, corpus, console)


def _report(result, train_config, corpus, console):
  """Says how the run ended, and tunes the inference mixture after it."""
  console.close_bar()
  if result.stopped == 'interrupted':
    print(f'Stopped by signal at step {result.step}; the checkpoint is saved. '
          'Continue with the same command plus --resume.', flush=True)
  else:
    print(f'Done ({result.stopped}) after {result.epochs} epochs, step '
          f'{result.step}; best valid loss {result.best_valid_loss:.4f}. '
          f'Run folder: {result.workdir}', flush=True)
    if train_config.valid_fraction > 0 and jax.process_count() > 1:
      # Restoring inside a multi-process runtime waits on every process.
      print('Tune the inference mixture in one process: python -m '
            f'experiments.tune --workdir={train_config.workdir}', flush=True)
    elif train_config.valid_fraction > 0:
      tuned, scores = inference.tune_run(train_config.workdir, corpus,
                                         NGRAM_ORDER.value, warn=common.warn)
      print(f'Inference tuned on the validation text (cache {tuned.cache_size}'
            f', theta {tuned.theta}, n-gram order {tuned.ngram_order}): '
            + ', '.join(f'{k} {v:.3f}' for k, v in scores.items()
                        if k.startswith('bpc_')), flush=True)


if __name__ == '__main__':
  common.run(main)
