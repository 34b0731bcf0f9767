"""The training run: data, epochs, validation, logs, checkpoints, resume.

`train` is what `python -m experiments.train` calls; it takes plain configs
and callbacks and reads no flags. At the end it tunes the default inference
(`inference.tune_run`) unless told not to. Everything a resumed run needs to continue
exactly (step, epoch, position inside the epoch, carried hidden state,
optimizer state with the learning-rate schedule's position, dropout key,
early-stopping counters and the epoch's running sums) is in the checkpoint.
"""

import dataclasses
import math
import os
import time
from typing import Any, Callable

import jax
import numpy as np

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.data.batching import epoch_batches
from jaylyrics_jax.data.batching import min_chars
from jaylyrics_jax.data.batching import num_batches
from jaylyrics_jax.data.corpus import load_clean_text
from jaylyrics_jax.data.corpus import sha256_of
from jaylyrics_jax.data.corpus import split_train_valid
from jaylyrics_jax.data.vocab import build_vocabulary
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.runs import checkpoints as checkpointing
from jaylyrics_jax.runs import lock
from jaylyrics_jax.runs.logs import append_jsonl
from jaylyrics_jax.runs.logs import keep_records
from jaylyrics_jax.runs.logs import LOG_FILE
from jaylyrics_jax.runs.plot import plot_losses
from jaylyrics_jax.runs.store import abstract_tree
from jaylyrics_jax.runs.store import checkpoint_tree
from jaylyrics_jax.runs.store import MODEL_ONLY
from jaylyrics_jax.scoring import tuning as inference
from jaylyrics_jax.scoring.stream import stream_arrays
from jaylyrics_jax.scoring.stream import stream_nll
from jaylyrics_jax.scoring.tuning import InferenceConfig
from jaylyrics_jax.training import parallel
from jaylyrics_jax.training.steps import create_train_state
from jaylyrics_jax.training.steps import make_optimizer
from jaylyrics_jax.training.steps import make_train_step

# Train-config fields that fix the data stream or the state's shapes: a
# resumed run must keep them.
_RESUME_FIXED = ('batch_size', 'seq_length', 'valid_fraction', 'random_offset',
                 'rng_seed')


@dataclasses.dataclass(frozen=True)
class TrainData:
  """The cleaned corpus, cut and encoded for one run."""
  vocab: Vocabulary
  train_ids: np.ndarray
  valid_text: str
  corpus_sha256: str


def prepare_data(corpus_path: str, config: TrainConfig) -> TrainData:
  """Reads, cleans, builds the vocabulary (whole text) and splits the corpus."""
  text = load_clean_text(corpus_path,
                         min_chars=min_chars(config.batch_size,
                                             config.seq_length))
  vocab = build_vocabulary(text)
  train_text, valid_text = split_train_valid(text, config.valid_fraction)
  return TrainData(vocab=vocab, train_ids=vocab.encode(train_text),
                   valid_text=valid_text,
                   corpus_sha256=sha256_of(text.encode('utf-8')))


@dataclasses.dataclass
class LoopState:
  """Host-side position of a run; saved as JSON in every checkpoint."""
  epoch: int = 0          # Epochs fully finished.
  position: int = 0       # Batches finished inside the current epoch.
  best_valid_loss: float = math.inf
  bad_epochs: int = 0     # Epochs since the best valid loss.
  loss_sum: float = 0.0   # The current epoch's running sums (float32 exact).
  grad_norm_sum: float = 0.0
  seconds: float = 0.0    # Training seconds spent in the current epoch.


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What `train` did.

  inference: the default inference tuned at the end (see `tune`), stored in
    the best checkpoint step; None when it was not tuned.
  inference_scores: the validation scores of its components
    (`inference.evaluate_components`), or None.
  """
  workdir: str
  step: int
  epochs: int
  best_valid_loss: float
  stopped: str  # 'finished', 'early_stopped' or 'interrupted'.
  history: list[dict[str, Any]]
  inference: InferenceConfig | None = None
  inference_scores: dict[str, Any] | None = None


def _no_op(*unused_args, **unused_kwargs):
  pass


def _check_resumable(meta: dict[str, Any], data: TrainData,
                     model_config: ModelConfig, config: TrainConfig) -> None:
  """Refuses to continue a checkpoint with another corpus or model shape."""
  if meta.get('kind') == MODEL_ONLY:
    raise JaylyricsError(
        f'The newest checkpoint in {config.workdir!r} is a model saved by '
        'save_model, without the optimizer and data position a training run '
        'needs: resume=True cannot continue it. Train in another workdir=.')
  problems = []
  if meta['vocab'] != list(data.vocab.chars) or (
      meta['corpus_sha256'] != data.corpus_sha256):
    problems.append(
        f"the corpus differs (checkpoint vocabulary {len(meta['vocab'])} "
        f'characters, this corpus {data.vocab.size}; cleaned-text SHA-256 '
        f"{meta['corpus_sha256'][:12]}... vs {data.corpus_sha256[:12]}...)")
  saved_model = ModelConfig.from_dict(meta['model_config']).to_dict()
  for key, value in model_config.to_dict().items():
    # impl only chooses how the same model is computed: free to change.
    if key != 'impl' and saved_model.get(key) != value:
      problems.append(f'model {key}: checkpoint {saved_model.get(key)!r}, '
                      f'now {value!r}')
  for key in _RESUME_FIXED:
    if meta['train_config'].get(key) != getattr(config, key):
      problems.append(f"{key}: checkpoint {meta['train_config'].get(key)!r}, "
                      f'now {getattr(config, key)!r}')
  if problems:
    raise JaylyricsError(
        'Cannot resume=True: the run in the workdir differs from these '
        'settings: ' + '; '.join(problems) + '. Use the same corpus_path= '
        'and model settings as the checkpoint, or a new workdir= to start a '
        'fresh run.')


def train(corpus_path: str, model_config: ModelConfig, config: TrainConfig,
          *, resume: bool = False,
          on_step: Callable[[int, int, int], None] = _no_op,
          on_epoch: Callable[[dict[str, Any]], None] = _no_op,
          on_message: Callable[[str], None] = _no_op,
          stop_requested: Callable[[], bool] = lambda: False,
          make_plot: bool = True, tune: bool = True,
          ngram_order: int = inference.DEFAULT_NGRAM_ORDER) -> TrainResult:
  """Trains a `CharLM` on a lyrics file, writing everything into the workdir.

  Then, by default, tunes the default inference (the model mixed with its
  neural cache and n-grams) on the validation text, as `tune_run` does, and
  stores it in the best checkpoint step, so `load_model` + `sample_text` /
  `evaluate` use the mixture. It is skipped when the run was interrupted,
  with `valid_fraction=0` (nothing to tune on), in a multi-process run (call
  `tune_run(workdir)` in one process afterwards), or with `tune=False`.

  Args:
    corpus_path: a raw UTF-8 lyrics file (cleaned here).
    model_config: the model shape. `vocab_size=0` (the default) takes the
      corpus's vocabulary size; any other value must equal it.
    config: training settings, `config.workdir` included.
    resume: continue from the newest good checkpoint in the workdir.
    on_step: called as (epoch, position, steps_per_epoch) after each step is
      dispatched (no device sync).
    on_epoch: called with each epoch's log record.
    on_message: called with human-readable notes (resume, early stop, ...).
    stop_requested: polled after every step; when it returns True the run
      saves a checkpoint and returns with `stopped='interrupted'`.
    make_plot: redraw `<workdir>/loss.png` after every epoch.
    tune: tune the default inference at the end (see above).
    ngram_order: the Kneser-Ney order the tuning mixes in (0 = none).
  Returns:
    A `TrainResult`; its `inference` holds the tuned settings.
  Raises:
    WorkdirLockError: another run is writing the workdir (its pid, host and
      start time are in the message), or the workdir is not writable;
      nothing was changed.
    JaylyricsError: bad input, a failed save (with its cause) and the like.
  """
  if ngram_order < 0:
    raise JaylyricsError(f'ngram_order={ngram_order!r}: must be >= 0.')
  data = prepare_data(corpus_path, config)
  if model_config.vocab_size not in (0, data.vocab.size):
    raise JaylyricsError(
        f'model_config has vocab_size={model_config.vocab_size} but the '
        f'corpus has {data.vocab.size} distinct characters; leave '
        'vocab_size=0 to take it from the corpus.')
  # Process 0 holds the workdir for every process of the run.
  with lock.hold(config.workdir, enabled=parallel.is_primary()):
    return _train_locked(corpus_path, data, model_config, config, resume,
                         on_step, on_epoch, on_message, stop_requested,
                         make_plot, tune, ngram_order)


def _train_locked(corpus_path: str, data: TrainData,
                  model_config: ModelConfig, config: TrainConfig, resume: bool,
                  on_step: Callable[[int, int, int], None],
                  on_epoch: Callable[[dict[str, Any]], None],
                  on_message: Callable[[str], None],
                  stop_requested: Callable[[], bool],
                  make_plot: bool, tune: bool, ngram_order: int) -> TrainResult:
  """`train` once the workdir is locked; the arguments are `train`'s."""
  model_config = dataclasses.replace(model_config, vocab_size=data.vocab.size)
  workdir = config.workdir
  log_path = os.path.join(workdir, LOG_FILE)

  b, t = config.batch_size, config.seq_length
  max_offset = t - 1 if config.random_offset else 0
  steps_per_epoch = num_batches(len(data.train_ids), b, t, max_offset)
  if steps_per_epoch == 0:
    raise JaylyricsError(
        f'The training part of the corpus has {len(data.train_ids)} '
        f'characters, fewer than one batch needs ({min_chars(b, t) + max_offset}'
        ' = batch_size * seq_length + 1). Use a longer corpus or a smaller '
        f'batch_size={b} or seq_length={t}.')
  valid_arrays = stream_arrays(data.valid_text, data.vocab)

  place = parallel.Placement(
      parallel.data_mesh(config.num_devices, config.batch_size))
  primary = parallel.is_primary()  # Only process 0 writes logs and plots.
  tx = make_optimizer(config, steps_per_epoch)
  train_step = make_train_step(model_config, tx)
  init_key, dropout_key, offset_key = jax.random.split(
      jax.random.key(config.rng_seed), 3)
  loop = LoopState()
  has_checkpoints = bool(checkpointing.saved_steps(workdir))
  if resume and has_checkpoints:
    tree, meta, restored_step = checkpointing.restore(
        workdir, lambda m: place.abstract(abstract_tree(m)), which='latest',
        warn=on_message, move_damaged=primary)
    _check_resumable(meta, data, model_config, config)
    state = tree['train']
    dropout_key = jax.random.wrap_key_data(tree['dropout_key'])
    loop = LoopState(**meta['loop'])
    if primary:
      keep_records(log_path, lambda r: r.get('epoch', 0) <= loop.epoch)
    on_message(f'Resumed from step {restored_step} (epoch {loop.epoch + 1}, '
               f'batch {loop.position}/{steps_per_epoch}).')
  else:
    if has_checkpoints:
      raise JaylyricsError(
          f'The workdir {workdir!r} already holds checkpoints of another run. '
          'Pass resume=True to continue it, or another workdir= to start '
          'afresh (nothing was changed).')
    if resume:
      on_message(f'No checkpoint in {workdir!r}: starting a new run.')
    state = place.state(create_train_state(model_config, tx, b, init_key))
    dropout_key = place.key(dropout_key)
    if primary:
      keep_records(log_path, lambda r: False)
  del init_key

  manager = None  # Opened at the first save: orbax is not needed before.
  history = []

  def valid_loss_of(params) -> float:
    if not len(valid_arrays.targets):
      return math.nan
    nll, count = stream_nll(params, model_config, valid_arrays)
    return nll / count if count else math.nan

  def check_finite():
    bad = int(state.nonfinite_step)
    if bad >= 0:
      raise JaylyricsError(
          f'The loss or gradient became NaN/Inf at step {bad} (epoch '
          f'{loop.epoch + 1}); no checkpoint was written after it and the '
          'earlier ones are kept. Lower learning_rate= or grad_clip=, then '
          'resume or restart.')

  def save(valid_loss: float):
    check_finite()
    meta = {
        'vocab': list(data.vocab.chars),
        'corpus_sha256': data.corpus_sha256,
        'corpus_path': os.path.abspath(corpus_path),
        'model_config': model_config.to_dict(),
        'train_config': config.to_dict(),
        'loop': dataclasses.asdict(loop),
        'valid_loss': None if math.isnan(valid_loss) else valid_loss,
    }
    metric = valid_loss if not math.isnan(valid_loss) else math.inf
    nonlocal manager
    if manager is None:
      manager = checkpointing.open_manager(workdir,
                                           keep=config.keep_checkpoints)
    checkpointing.save(manager, host_step,
                       checkpoint_tree(state, dropout_key), meta, metric)

  stopped = 'finished'
  host_step = int(state.step)  # Counted on the host: no per-step sync.
  failed = True
  try:
    while loop.epoch < config.num_epochs:
      offset = 0
      if max_offset:
        offset = int(jax.random.randint(
            jax.random.fold_in(offset_key, loop.epoch), (), 0, max_offset + 1))
      inputs, targets = epoch_batches(data.train_ids, b, t, offset)
      inputs, targets = inputs[:steps_per_epoch], targets[:steps_per_epoch]
      if loop.position == 0:
        state = state.replace(
            carry=place.carry(zero_carries(model_config, b)))
      loss_sum = place.replicate(np.float32(loop.loss_sum))
      grad_norm_sum = place.replicate(np.float32(loop.grad_norm_sum))
      start = time.perf_counter() - loop.seconds
      interrupted = False
      while loop.position < steps_per_epoch:
        p = loop.position
        batch = (place.batch(inputs[p]), place.batch(targets[p]))
        state, metrics = train_step(state, batch, dropout_key)
        loss_sum = loss_sum + metrics['loss']
        grad_norm_sum = grad_norm_sum + metrics['grad_norm']
        loop.position += 1
        host_step += 1
        on_step(loop.epoch, loop.position, steps_per_epoch)
        interrupted = stop_requested()
        if loop.position < steps_per_epoch and (
            interrupted or host_step % config.save_every == 0):
          loop.loss_sum, loop.grad_norm_sum = float(loss_sum), float(
              grad_norm_sum)
          loop.seconds = time.perf_counter() - start
          save(valid_loss_of(state.params))
          if interrupted:
            on_message(f'Saved step {host_step}.')
            stopped = 'interrupted'
            break
      if stopped == 'interrupted':
        break
      check_finite()
      seconds = time.perf_counter() - start
      valid_loss = valid_loss_of(state.params)
      steps = steps_per_epoch
      record = {
          'epoch': loop.epoch + 1,
          'step': host_step,
          'train_loss': float(loss_sum) / steps,
          'valid_loss': None if math.isnan(valid_loss) else valid_loss,
          'valid_bpc': (None if math.isnan(valid_loss)
                        else valid_loss / math.log(2)),
          'lr': float(metrics['lr']),
          'grad_norm': float(grad_norm_sum) / steps,
          'seconds': seconds,
          'chars_per_s': steps * b * t / seconds,
      }
      loop = LoopState(epoch=loop.epoch + 1,
                       best_valid_loss=loop.best_valid_loss,
                       bad_epochs=loop.bad_epochs)
      if not math.isnan(valid_loss):
        if valid_loss < loop.best_valid_loss:
          loop.best_valid_loss, loop.bad_epochs = valid_loss, 0
        else:
          loop.bad_epochs += 1
      record['best_valid_loss'] = loop.best_valid_loss
      # Log first: a kill between the two leaves a line that the resumed run
      # drops and writes again, never a finished epoch without its line.
      if primary:
        append_jsonl(log_path, record)
      save(valid_loss)
      history.append(record)
      on_epoch(record)
      if make_plot and primary:
        plot_losses(workdir)
      if interrupted:
        stopped = 'interrupted'
        break
      if config.patience and loop.bad_epochs >= config.patience:
        on_message(f'Early stop: valid loss has not improved for '
                   f'{loop.bad_epochs} epochs (best {loop.best_valid_loss:.4f}).')
        stopped = 'early_stopped'
        break
    failed = False
  finally:
    if manager is not None:
      checkpointing.close_manager(manager, failed=failed)
  tuned = scores = None
  if tune and stopped != 'interrupted' and config.valid_fraction > 0:
    if jax.process_count() > 1:
      # Restoring inside a multi-process runtime waits on every process.
      on_message('Inference not tuned in a multi-process run: tune it in one '
                 f'process with tune_run({workdir!r}).')
    else:
      # `_tune`, not `tune_run`: the run already holds its workdir.
      tuned, scores = inference._tune(  # pylint: disable=protected-access
          workdir, corpus_path, ngram_order, 'best', on_message)
  return TrainResult(workdir=workdir, step=host_step, epochs=loop.epoch,
                     best_valid_loss=loop.best_valid_loss, stopped=stopped,
                     history=history, inference=tuned,
                     inference_scores=scores)
