r"""Trains a character-level lyrics model.

  python -m experiments.train --flagfile=experiments/lstm.flags

Stop it with Ctrl-C (or SIGTERM): it saves a checkpoint first. Continue with
the same command plus --resume.
"""

import signal

from absl import flags
import jax
import tqdm

from experiments import common
from experiments import config_flags
import jaylyrics_jax as jl
from jaylyrics_jax import inference
from jaylyrics_jax import parallel

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
    'ngram_order', inference.DEFAULT_NGRAM_ORDER, 'Order of the Kneser-Ney '
    'n-gram mixed in at inference (tuned on the validation text after '
    'training; 0 = no n-gram).', lower_bound=0, upper_bound=8)
RESUME = flags.DEFINE_bool('resume', False,
                           'Continue the run in --workdir where it stopped.')

flags.register_validator(
    'coordinator_address',
    lambda v: v is None or (':' in v and v.rsplit(':', 1)[1].isdigit()),
    message='--coordinator_address must be host:port, e.g. 127.0.0.1:12345.')


class _Console:
  """Progress bar and one line per epoch."""

  def __init__(self):
    self._bar = None

  def on_step(self, epoch, position, total):
    if self._bar is None:
      self._bar = tqdm.tqdm(total=total, initial=position - 1,
                            desc=f'epoch {epoch + 1}', leave=False,
                            unit='batch', dynamic_ncols=True)
    self._bar.update(1)

  def close_bar(self):
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

  console = _Console()
  quiet = lambda *unused: None
  primary = parallel.is_primary()
  result = jl.train(corpus, model_config, train_config, resume=RESUME.value,
                    on_step=console.on_step if primary else quiet,
                    on_epoch=console.on_epoch if primary else quiet,
                    on_message=console.on_message if primary else quiet,
                    stop_requested=lambda: bool(signals),
                    ngram_order=NGRAM_ORDER.value)
  if not primary:
    return
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
