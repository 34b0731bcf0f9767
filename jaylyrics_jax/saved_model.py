"""What a run's checkpoint holds, and loading a trained model from one."""

import dataclasses
from typing import Any, Callable

from absl import logging
import jax

from jaylyrics_jax import checkpointing
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.training import create_train_state
from jaylyrics_jax.training import make_optimizer
from jaylyrics_jax.training import TrainState
from jaylyrics_jax.vocab import Vocabulary

# The checkpoint item holding the tuned inference settings of a step.
INFERENCE_ITEM = 'inference'


def checkpoint_tree(state: TrainState, dropout_key: jax.Array) -> dict[str, Any]:
  """The arrays saved at a step: the train state and the raw dropout key."""
  return {'train': state, 'dropout_key': jax.random.key_data(dropout_key)}


def abstract_tree(meta: dict[str, Any]) -> dict[str, Any]:
  """Shapes and dtypes of `checkpoint_tree` for the run described by `meta`."""
  model_config = ModelConfig.from_dict(meta['model_config'])
  train_config = TrainConfig.from_dict(meta['train_config'])
  # The schedule's steps_per_epoch does not change the tree's structure.
  tx = make_optimizer(train_config, steps_per_epoch=1)

  def build():
    state = create_train_state(model_config, tx, train_config.batch_size,
                               jax.random.key(0))
    return checkpoint_tree(state, jax.random.key(0))

  # An explicit one-device sharding: orbax refuses to restore a checkpoint
  # written by several processes into a target without one.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      jax.eval_shape(build))


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A trained model rebuilt from its checkpoint alone.

  meta['inference'] holds the inference settings tuned for this step (see
  `jaylyrics_jax.inference`), or None before they are tuned.
  """
  params: Any
  model_config: ModelConfig
  vocab: Vocabulary
  meta: dict[str, Any]
  step: int


def load_model(workdir: str, which: str = 'best', step: int | None = None,
               warn: Callable[[str], None] = logging.warning) -> LoadedModel:
  """Loads the best (or latest, or a given step's) good checkpoint."""
  tree, meta, restored_step = checkpointing.restore(
      workdir, abstract_tree, which=which, step=step, warn=warn,
      extra_items=(INFERENCE_ITEM,))
  return LoadedModel(params=tree['train'].params,
                     model_config=ModelConfig.from_dict(meta['model_config']),
                     vocab=Vocabulary(tuple(meta['vocab'])), meta=meta,
                     step=restored_step)
