"""The fused train-step kernels equal the reference path (ModelConfig.impl)."""

import dataclasses
import glob
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaylyrics_jax as jl
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models import fused
from jaylyrics_jax.training.steps import create_train_state
from jaylyrics_jax.training.steps import make_optimizer
from jaylyrics_jax.training.steps import make_train_step

TOL = dict(rtol=1e-5, atol=1e-5)
# Whole train steps on a GPU, matmuls pinned to float32 ('highest', no
# TF32): its sums still run in another order than the reference's (tree
# reductions; the embedding gradient's scatter-add adds in no fixed order),
# and six Adam steps carry those roundings on, dividing by sqrt(v) where
# gradients are small. At the default precision an H200 gave 1.5e-4
# relative. A wrong fused step is off by far more (the learning rate is
# 1e-2 a step).
GPU_STEP_TOL = dict(rtol=1e-3, atol=1e-4)


def _close(a, b, tol=None):
  tol = tol or TOL
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


@pytest.mark.parametrize('batch, time, features, hidden',
                         [(3, 7, 5, 8), (2, 2, 4, 16), (4, 16, 10, 32)])
def test_window_lstm_equals_flax_rnn_with_gradients(batch, time, features,
                                                    hidden):
  keys = jax.random.split(jax.random.key(0), 6)
  x = jax.random.normal(keys[0], (batch, time, features))
  carry = (jax.random.normal(keys[1], (batch, hidden)),
           jax.random.normal(keys[2], (batch, hidden)))
  reference = nn.RNN(nn.OptimizedLSTMCell(hidden))
  window = fused.WindowLSTM(hidden)
  params = reference.init(keys[3], x, initial_carry=carry)['params']['cell']
  # Biases are zero at init: make them matter.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(keys[4], p.shape),
                        params)

  def run_reference(p, c, x):
    return reference.apply({'params': {'cell': p}}, x, initial_carry=c,
                           return_carry=True)

  def run_window(p, c, x):
    return window.apply({'params': p}, c, x)

  out_ref = jax.jit(run_reference)(params, carry, x)
  out_win = jax.jit(run_window)(params, carry, x)
  _close(out_win, out_ref)
  # Gradients through outputs and the final carry, every input.
  cot = jax.tree.map(
      lambda a: jax.random.normal(keys[5], a.shape), out_ref)
  grad_ref = jax.jit(lambda *a: jax.vjp(run_reference, *a)[1](cot))(
      params, carry, x)
  grad_win = jax.jit(lambda *a: jax.vjp(run_window, *a)[1](cot))(
      params, carry, x)
  _close(grad_win, grad_ref)


def test_window_lstm_initialises_like_the_cell():
  x = jnp.ones((2, 5, 6))
  carry = (jnp.zeros((2, 8)), jnp.zeros((2, 8)))
  window = fused.WindowLSTM(8).init(jax.random.key(3), carry, x)['params']
  cell = nn.OptimizedLSTMCell(8).init(jax.random.key(3), carry,
                                      x[:, 0])['params']
  assert jax.tree.structure(window) == jax.tree.structure(cell)
  jax.tree.map(np.testing.assert_array_equal, window, cell)


def test_dense_cross_entropy_equals_optax_with_gradients():
  keys = jax.random.split(jax.random.key(1), 4)
  x = jax.random.normal(keys[0], (3, 5, 8))
  kernel = jax.random.normal(keys[1], (8, 37))
  bias = jax.random.normal(keys[2], (37,))
  targets = jax.random.randint(keys[3], (3, 5), 0, 37)

  def reference(x, kernel, bias):
    logits = nn.Dense(37).apply({'params': {'kernel': kernel, 'bias': bias}},
                                x)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, targets).mean()

  def fast(x, kernel, bias):
    return fused.dense_cross_entropy(x, kernel, bias, targets)

  args = (x, kernel, bias)
  ref = jax.jit(jax.value_and_grad(reference, argnums=(0, 1, 2)))(*args)
  got = jax.jit(jax.value_and_grad(fast, argnums=(0, 1, 2)))(*args)
  _close(got, ref)


@pytest.mark.parametrize('dropout', [0.0, 0.2])
def test_fused_train_steps_equal_the_reference(dropout):
  model = ModelConfig(vocab_size=29, embedding_size=6, rnn_size=16,
                      num_layers=2, dropout=dropout)
  config = TrainConfig(batch_size=4, seq_length=9, learning_rate=1e-2)
  tx = make_optimizer(config, 100)
  ids = np.random.default_rng(0).integers(0, 29, (6, 4, 10)).astype(np.int32)
  results = {}
  for impl in ('flax', 'fused'):
    m = dataclasses.replace(model, impl=impl)
    # Traced under the context: no TF32 matmuls on a GPU, on either path.
    with jax.default_matmul_precision('highest'):
      step = make_train_step(m, tx)
      state = create_train_state(m, tx, 4, jax.random.key(0))
      metrics = []
      for window in ids:  # Carries passed on: stateful truncated BPTT.
        state, out = step(state, (window[:, :-1], window[:, 1:]),
                          jax.random.key(7))
        metrics.append((out['loss'], out['grad_norm']))
    results[impl] = (metrics, state.params, state.carry)
  _close(results['fused'], results['flax'],
         GPU_STEP_TOL if jax.default_backend() == 'gpu' else TOL)
  assert results['fused'][0][-1][0] < results['fused'][0][0][0]


def test_impl_is_checked_and_optional_in_saved_configs():
  with pytest.raises(JaylyricsError, match='impl='):
    ModelConfig(vocab_size=10, impl='cuda')
  saved = ModelConfig(vocab_size=10).to_dict()
  del saved['impl']  # A checkpoint written before the field existed.
  assert ModelConfig.from_dict(saved) == ModelConfig(vocab_size=10)
  assert ModelConfig().impl == 'fused'


def test_a_checkpoint_saved_before_impl_existed_loads(tmp_path):
  config = ModelConfig(vocab_size=5, embedding_size=4, rnn_size=8,
                       num_layers=1)
  jl.save_model(str(tmp_path), jl.init_params(config, jax.random.key(0)),
                config, jl.Vocabulary(tuple('abcd') + (' ',)))
  (meta_path,) = glob.glob(str(tmp_path / 'checkpoints' / '*' / 'meta' /
                               'metadata'))
  with open(meta_path, encoding='utf-8') as f:
    meta = json.load(f)
  del meta['model_config']['impl']  # As written before the field existed.
  with open(meta_path, 'w', encoding='utf-8') as f:
    json.dump(meta, f)
  assert jl.load_model(str(tmp_path)).model_config == config
