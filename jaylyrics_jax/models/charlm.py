"""`CharLM`: embedding -> stacked RNN scanned over time -> softmax logits."""

from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.models.fused import WindowLSTM
from jaylyrics_jax.models.pointer import empty_memory
from jaylyrics_jax.models.pointer import PointerMemory
from jaylyrics_jax.models.pointer import PointerMixture
from jaylyrics_jax.models.pointer import projected

_CELLS = {
    'lstm': nn.OptimizedLSTMCell,
    'gru': nn.GRUCell,
    'rnn': nn.SimpleCell,
}

# One entry per layer: an LSTM carry is (c, h), a GRU or RNN carry is h;
# with attention (attn_length > 0) a `PointerMemory` follows the layers.
Carries = tuple[Any, ...]


class TrainedModel(Protocol):
  """A trained model as the scoring and writing code reads it.

  `load_model`'s `LoadedModel` is one; any object with these attributes is.
  valid_loss: its validation loss in nats per character (None if unknown).
  """
  params: Any
  model_config: ModelConfig
  vocab: Vocabulary
  step: int

  @property
  def valid_loss(self) -> float | None: ...


def zero_carries(config: ModelConfig, batch_size: int,
                 generation: bool = False) -> Carries:
  """Fresh all-zero carries: a tuple with one entry per layer.

  An LSTM layer's entry is the pair `(c, h)`, each <float32>[batch,
  rnn_size]; a GRU or RNN layer's is `h` <float32>[batch, rnn_size]. With
  attention (`attn_length > 0`) a `PointerMemory` follows the layers (with
  generation=True a `ProjectedMemory`: the same outputs with fixed
  parameters, each entry's key projected once; see `models/pointer.py`).
  Always build a new one: a carry passed to a donating step is deleted.
  """
  cell = _CELLS[config.cell](config.rnn_size, parent=None)
  # initialize_carry reads only shape[:-1] as the batch: (batch,) would drop it.
  shape = (batch_size, config.rnn_size)
  layers = tuple(cell.initialize_carry(jax.random.key(0), shape)
                 for _ in range(config.num_layers))
  if config.attn_length:
    memory = empty_memory(batch_size, config.attn_length, config.rnn_size)
    if generation:
      memory = projected(memory, config.attn_size)
    return layers + (memory,)
  return layers


def last_hidden(carries: Carries) -> jax.Array:
  """<float32>[batch, rnn_size]: the top layer's hidden state."""
  layers = [c for c in carries if not isinstance(c, PointerMemory)]
  top = layers[-1]
  return top[1] if isinstance(top, tuple) else top


class CharLM(nn.Module):
  """Character language model: embedding, stacked RNN, softmax output.

  A Flax Linen module; its parameters are a plain dict (see `init_params`),
  passed as the variables `{'params': params}`:

      model = CharLM(config)                # config.vocab_size >= 1
      params = init_params(config, jax.random.key(0))
      logits, carries = model.apply({'params': params}, tokens,
                                    zero_carries(config, tokens.shape[0]))

  Attributes:
    config: the model's shape; `vocab_size` must be set (>= 1).
  """
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens: jax.Array, carries: Carries,
               train: bool = False, return_hidden: bool = False,
               return_softmax_logits: bool = False, fused: bool = False):
    """Runs the model over `tokens`, starting from `carries`.

    Args:
      tokens: <int32>[batch, time] character ids.
      carries: the state before the first token, from `zero_carries(config,
        batch)` or a previous call: a tuple with one entry per layer, an
        LSTM layer's being `(c, h)` with each <float32>[batch, rnn_size], a
        GRU or RNN layer's `h` <float32>[batch, rnn_size]; attention models
        add a `PointerMemory` as the last entry.
      train: apply dropout; then pass `rngs={'dropout': key}` to `apply`.
      return_hidden: also return the top layer's outputs.
      return_softmax_logits: also return the output layer's own logits
        (before any attention/copy mixing).
      fused: the train step's fused path (`ModelConfig.impl == 'fused'`):
        LSTM layers run as `fused.WindowLSTM` (same parameters and
        results), and the output layer is left to the caller: returns
        `(features, carries)`, features <float32>[batch, time, rnn_size]
        being the output layer's input, for `fused.dense_cross_entropy`
        with `params['output']`. Not with attention.

    Returns:
      `(logits, carries)`, then `hidden` if `return_hidden`, then
      `softmax_logits` if `return_softmax_logits`, in that order:
        logits: <float32>[batch, time, vocab_size], unnormalised scores of
          the next character (with `attn_length > 0` the log-probabilities
          of the attention/copy mixture, see `pointer.py`);
        carries: the state after the last token, the same structure as the
          input's: pass it to the next call to continue the text;
        hidden: <float32>[batch, time, rnn_size], the top layer's outputs
          (its `h` at every step; the neural cache's keys);
        softmax_logits: <float32>[batch, time, vocab_size].
    """
    cfg = self.config
    cfg.require_vocab()
    init = {}
    if cfg.embed_init_std:
      init['embedding_init'] = nn.initializers.normal(cfg.embed_init_std)
    x = nn.Embed(cfg.vocab_size, cfg.embedding_size, name='embed',
                 **init)(tokens)
    new_carries = []
    for i in range(cfg.num_layers):
      if i > 0:
        x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
      # Parameters live under the cell's name; nn.RNN's own name is unused.
      if fused and cfg.cell == 'lstm' and x.shape[1] > 1:
        carry, x = WindowLSTM(cfg.rnn_size, name=f'cell{i}')(carries[i], x)
        new_carries.append(carry)
        continue
      cell = _CELLS[cfg.cell](cfg.rnn_size, name=f'cell{i}')
      if x.shape[1] == 1:
        # One step (sampling): the cell alone, without a scan of length 1.
        carry, y = cell(carries[i], x[:, 0])
        x = y[:, None]
      else:
        carry, x = nn.RNN(cell)(x, initial_carry=carries[i], return_carry=True)
      new_carries.append(carry)
    hidden = x
    x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
    if fused:
      if cfg.attn_length:
        raise ValueError('fused=True: not with attention (attn_length > 0).')
      return x, tuple(new_carries)
    logits = nn.Dense(cfg.vocab_size, name='output')(x)
    softmax_logits = logits
    if cfg.attn_length:
      # Log-probabilities of the copy mixture: valid logits for every caller.
      logits, memory = PointerMixture(cfg.attn_length, cfg.attn_size,
                                      cfg.attn_min_distance, name='pointer')(
                                          hidden, tokens, logits,
                                          carries[cfg.num_layers])
      new_carries.append(memory)
    out = (logits, tuple(new_carries))
    if return_hidden:
      out += (hidden,)
    if return_softmax_logits:  # The output layer's own, before any copying.
      out += (softmax_logits,)
    return out


def init_params(config: ModelConfig, key: jax.Array) -> Any:
  """Initial parameters for `CharLM(config)`: a dict, without 'params' around.

  Names: 'embed', 'cell0' ... 'cell{num_layers - 1}', 'output' (and
  'pointer' with attention).
  """
  config.require_vocab()
  model = CharLM(config)
  tokens = jnp.zeros((1, 1), jnp.int32)
  return model.init(key, tokens, zero_carries(config, 1))['params']
