"""What a run's checkpoint holds; saving and loading a trained model.

Two kinds of checkpoint step share one format (orbax `state` + JSON `meta`,
see `checkpointing`): a training run's (`train`: the whole train state, so
it can resume) and a model's alone (`save_model`: parameters, shape and
vocabulary, from a training loop of your own). `load_model`, `evaluate`,
`sample` and the tuning read both.
"""

import dataclasses
import math
import operator
import os
from typing import Any, Callable

from absl import logging
import jax
import numpy as np

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.data.corpus import load_clean_text
from jaylyrics_jax.data.corpus import sha256_of
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.runs import checkpoints as checkpointing
from jaylyrics_jax.training.steps import create_train_state
from jaylyrics_jax.training.steps import make_optimizer
from jaylyrics_jax.training.steps import TrainState

# The checkpoint item holding the tuned inference settings of a step.
INFERENCE_ITEM = 'inference'
# meta['kind'] of a step written by `save_model` (a training run's has none).
MODEL_ONLY = 'model'


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
  """What a checkpoint step says of itself: its JSON `meta` item.

  A training run's step has a train_config and its loop position; a
  `save_model` step has kind=MODEL_ONLY and, instead of a train_config, the
  valid_fraction of its corpus. valid_loss: nats per character, None when
  unknown (never NaN: JSON has none).
  """
  vocab: tuple[str, ...]
  model_config: ModelConfig
  train_config: TrainConfig | None = None
  corpus_path: str | None = None
  corpus_sha256: str | None = None
  valid_loss: float | None = None
  loop: dict[str, Any] | None = None
  valid_fraction: float | None = None
  kind: str | None = None

  def __post_init__(self):
    if self.valid_loss is not None and math.isnan(self.valid_loss):
      object.__setattr__(self, 'valid_loss', None)

  @property
  def metric(self) -> float:
    """The checkpoint's rank for which='best' (lower is better)."""
    return math.inf if self.valid_loss is None else float(self.valid_loss)

  def to_dict(self) -> dict[str, Any]:
    """The JSON form, as `checkpoints.save` writes it."""
    out = {
        'vocab': list(self.vocab),
        'corpus_sha256': self.corpus_sha256,
        'corpus_path': self.corpus_path,
        'model_config': self.model_config.to_dict(),
        'train_config': (None if self.train_config is None
                         else self.train_config.to_dict()),
        'valid_loss': self.valid_loss,
    }
    if self.kind is not None:
      out['kind'] = self.kind
    if self.loop is not None:
      out['loop'] = self.loop
    if self.valid_fraction is not None:
      out['valid_fraction'] = self.valid_fraction
    return out

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'CheckpointMeta':
    train_config = d.get('train_config')
    return cls(vocab=tuple(d['vocab']),
               model_config=ModelConfig.from_dict(d['model_config']),
               train_config=(None if train_config is None
                             else TrainConfig.from_dict(train_config)),
               corpus_path=d.get('corpus_path'),
               corpus_sha256=d.get('corpus_sha256'),
               valid_loss=d.get('valid_loss'), loop=d.get('loop'),
               valid_fraction=d.get('valid_fraction'), kind=d.get('kind'))

  @property
  def split_fraction(self) -> float:
    """The share of the corpus, at its end, held out for validation."""
    if self.train_config is not None:
      return self.train_config.valid_fraction
    return self.valid_fraction


def checkpoint_tree(state: TrainState, dropout_key: jax.Array) -> dict[str, Any]:
  """The arrays saved at a step: the train state and the raw dropout key."""
  return {'train': state, 'dropout_key': jax.random.key_data(dropout_key)}


def abstract_tree(meta: dict[str, Any]) -> dict[str, Any]:
  """Shapes and dtypes of the arrays of the step described by `meta`.

  A training run's step holds `checkpoint_tree`; a `save_model` step holds
  {'params': params}.
  """
  model_config = ModelConfig.from_dict(meta['model_config'])
  # An explicit one-device sharding: orbax refuses to restore a checkpoint
  # written by several processes into a target without one.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with_sharding = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                 sharding=device)
  if meta.get('kind') == MODEL_ONLY:
    return jax.tree.map(with_sharding, {'params': jax.eval_shape(
        lambda: init_params(model_config, jax.random.key(0)))})
  train_config = TrainConfig.from_dict(meta['train_config'])
  # The schedule's steps_per_epoch does not change the tree's structure.
  tx = make_optimizer(train_config, steps_per_epoch=1)

  def build():
    state = create_train_state(model_config, tx, train_config.batch_size,
                               jax.random.key(0))
    return checkpoint_tree(state, jax.random.key(0))

  return jax.tree.map(with_sharding, jax.eval_shape(build))


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A trained model rebuilt from its checkpoint alone.

  meta['inference'] holds the inference settings tuned for this step (see
  `jaylyrics_jax.scoring.tuning`), or None before they are tuned.
  """
  params: Any
  model_config: ModelConfig
  vocab: Vocabulary
  meta: dict[str, Any]
  step: int

  @property
  def valid_loss(self) -> float | None:
    """The step's validation loss in nats per character, None if unknown."""
    return self.meta.get('valid_loss')


def load_model(workdir: str, which: str = 'best', step: int | None = None,
               warn: Callable[[str], None] = logging.warning) -> LoadedModel:
  """Loads a model from the checkpoints of `workdir`.

  Args:
    workdir: a folder `train` or `save_model` wrote.
    which: 'best' (lowest valid loss) or 'latest'.
    step: load exactly this step instead.
    warn: called with a message for every damaged checkpoint skipped (the
      next good one is loaded).
  Returns:
    A `LoadedModel`. Raises a `JaylyricsError` when there is no good
    checkpoint or `which` is neither 'best' nor 'latest'.
  """
  tree, meta, restored_step = checkpointing.restore(
      workdir, abstract_tree, which=which, step=step, warn=warn,
      extra_items=(INFERENCE_ITEM,))
  params = tree['params'] if meta.get('kind') == MODEL_ONLY else tree[
      'train'].params
  return LoadedModel(params=params,
                     model_config=ModelConfig.from_dict(meta['model_config']),
                     vocab=Vocabulary(tuple(meta['vocab'])), meta=meta,
                     step=restored_step)


def save_model(workdir: str, params: Any, model_config: ModelConfig,
               vocab: Vocabulary, *, step: int = 0,
               valid_loss: float | None = None,
               corpus_path: str | None = None, valid_fraction: float = 0.1,
               keep: int = 5) -> int:
  """Saves a model trained in any loop so that `load_model` can read it.

  The step holds the parameters, the model's shape and its vocabulary, so
  `load_model(workdir)`, `python -m experiments.sample --workdir=...` and
  `python -m experiments.evaluate` use it as they use a run of `train` (no
  optimizer state is kept: it cannot be resumed by `train`).

  Args:
    workdir: the folder to write into (created); its `checkpoints/` may hold
      other steps, which are kept (the `keep` newest and the best).
    params: the parameters, e.g. `state.params` (not yet donated).
    model_config: their shape; `vocab_size=0` is taken as `vocab.size`.
    vocab: the vocabulary the model was trained with.
    step: the checkpoint's step number (a new one in this workdir).
    valid_loss: its validation loss in nats per character, if known; the
      step with the lowest is what `load_model(which='best')` loads.
    corpus_path: the raw lyrics file the model was trained on, if it should
      be usable for the n-gram mixture: then `tune_run(workdir)` can tune
      the default inference on its last `valid_fraction`.
    valid_fraction: the share of that corpus, at its end, held out.
    keep: the newest steps kept (the best by valid loss is kept too).
  Returns:
    The step saved.
  """
  if model_config.vocab_size == 0:
    model_config = dataclasses.replace(model_config, vocab_size=vocab.size)
  if model_config.vocab_size != vocab.size:
    raise JaylyricsError(
        f'model_config has vocab_size={model_config.vocab_size} but the vocab '
        f'has {vocab.size} characters; pass the vocabulary the model was '
        'trained with.')
  expected = jax.eval_shape(
      lambda: init_params(model_config, jax.random.key(0)))
  shapes = lambda tree: jax.tree.map(lambda x: tuple(np.shape(x)), tree)
  try:
    same = shapes(params) == shapes(expected)
  except (TypeError, ValueError):
    same = False
  if not same:
    raise JaylyricsError(
        'params do not have the shapes of CharLM(model_config): pass the '
        "parameters themselves (the dict inside {'params': ...}) and the "
        'model_config they were built with.')
  try:
    index = operator.index(step)  # int, numpy or 0-d jax integers.
  except TypeError:
    index = -1
  if index < 0:
    raise JaylyricsError(f'step={step!r}: must be an integer >= 0.')
  step = index
  if step in checkpointing.saved_steps(workdir):
    raise JaylyricsError(
        f'Checkpoint step {step} is already in {workdir!r}: pass a new '
        'step=, or another workdir=.')
  if not 0.0 <= valid_fraction < 1.0:
    raise JaylyricsError(
        f'valid_fraction={valid_fraction!r}: must be in [0, 1).')
  corpus_sha256 = None
  if corpus_path is not None:
    text = load_clean_text(corpus_path)
    corpus_sha256 = sha256_of(text.encode('utf-8'))
    corpus_path = os.path.abspath(corpus_path)
  meta = CheckpointMeta(vocab=vocab.chars, model_config=model_config,
                        corpus_path=corpus_path, corpus_sha256=corpus_sha256,
                        valid_loss=valid_loss, valid_fraction=valid_fraction,
                        kind=MODEL_ONLY)
  manager = checkpointing.open_manager(workdir, keep=keep)
  try:
    checkpointing.save(manager, step, {'params': params}, meta.to_dict(),
                       meta.metric)
  finally:
    manager.close()
  return step
