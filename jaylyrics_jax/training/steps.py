"""Optimizer, train state and the jitted train and eval steps."""

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.models.charlm import Carries
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.models.fused import dense_cross_entropy


@flax.struct.dataclass
class TrainState:
  """Everything a train step reads and writes.

  `carry` is the hidden state carried from one window to the next inside an
  epoch; `nonfinite_step` is the first step whose loss or gradient was NaN or
  Inf (-1 while none was), recorded on the device so the loop need not sync.
  """
  params: Any
  opt_state: Any
  carry: Carries
  step: jax.Array
  nonfinite_step: jax.Array


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
  """The original's decay: lr * decay_rate ** epoch, constant within an epoch."""
  def schedule(count):
    epoch = count // steps_per_epoch
    return config.learning_rate * config.decay_rate ** epoch.astype(jnp.float32)
  return schedule


def make_optimizer(config: TrainConfig,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  """Global-norm clipping, then Adam; the current lr is kept in the state.

  What `train` uses (and what its checkpoints hold). `make_train_step` and
  `create_train_state` take any `optax.GradientTransformation` as well, e.g.
  `optax.chain(optax.clip_by_global_norm(5.0), optax.adamw(schedule))`.
  """
  def chain(learning_rate):
    return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                       optax.adam(learning_rate))
  return optax.inject_hyperparams(chain)(
      learning_rate=learning_rate_schedule(config, steps_per_epoch))


def create_train_state(model_config: ModelConfig,
                       tx: optax.GradientTransformation, batch_size: int,
                       init_key: jax.Array) -> TrainState:
  """Initial parameters, optimizer state and zero carries."""

  # One jitted program instead of dozens of small eager ones: with the
  # persistent compilation cache warm, start-up loads one executable.
  @jax.jit
  def create(key):
    params = init_params(model_config, key)
    return TrainState(params=params, opt_state=tx.init(params),
                      carry=zero_carries(model_config, batch_size),
                      step=jnp.zeros((), jnp.int32),
                      nonfinite_step=jnp.full((), -1, jnp.int32))

  return create(init_key)


def _injected_learning_rate(opt_state: Any) -> jax.Array | None:
  """The learning rate an `optax.inject_hyperparams` state holds, or None.

  Searched anywhere in the state tree (outermost first), so it is found
  whether the whole chain or one part of it was injected.
  """
  def has_lr(x):
    hyperparams = getattr(x, 'hyperparams', None)
    return isinstance(hyperparams, dict) and 'learning_rate' in hyperparams

  for node in jax.tree.leaves(opt_state, is_leaf=has_lr):
    if has_lr(node):
      return node.hyperparams['learning_rate']
  return None


def make_train_step(model_config: ModelConfig,
                    tx: optax.GradientTransformation,
                    schedule: optax.Schedule | None = None):
  """Returns `train_step(state, batch, key) -> (state, metrics)`, jitted.

  Args:
    model_config: the model's shape (`vocab_size` set).
    tx: any optax optimizer; `state.opt_state` must be its state (as
      `create_train_state(model_config, tx, ...)` makes it).
    schedule: optional learning-rate schedule of `tx`, only for logging:
      metrics['lr'] is `schedule(state.step)`.

  `batch` is (inputs, targets), each <int32>[B, T]; `key` is the run's dropout
  key, folded with the step inside so every step draws fresh masks and a
  resumed run draws the same ones. The old state is donated.

  metrics: 'loss' (mean cross-entropy, nats), 'grad_norm' (before clipping)
  and, when known, 'lr': the learning rate this step used, read from an
  `optax.inject_hyperparams` state anywhere in `opt_state` (as
  `make_optimizer`'s), else from `schedule`; without either there is no
  'lr' (a plain `optax.adam(1e-3)` works and logs none).
  """
  model_config.require_vocab()
  model = CharLM(model_config)

  aux = model_config.softmax_loss_weight if model_config.attn_length else 0.0
  # The fused kernels (fused.py) where they apply; attention models keep the
  # reference path (their loss mixes the softmax with the copy distribution).
  fused = model_config.impl == 'fused' and not model_config.attn_length

  def fused_loss_fn(params, carry, inputs, targets, key):
    features, new_carry = model.apply(
        {'params': params}, inputs, carry, train=True, rngs={'dropout': key},
        fused=True)
    out = params['output']
    return dense_cross_entropy(features, out['kernel'], out['bias'],
                               targets), new_carry

  def loss_fn(params, carry, inputs, targets, key):
    logits, new_carry, softmax_logits = model.apply(
        {'params': params}, inputs, carry, train=True, rngs={'dropout': key},
        return_softmax_logits=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, targets).mean()
    if aux:
      extra = optax.softmax_cross_entropy_with_integer_labels(
          softmax_logits, targets).mean()
      # Value: the model's own loss (what is logged); gradient: plus
      # aux * the softmax-alone loss's.
      loss = loss + aux * (extra - jax.lax.stop_gradient(extra))
    return loss, new_carry

  grad_fn = jax.value_and_grad(fused_loss_fn if fused else loss_fn,
                               has_aux=True)

  @functools.partial(jax.jit, donate_argnums=(0,))
  def train_step(state: TrainState, batch, key):
    inputs, targets = batch
    (loss, carry), grads = grad_fn(state.params, state.carry, inputs, targets,
                                   jax.random.fold_in(key, state.step))
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    nonfinite_step = jnp.where((state.nonfinite_step < 0) & ~finite,
                               state.step, state.nonfinite_step)
    new_state = state.replace(params=params, opt_state=opt_state, carry=carry,
                              step=state.step + 1,
                              nonfinite_step=nonfinite_step)
    metrics = {'loss': loss, 'grad_norm': grad_norm}
    lr = _injected_learning_rate(opt_state)
    if lr is None and schedule is not None:
      lr = jnp.asarray(schedule(state.step), jnp.float32)
    if lr is not None:
      metrics['lr'] = lr
    return new_state, metrics

  return train_step
