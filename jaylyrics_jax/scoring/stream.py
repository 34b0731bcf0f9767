"""Bits per character of a text, scored as one continuous stream.

The stream starts from a single ' ' context and the carry is passed along from
chunk to chunk, so the score does not depend on where chunks are cut. Targets
outside the vocabulary are left out of the average and reported as the
out-of-vocabulary rate; unknown input characters are fed as the most frequent
character (id 0).
"""

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.data.corpus import reverse_lines
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import zero_carries

EVAL_CHUNK = 256


@functools.lru_cache(maxsize=16)
def make_eval_step(model_config: ModelConfig):
  """Returns `eval_step(params, carry, inputs, targets, mask)`, jitted.

  Returns ({'nll_sum', 'count'}, carry): the summed negative log-likelihood
  (nats) of the targets where `mask` is true, and how many there were.
  Cached per model shape so every caller shares one compiled function.
  """
  model = CharLM(model_config)

  @jax.jit
  def eval_step(params, carry, inputs, targets, mask):
    logits, carry = model.apply({'params': params}, inputs, carry)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    mask = mask.astype(nll.dtype)
    return {'nll_sum': jnp.sum(nll * mask), 'count': jnp.sum(mask)}, carry

  return eval_step


@functools.lru_cache(maxsize=16)
def make_score_step(model_config: ModelConfig):
  """Returns `score_step(params, carry, inputs, targets)`, jitted.

  Returns (nll <float32>[B, T] per position, hidden <float32>[B, T, H] of the
  top layer, carry): what the neural cache and the mixtures need.
  """
  model = CharLM(model_config)

  @jax.jit
  def score_step(params, carry, inputs, targets):
    logits, carry, hidden = model.apply({'params': params}, inputs, carry,
                                        return_hidden=True)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return nll, hidden, carry

  return score_step


@dataclasses.dataclass(frozen=True)
class StreamArrays:
  """inputs, targets: <int32>[N]; mask: <bool>[N], true where the target is known."""
  inputs: np.ndarray
  targets: np.ndarray
  mask: np.ndarray


def stream_arrays(text: str, vocab: Vocabulary) -> StreamArrays:
  """Inputs are ' ' followed by the text minus its last character."""
  context = ' ' if ' ' in vocab else vocab.chars[0]
  targets = vocab.encode(text, unknown='frequent')
  inputs = vocab.encode(context + text[:-1], unknown='frequent')
  return StreamArrays(inputs, targets, vocab.known_mask(text))


def _chunks(arrays: StreamArrays, chunk: int):
  """inputs, targets, mask zero-padded to whole chunks: <[C, 1, chunk]> each."""
  n = len(arrays.targets)
  padded = -(-n // chunk) * chunk
  pad = lambda a: np.pad(a, (0, padded - n)).reshape(-1, 1, chunk)
  return pad(arrays.inputs), pad(arrays.targets), pad(arrays.mask)


def stream_nll(params: Any, model_config: ModelConfig, arrays: StreamArrays,
               chunk: int = EVAL_CHUNK) -> tuple[float, int]:
  """(summed NLL in nats, number of scored characters) over the stream."""
  if not len(arrays.targets):
    return 0.0, 0
  inputs, targets, mask = _chunks(arrays, chunk)
  eval_step = make_eval_step(model_config)
  carry = zero_carries(model_config, 1)
  nll_sum, count = jnp.zeros(()), jnp.zeros(())
  for i in range(len(inputs)):
    metrics, carry = eval_step(params, carry, inputs[i], targets[i], mask[i])
    nll_sum, count = nll_sum + metrics['nll_sum'], count + metrics['count']
  # The only host sync: after every chunk was dispatched.
  return float(nll_sum), int(count)


def stream_outputs(params: Any, model_config: ModelConfig,
                   arrays: StreamArrays,
                   chunk: int = EVAL_CHUNK) -> tuple[np.ndarray, np.ndarray]:
  """Per position: NLL of the target <float64>[N] and top hidden <float32>[N, H].

  The same stream as `stream_nll` (same chunks, carry passed along), kept
  position by position for the neural cache and the mixtures.
  """
  n = len(arrays.targets)
  inputs, targets, _ = _chunks(arrays, chunk)
  score_step = make_score_step(model_config)
  carry = zero_carries(model_config, 1)
  nlls, hiddens = [], []
  for i in range(len(inputs)):
    nll, hidden, carry = score_step(params, carry, inputs[i], targets[i])
    nlls.append(nll[0])
    hiddens.append(hidden[0])
  nll = np.concatenate([np.asarray(x) for x in nlls])[:n].astype(np.float64)
  hidden = np.concatenate([np.asarray(x) for x in hiddens])[:n]
  return nll, hidden


@dataclasses.dataclass(frozen=True)
class TextScores:
  """Per-character scores of a text of N characters (see `score_text`).

  log_probs: <float32>[N], natural log of the probability the model gave
    each character, from the text before it; NaN where the character is
    outside the vocabulary.
  mask: <bool>[N], true where the character is in the vocabulary (the
    positions every average uses).
  hidden: <float32>[N, rnn_size], the top layer's output after reading the
    character before position i (the state that predicted character i).
  """
  log_probs: np.ndarray
  mask: np.ndarray
  hidden: np.ndarray


def score_text(params: Any, model_config: ModelConfig, vocab: Vocabulary,
               text: str) -> TextScores:
  """Scores `text` character by character as one stream.

  The same stream as `evaluate_text` (a ' ' context first, the carry passed
  along; unknown input characters fed as id 0), so
  `-scores.log_probs[scores.mask].mean()` is `evaluate_text(...)['loss']`
  (given the text as written: for a right-to-left model evaluate_text
  reverses its lines itself, score_text keeps positions as given).

  Args:
    params: the model's parameters (`LoadedModel.params`, `state.params`).
    model_config: its shape.
    vocab: its vocabulary.
    text: cleaned text (see `clean_text`), N characters, in the model's
      reading order (`reverse_lines` it for a right-to-left model).
  Returns:
    `TextScores` with log_probs <float32>[N], mask <bool>[N] and hidden
    <float32>[N, rnn_size].
  """
  arrays = stream_arrays(text, vocab)
  if not len(arrays.targets):
    return TextScores(np.zeros(0, np.float32), np.zeros(0, bool),
                      np.zeros((0, model_config.rnn_size), np.float32))
  nll, hidden = stream_outputs(params, model_config, arrays)
  log_probs = np.where(arrays.mask, -nll, np.nan).astype(np.float32)
  return TextScores(log_probs, arrays.mask, hidden)


def evaluate_text(params: Any, model_config: ModelConfig, vocab: Vocabulary,
                  text: str) -> dict[str, float]:
  """Scores cleaned `text`: {'bpc', 'ppl', 'oov_rate', 'chars', 'loss'}
  (a right-to-left model reads every line reversed, `reverse_lines`)."""
  if model_config.right_to_left:
    text = reverse_lines(text)
  arrays = stream_arrays(text, vocab)
  nll_sum, count = stream_nll(params, model_config, arrays)
  loss = nll_sum / count if count else float('nan')
  return {
      'bpc': loss / math.log(2),
      'ppl': math.exp(loss) if count else float('nan'),
      'oov_rate': 1.0 - count / len(text) if text else 0.0,
      'chars': len(text),
      'loss': loss,
  }
