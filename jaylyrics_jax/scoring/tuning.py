"""Tuning and scoring the default inference on a text.

Components, each giving the probability of the character that came next:
  model        the trained CharLM;
  cache        a neural cache over the model's own recent hidden states;
  ngram        an interpolated modified Kneser-Ney n-gram of the training text;
  ngram_cache  a Witten-Bell n-gram of the text already scored.
`tune_inference` fits the cache's window and sharpness and the mixture
weights on a validation text (`runs.tune.tune_run` does it on a run's own
and stores the result in its checkpoint). `evaluate_components` scores a
text with every component alone and mixed; `scoring.mixture.default_mixture`
says which components, settings and weights the default inference uses, and
`device_mixture_for` puts it on the device for sampling.

`model` below is a trained model (`models.charlm.TrainedModel`, e.g. what
`load_model` returns): its params, model_config, vocab and step.
"""

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from jaylyrics_jax.config import InferenceConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import TrainedModel
from jaylyrics_jax.scoring import mixture
from jaylyrics_jax.scoring import ngram
from jaylyrics_jax.scoring.mixture import default_mixture
from jaylyrics_jax.scoring.mixture import DeviceMixture
from jaylyrics_jax.scoring.stream import stream_arrays
from jaylyrics_jax.scoring.stream import stream_outputs

COMPONENTS = ('model', 'cache', 'ngram', 'ngram_cache')
CACHE_WINDOWS = (300, 500, 1000, 2000)
CACHE_THETAS = (3.0, 10.0, 30.0, 100.0)
NGRAM_CACHE_ORDERS = (5, 6, 7)
DEFAULT_NGRAM_ORDER = 6  # The Kneser-Ney order `train` and `tune_run` tune.


@functools.lru_cache(maxsize=4)
def _kneser_ney(ids_bytes: bytes, vocab_size: int, order: int):
  return ngram.fit_kneser_ney(np.frombuffer(ids_bytes, np.int32), vocab_size,
                              order)


def kneser_ney(train_ids: np.ndarray, vocab_size: int,
               order: int) -> ngram.KneserNey:
  """The Kneser-Ney model of the training ids (built once per process)."""
  return _kneser_ney(np.asarray(train_ids, np.int32).tobytes(), vocab_size,
                     order)


def component_probs(model: TrainedModel, text: str,
                    train_ids: np.ndarray | None, ngram_order: int,
                    ngram_cache_order: int = 5) -> dict[str, Any]:
  """Per-target probabilities of the model and n-gram components.

  Returns {'model', 'ngram', 'ngram_cache'} (<float64>[M] over the M
  in-vocabulary targets; the n-gram entries are absent without train_ids),
  plus 'hidden' and 'targets' for the neural cache, and 'mask'.
  """
  arrays = stream_arrays(text, model.vocab)
  nll, hidden = stream_outputs(model.params, model.model_config, arrays)
  out = {'model': np.exp(-nll[arrays.mask]), 'hidden': hidden,
         'targets': arrays.targets, 'mask': arrays.mask}
  if train_ids is not None and ngram_order > 0:
    kn = kneser_ney(train_ids, model.vocab.size, ngram_order)
    out['ngram'] = np.exp(kn.stream_log_probs(arrays.inputs,
                                              arrays.targets))[arrays.mask]
    out['ngram_cache'] = np.exp(ngram.ngram_cache_log_probs(
        arrays.inputs, arrays.targets, model.vocab.size,
        ngram_cache_order))[arrays.mask]
  return out


def cache_probs(components: dict[str, Any], window: int,
                theta: float) -> np.ndarray:
  """Neural-cache probabilities; the model's where the cache is empty."""
  probs, has_history = mixture.neural_cache_probs(
      components['hidden'], components['targets'], window, theta)
  mask = components['mask']
  return np.where(has_history[mask], probs[mask], components['model'])


def tune_inference(model: TrainedModel, valid_text: str,
                   train_ids: np.ndarray | None,
                   ngram_order: int = 6) -> InferenceConfig:
  """Chooses the caches' settings and the mixture weights on `valid_text`."""
  if not valid_text:
    raise JaylyricsError('Tuning needs a validation text (valid_fraction > 0).')
  comps = component_probs(model, valid_text, train_ids, ngram_order)
  caches = {(w, t): cache_probs(comps, w, t)
            for w in CACHE_WINDOWS for t in CACHE_THETAS}

  def fit(probs):
    weights = mixture.fit_weights(probs)
    bpc = mixture.bits_per_char(mixture.mixture_log_probs(probs, weights))
    return bpc, tuple(float(x) for x in weights)

  pair = min((fit(np.stack([comps['model'], cache])) + key
              for key, cache in caches.items()), key=lambda r: r[0])
  config = dict(cache_size=pair[2], theta=pair[3], cache_weights=pair[1],
                mix_cache_size=pair[2], mix_theta=pair[3],
                full_weights=pair[1] + (0.0, 0.0), step=model.step)
  if train_ids is not None and ngram_order > 0:
    arrays = stream_arrays(valid_text, model.vocab)
    best = None
    for order in NGRAM_CACHE_ORDERS:
      ngram_cache = np.exp(ngram.ngram_cache_log_probs(
          arrays.inputs, arrays.targets, model.vocab.size, order))[arrays.mask]
      for key, cache in caches.items():
        bpc, weights = fit(np.stack([comps['model'], cache, comps['ngram'],
                                     ngram_cache]))
        if best is None or bpc < best[0]:
          best = (bpc, weights, key, order, ngram_cache)
    _, full_weights, (window, theta), order, ngram_cache = best
    config.update(
        ngram_order=ngram_order, ngram_cache_order=order,
        mix_cache_size=window, mix_theta=theta, full_weights=full_weights,
        ngram_weights=fit(np.stack([comps['ngram'], ngram_cache]))[1])
  return InferenceConfig(**config)


def evaluate_components(model: TrainedModel, text: str,
                        train_ids: np.ndarray | None,
                        config: InferenceConfig) -> dict[str, Any]:
  """Bits per character of every component and mixture on `text`.

  Keys: bpc_model (with its attention/copy when it has one),
  bpc_model_no_attention (attention models: the softmax alone),
  bpc_model_cache (when cache_size > 0), bpc_ngram and
  bpc_ngram_cache (when n-grams are on), bpc_mixture (`default_mixture`:
  the components that are on, with their tuned weights), and bpc: the
  default inference, i.e. the mixture. Also ppl (of bpc), oov_rate, chars,
  and the mixture's components and weights.
  """
  use_ngram = train_ids is not None and config.ngram_order > 0
  comps = component_probs(model, text, train_ids, config.ngram_order,
                          config.ngram_cache_order)
  if not len(comps['model']):
    raise JaylyricsError('No character of the text is in the vocabulary.')
  bpc = lambda probs, w: mixture.bits_per_char(
      mixture.mixture_log_probs(probs, np.asarray(w) / np.sum(w)))
  result = {'bpc_model': mixture.bits_per_char(np.log(comps['model']))}
  if model.model_config.attn_length:
    # The same parameters with the attention/copy switched off: the
    # recurrent model and its softmax alone.
    plain = dataclasses.replace(model.model_config, attn_length=0)
    arrays = stream_arrays(text, model.vocab)
    nll, _ = stream_outputs(model.params, plain, arrays)
    result['bpc_model_no_attention'] = float(
        np.mean(nll[arrays.mask]) / np.log(2))
  if config.cache_size > 0:
    cache = cache_probs(comps, config.cache_size, config.theta)
    result['bpc_model_cache'] = bpc(np.stack([comps['model'], cache]),
                                    config.cache_weights)
  if use_ngram:
    result['bpc_ngram'] = mixture.bits_per_char(np.log(comps['ngram']))
    result['bpc_ngram_cache'] = bpc(
        np.stack([comps['ngram'], comps['ngram_cache']]),
        config.ngram_weights)
  spec = default_mixture(config, use_ngram)
  names, probs, weights = [], [], []
  for name, weight in zip(COMPONENTS, spec.weights):
    if weight > 0:
      names.append(name)
      weights.append(weight)
      probs.append(cache_probs(comps, spec.cache_size, spec.theta)
                   if name == 'cache' else comps[name])
  result['bpc_mixture'] = bpc(np.stack(probs), weights)
  result['bpc'] = result['bpc_mixture']
  result['ppl'] = 2.0 ** result['bpc']
  result['oov_rate'] = 1.0 - len(comps['model']) / len(text)
  result['chars'] = len(text)
  result['components'] = names
  result['weights'] = weights
  if math.isnan(result['bpc']):
    raise JaylyricsError('The score is NaN; the checkpoint may be damaged.')
  return result


def device_mixture_for(config: InferenceConfig, vocab_size: int,
                       train_ids: np.ndarray | None) -> DeviceMixture:
  """The default inference of tuned `config` on the device, for sampling
  (n-grams only with train_ids)."""
  spec = default_mixture(config, train_ids is not None)
  kn = (kneser_ney(train_ids, vocab_size, spec.ngram_order)
        if spec.ngram_order else None)
  return mixture.device_mixture(spec, kn)
