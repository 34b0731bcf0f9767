"""CharLM shapes and the carry contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.models.charlm import last_hidden
from jaylyrics_jax.models.charlm import zero_carries


@pytest.mark.parametrize('cell', ['lstm', 'gru', 'rnn'])
def test_shapes_for_every_cell(cell):
  config = ModelConfig(vocab_size=23, embedding_size=8, rnn_size=16,
                       num_layers=2, cell=cell)
  tokens = jnp.zeros((3, 7), jnp.int32)
  (logits, carries), variables = CharLM(config).init_with_output(
      jax.random.key(0), tokens, zero_carries(config, 3))
  assert logits.shape == (3, 7, 23)
  assert len(carries) == 2
  assert last_hidden(carries).shape == (3, 16)
  params = variables['params']
  assert set(params) == {'embed', 'cell0', 'cell1', 'output'}
  assert params['embed']['embedding'].shape == (23, 8)
  assert params['output']['kernel'].shape == (16, 23)


@pytest.mark.parametrize('cell', ['lstm', 'gru'])
def test_step_by_step_equals_whole_sequence(cell):
  config = ModelConfig(vocab_size=11, embedding_size=4, rnn_size=8,
                       num_layers=2, cell=cell)
  apply = jax.jit(CharLM(config).apply)
  params = init_params(config, jax.random.key(1))
  tokens = jax.random.randint(jax.random.key(2), (2, 9), 0, 11)
  whole, whole_carry = apply({'params': params}, tokens,
                             zero_carries(config, 2))
  carry, parts = zero_carries(config, 2), []
  for t in range(9):
    logits, carry = apply({'params': params}, tokens[:, t:t + 1], carry)
    parts.append(logits)
  np.testing.assert_allclose(jnp.concatenate(parts, axis=1), whole,
                             rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               carry, whole_carry)


def test_dropout_only_in_training():
  config = ModelConfig(vocab_size=11, embedding_size=4, rnn_size=8,
                       num_layers=2, dropout=0.5)
  model = CharLM(config)
  params = init_params(config, jax.random.key(1))
  tokens = jnp.ones((2, 5), jnp.int32)
  run = lambda train, key: model.apply(
      {'params': params}, tokens, zero_carries(config, 2), train=train,
      rngs={'dropout': key})[0]
  np.testing.assert_array_equal(run(False, jax.random.key(0)),
                                run(False, jax.random.key(1)))
  assert not np.allclose(run(True, jax.random.key(0)),
                         run(True, jax.random.key(1)))


@pytest.mark.parametrize('field, value', [
    ('rnn_size', 0), ('num_layers', -1), ('embedding_size', 0),
    ('cell', 'transformer'), ('dropout', 1.0)])
def test_bad_model_config(field, value):
  with pytest.raises(JaylyricsError, match=f'{field}='):
    ModelConfig(vocab_size=10, **{field: value})


def test_embedding_init_std():
  config = ModelConfig(vocab_size=500, embedding_size=64, embed_init_std=1.0)
  table = init_params(config, jax.random.key(0))['embed']['embedding']
  assert abs(float(jnp.std(table)) - 1.0) < 0.02
  default = init_params(ModelConfig(vocab_size=500, embedding_size=64),
                        jax.random.key(0))['embed']['embedding']
  assert abs(float(jnp.std(default)) - 1 / 8) < 0.01
