"""The training run: data, epochs, validation, logs, checkpoints, resume.

`train` is what `python -m experiments.train` calls; it takes plain configs
and callbacks and reads no flags. It reads top to bottom: `_setup` fixes
what the whole run shares, `_restore_or_init` resumes or starts the run's
state (`RunState`), `_run_epochs` runs `_run_epoch` and `_end_epoch` (log,
checkpoint, early stop) until the run ends, and `_tune_at_end` tunes the
default inference (`runs.tune.tune_run`) on the corpus already read.
Everything a resumed run needs to continue exactly (step, epoch, position
inside the epoch, carried hidden state, optimizer state with the
learning-rate schedule's position, dropout key, early-stopping counters and
the epoch's running sums) is in the checkpoint.
"""

import dataclasses
import math
import os
import time
from typing import Any, Callable

import jax
import numpy as np

from jaylyrics_jax.config import InferenceConfig
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.data.batching import epoch_batches
from jaylyrics_jax.data.batching import min_chars
from jaylyrics_jax.data.batching import num_batches
from jaylyrics_jax.data.corpus import CorpusSplit
from jaylyrics_jax.data.corpus import read_split
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.runs import checkpoints
from jaylyrics_jax.runs import lock
from jaylyrics_jax.runs.logs import append_jsonl
from jaylyrics_jax.runs.logs import keep_records
from jaylyrics_jax.runs.logs import LOG_FILE
from jaylyrics_jax.runs.plot import plot_losses
from jaylyrics_jax.runs.store import abstract_tree
from jaylyrics_jax.runs.store import checkpoint_tree
from jaylyrics_jax.runs.store import CheckpointMeta
from jaylyrics_jax.runs.store import MODEL_ONLY
from jaylyrics_jax.runs.tune import tune_run
from jaylyrics_jax.scoring.stream import stream_arrays
from jaylyrics_jax.scoring.stream import stream_nll
from jaylyrics_jax.scoring.stream import StreamArrays
from jaylyrics_jax.scoring.tuning import DEFAULT_NGRAM_ORDER
from jaylyrics_jax.training import parallel
from jaylyrics_jax.training.steps import create_train_state
from jaylyrics_jax.training.steps import make_optimizer
from jaylyrics_jax.training.steps import make_train_step
from jaylyrics_jax.training.steps import TrainState

# Train-config fields that fix the data stream or the state's shapes: a
# resumed run must keep them.
_RESUME_FIXED = ('batch_size', 'seq_length', 'valid_fraction', 'random_offset',
                 'rng_seed')


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
    (`scoring.tuning.evaluate_components`), or None.
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


@dataclasses.dataclass(frozen=True)
class TrainHooks:
  """What the run calls back: `train`'s on_step, on_epoch, on_message and
  stop_requested (see there)."""
  on_step: Callable[[int, int, int], None] = _no_op
  on_epoch: Callable[[dict[str, Any]], None] = _no_op
  on_message: Callable[[str], None] = _no_op
  stop_requested: Callable[[], bool] = lambda: False


@dataclasses.dataclass(frozen=True)
class _Setup:
  """What the whole run shares, fixed before its first step."""
  corpus_path: str
  data: CorpusSplit
  model_config: ModelConfig
  config: TrainConfig
  place: parallel.Placement
  tx: Any  # The optax optimizer.
  train_step: Callable[..., Any]
  steps_per_epoch: int
  max_offset: int
  offset_key: jax.Array
  valid_arrays: StreamArrays
  primary: bool  # Only process 0 writes logs and plots.
  log_path: str
  make_plot: bool


@dataclasses.dataclass
class RunState:
  """The run as it goes: the device state and dropout key, the loop's
  position, the step counted on the host (no per-step sync), the checkpoint
  manager (opened at the first save: orbax is not needed before), the
  epochs' log records and how the run ended so far."""
  state: TrainState
  dropout_key: jax.Array
  loop: LoopState
  host_step: int
  manager: Any = None
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  stopped: str = 'finished'


def _check_resumable(meta: dict[str, Any], data: CorpusSplit,
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
          ngram_order: int = DEFAULT_NGRAM_ORDER) -> TrainResult:
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
  data = read_split(corpus_path, config.valid_fraction,
                    min_chars(config.batch_size, config.seq_length),
                    model_config.right_to_left)
  if model_config.vocab_size not in (0, data.vocab.size):
    raise JaylyricsError(
        f'model_config has vocab_size={model_config.vocab_size} but the '
        f'corpus has {data.vocab.size} distinct characters; leave '
        'vocab_size=0 to take it from the corpus.')
  hooks = TrainHooks(on_step, on_epoch, on_message, stop_requested)
  # Process 0 holds the workdir for every process of the run.
  with lock.hold(config.workdir, enabled=parallel.is_primary()):
    setup = _setup(corpus_path, data, model_config, config, make_plot)
    run = _restore_or_init(setup, resume, hooks)
    failed = True
    try:
      _run_epochs(setup, run, hooks)
      failed = False
    finally:
      if run.manager is not None:
        checkpoints.close_manager(run.manager, failed=failed)
    tuned = scores = None
    if tune and run.stopped != 'interrupted' and config.valid_fraction > 0:
      tuned, scores = _tune_at_end(setup, ngram_order, hooks)
  return TrainResult(workdir=config.workdir, step=run.host_step,
                     epochs=run.loop.epoch,
                     best_valid_loss=run.loop.best_valid_loss,
                     stopped=run.stopped, history=run.history,
                     inference=tuned, inference_scores=scores)


def _setup(corpus_path: str, data: CorpusSplit, model_config: ModelConfig,
           config: TrainConfig, make_plot: bool) -> _Setup:
  """The run's fixed parts; refuses a corpus too short for one batch."""
  model_config = dataclasses.replace(model_config, vocab_size=data.vocab.size)
  b, t = config.batch_size, config.seq_length
  max_offset = t - 1 if config.random_offset else 0
  steps_per_epoch = num_batches(len(data.train_ids), b, t, max_offset)
  if steps_per_epoch == 0:
    raise JaylyricsError(
        f'The training part of the corpus has {len(data.train_ids)} '
        f'characters, fewer than one batch needs ({min_chars(b, t) + max_offset}'
        ' = batch_size * seq_length + 1). Use a longer corpus or a smaller '
        f'batch_size={b} or seq_length={t}.')
  tx = make_optimizer(config, steps_per_epoch)
  _, _, offset_key = _run_keys(config)
  return _Setup(
      corpus_path=os.path.abspath(corpus_path), data=data,
      model_config=model_config, config=config,
      place=parallel.Placement(
          parallel.data_mesh(config.num_devices, config.batch_size)),
      tx=tx, train_step=make_train_step(model_config, tx),
      steps_per_epoch=steps_per_epoch, max_offset=max_offset,
      offset_key=offset_key,
      valid_arrays=stream_arrays(data.valid_text, data.vocab),
      primary=parallel.is_primary(),
      log_path=os.path.join(config.workdir, LOG_FILE), make_plot=make_plot)


def _run_keys(config: TrainConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(init, dropout, offset) keys of the run's seed."""
  return tuple(jax.random.split(jax.random.key(config.rng_seed), 3))


def _restore_or_init(setup: _Setup, resume: bool,
                     hooks: TrainHooks) -> RunState:
  """The newest good checkpoint's state (resume=True), or a fresh one."""
  config, place = setup.config, setup.place
  workdir = config.workdir
  has_checkpoints = bool(checkpoints.saved_steps(workdir))
  if resume and has_checkpoints:
    tree, meta, restored_step = checkpoints.restore(
        workdir, lambda m: place.abstract(abstract_tree(m)), which='latest',
        warn=hooks.on_message, move_damaged=setup.primary)
    _check_resumable(meta, setup.data, setup.model_config, config)
    loop = LoopState(**meta['loop'])
    if setup.primary:
      keep_records(setup.log_path, lambda r: r.get('epoch', 0) <= loop.epoch)
    hooks.on_message(
        f'Resumed from step {restored_step} (epoch {loop.epoch + 1}, '
        f'batch {loop.position}/{setup.steps_per_epoch}).')
    state = tree['train']
    return RunState(state, jax.random.wrap_key_data(tree['dropout_key']),
                    loop, int(state.step))
  if has_checkpoints:
    raise JaylyricsError(
        f'The workdir {workdir!r} already holds checkpoints of another run. '
        'Pass resume=True to continue it, or another workdir= to start '
        'afresh (nothing was changed).')
  if resume:
    hooks.on_message(f'No checkpoint in {workdir!r}: starting a new run.')
  init_key, dropout_key, _ = _run_keys(config)
  state = place.state(create_train_state(setup.model_config, setup.tx,
                                         config.batch_size, init_key))
  if setup.primary:
    keep_records(setup.log_path, lambda r: False)
  return RunState(state, place.key(dropout_key), LoopState(),
                  int(state.step))


def _valid_loss(setup: _Setup, params: Any) -> float:
  """Mean validation loss in nats per character; NaN without valid text."""
  if not len(setup.valid_arrays.targets):
    return math.nan
  nll, count = stream_nll(params, setup.model_config, setup.valid_arrays)
  return nll / count if count else math.nan


def _check_finite(run: RunState) -> None:
  bad = int(run.state.nonfinite_step)
  if bad >= 0:
    raise JaylyricsError(
        f'The loss or gradient became NaN/Inf at step {bad} (epoch '
        f'{run.loop.epoch + 1}); no checkpoint was written after it and the '
        'earlier ones are kept. Lower learning_rate= or grad_clip=, then '
        'resume or restart.')


def _save(setup: _Setup, run: RunState, valid_loss: float) -> None:
  """Checkpoints the run at its host step (after checking it is finite)."""
  _check_finite(run)
  meta = CheckpointMeta(
      vocab=setup.data.vocab.chars, model_config=setup.model_config,
      train_config=setup.config, corpus_path=setup.corpus_path,
      corpus_sha256=setup.data.corpus_sha256, valid_loss=valid_loss,
      loop=dataclasses.asdict(run.loop))
  if run.manager is None:
    run.manager = checkpoints.open_manager(
        setup.config.workdir, keep=setup.config.keep_checkpoints)
  checkpoints.save(run.manager, run.host_step,
                   checkpoint_tree(run.state, run.dropout_key),
                   meta.to_dict(), meta.metric)


def _run_epochs(setup: _Setup, run: RunState, hooks: TrainHooks) -> None:
  """Epochs until the last, an early stop or an interruption."""
  while run.loop.epoch < setup.config.num_epochs:
    epoch = _run_epoch(setup, run, hooks)
    if run.stopped == 'interrupted' or _end_epoch(setup, run, hooks, *epoch):
      return


def _run_epoch(setup: _Setup, run: RunState, hooks: TrainHooks):
  """The steps of the current epoch from the loop's position.

  Saves every `save_every` steps and on a stop request (then returns with
  run.stopped 'interrupted', unless that came at the epoch's last step).
  Returns (loss_sum, grad_norm_sum, start time, last metrics, whether a stop
  was requested at the epoch's last step) for `_end_epoch`.
  """
  config, place, loop = setup.config, setup.place, run.loop
  b, t, steps = config.batch_size, config.seq_length, setup.steps_per_epoch
  offset = 0
  if setup.max_offset:
    offset = int(jax.random.randint(
        jax.random.fold_in(setup.offset_key, loop.epoch), (), 0,
        setup.max_offset + 1))
  inputs, targets = epoch_batches(setup.data.train_ids, b, t, offset)
  inputs, targets = inputs[:steps], targets[:steps]
  if loop.position == 0:
    run.state = run.state.replace(
        carry=place.carry(zero_carries(setup.model_config, b)))
  loss_sum = place.replicate(np.float32(loop.loss_sum))
  grad_norm_sum = place.replicate(np.float32(loop.grad_norm_sum))
  start = time.perf_counter() - loop.seconds
  interrupted = False
  metrics = None
  while loop.position < steps:
    p = loop.position
    batch = (place.batch(inputs[p]), place.batch(targets[p]))
    run.state, metrics = setup.train_step(run.state, batch, run.dropout_key)
    loss_sum = loss_sum + metrics['loss']
    grad_norm_sum = grad_norm_sum + metrics['grad_norm']
    loop.position += 1
    run.host_step += 1
    hooks.on_step(loop.epoch, loop.position, steps)
    interrupted = hooks.stop_requested()
    if loop.position < steps and (
        interrupted or run.host_step % config.save_every == 0):
      loop.loss_sum, loop.grad_norm_sum = float(loss_sum), float(
          grad_norm_sum)
      loop.seconds = time.perf_counter() - start
      _save(setup, run, _valid_loss(setup, run.state.params))
      if interrupted:
        hooks.on_message(f'Saved step {run.host_step}.')
        run.stopped = 'interrupted'
        break
  return loss_sum, grad_norm_sum, start, metrics, interrupted


def _end_epoch(setup: _Setup, run: RunState, hooks: TrainHooks, loss_sum,
               grad_norm_sum, start: float, metrics: dict[str, Any],
               interrupted: bool) -> bool:
  """Validates, logs and checkpoints the finished epoch; True to stop."""
  config = setup.config
  _check_finite(run)
  seconds = time.perf_counter() - start
  valid_loss = _valid_loss(setup, run.state.params)
  steps = setup.steps_per_epoch
  record = {
      'epoch': run.loop.epoch + 1,
      'step': run.host_step,
      'train_loss': float(loss_sum) / steps,
      'valid_loss': None if math.isnan(valid_loss) else valid_loss,
      'valid_bpc': (None if math.isnan(valid_loss)
                    else valid_loss / math.log(2)),
      'lr': float(metrics['lr']),
      'grad_norm': float(grad_norm_sum) / steps,
      'seconds': seconds,
      'chars_per_s': steps * config.batch_size * config.seq_length / seconds,
  }
  loop = run.loop = LoopState(epoch=run.loop.epoch + 1,
                              best_valid_loss=run.loop.best_valid_loss,
                              bad_epochs=run.loop.bad_epochs)
  if not math.isnan(valid_loss):
    if valid_loss < loop.best_valid_loss:
      loop.best_valid_loss, loop.bad_epochs = valid_loss, 0
    else:
      loop.bad_epochs += 1
  record['best_valid_loss'] = loop.best_valid_loss
  # Log first: a kill between the two leaves a line that the resumed run
  # drops and writes again, never a finished epoch without its line.
  if setup.primary:
    append_jsonl(setup.log_path, record)
  _save(setup, run, valid_loss)
  run.history.append(record)
  hooks.on_epoch(record)
  if setup.make_plot and setup.primary:
    plot_losses(config.workdir)
  if interrupted:
    run.stopped = 'interrupted'
    return True
  if config.patience and loop.bad_epochs >= config.patience:
    hooks.on_message(
        f'Early stop: valid loss has not improved for {loop.bad_epochs} '
        f'epochs (best {loop.best_valid_loss:.4f}).')
    run.stopped = 'early_stopped'
    return True
  return False


def _tune_at_end(setup: _Setup, ngram_order: int, hooks: TrainHooks
                 ) -> tuple[InferenceConfig | None, dict[str, Any] | None]:
  """Tunes the best checkpoint on the corpus the run already holds."""
  workdir = setup.config.workdir
  if jax.process_count() > 1:
    # Restoring inside a multi-process runtime waits on every process.
    hooks.on_message('Inference not tuned in a multi-process run: tune it in '
                     f'one process with tune_run({workdir!r}).')
    return None, None
  return tune_run(workdir, setup.corpus_path, ngram_order, 'best',
                  hooks.on_message, split=setup.data)
