"""Tuning a run's default inference, and reading what a run was tuned with.

`tune_run` fits the default inference (`scoring.tuning.tune_inference`) on
the run's own validation split and stores it in the tuned checkpoint step
(its `inference` item), so `evaluate` and `sample` use it by default with
that checkpoint. `settings_for` reads those settings back with a caller's
overrides; `run_corpus_split` reads the run's corpus, checked by the SHA-256
its checkpoint recorded.
"""

import dataclasses
import os

import numpy as np

from jaylyrics_jax.config import InferenceConfig
from jaylyrics_jax.data.corpus import CorpusSplit
from jaylyrics_jax.data.corpus import load_clean_text
from jaylyrics_jax.data.corpus import reverse_lines
from jaylyrics_jax.data.corpus import sha256_of
from jaylyrics_jax.data.corpus import split_train_valid
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.runs import checkpoints
from jaylyrics_jax.runs import lock
from jaylyrics_jax.runs.store import INFERENCE_ITEM
from jaylyrics_jax.runs.store import load_model
from jaylyrics_jax.runs.store import LoadedModel
from jaylyrics_jax.scoring.tuning import DEFAULT_NGRAM_ORDER
from jaylyrics_jax.scoring.tuning import evaluate_components
from jaylyrics_jax.scoring.tuning import tune_inference


def read_inference_config(model: LoadedModel) -> InferenceConfig | None:
  """The settings tuned for the loaded checkpoint step, None if never tuned."""
  stored = model.meta.get(INFERENCE_ITEM)
  return None if stored is None else InferenceConfig.from_dict(stored)


def write_inference_config(workdir: str, step: int,
                           config: InferenceConfig) -> None:
  """Stores `config` in checkpoint `step` of `workdir` (replacing any)."""
  checkpoints.save_json_item(workdir, step, INFERENCE_ITEM, config.to_dict())


def run_corpus_split(model: LoadedModel,
                     corpus_path: str | None) -> tuple[str, str]:
  """(train, valid) text of the run's corpus, checked by its SHA-256, as
  written (`in_reading_order` gives them as the model reads them)."""
  meta = model.meta
  if not meta.get('corpus_sha256'):
    raise JaylyricsError(
        f'Checkpoint {model.step} was saved without its corpus; the n-grams '
        'and the tuning need it. Save it again with save_model and its '
        'corpus_path, or pass ngram_order=0 to score without n-grams.')
  corpus_path = corpus_path or meta.get('corpus_path')
  if not corpus_path or not os.path.exists(corpus_path):
    raise JaylyricsError(
        f'The training corpus of this run ({corpus_path!r}) is not here. Pass '
        'it as corpus_path=, or ngram_order=0 to score without n-grams.')
  text = load_clean_text(corpus_path)
  if sha256_of(text.encode('utf-8')) != meta['corpus_sha256']:
    raise JaylyricsError(
        f'{corpus_path!r} is not the corpus this run was trained on (its '
        'cleaned text differs). Pass the right file as corpus_path=, or '
        'ngram_order=0.')
  train_config = meta.get('train_config')
  valid_fraction = (train_config['valid_fraction'] if train_config
                    else meta['valid_fraction'])
  return split_train_valid(text, valid_fraction)


def in_reading_order(model: LoadedModel, text: str) -> str:
  """`text` as the model reads it: every line reversed for a right-to-left
  model (`reverse_lines`), as it is otherwise."""
  return reverse_lines(text) if model.model_config.right_to_left else text


def training_ids(model: LoadedModel, corpus_path: str | None) -> np.ndarray:
  """The encoded training part of the run's corpus (see run_corpus_split),
  in the model's reading order."""
  return model.vocab.encode(
      in_reading_order(model, run_corpus_split(model, corpus_path)[0]))


def settings_for(model: LoadedModel, cache_size: int = -1,
                 ngram_order: int = -1, corpus_path: str | None = None,
                 warn=lambda message: None
                 ) -> tuple[InferenceConfig, np.ndarray | None]:
  """The checkpoint's tuned settings with a caller's overrides, and the
  training ids the n-grams need (None when they are off).

  cache_size, ngram_order: -1 keeps the tuned value, 0 turns it off.
  """
  config = read_inference_config(model)
  if config is None:
    warn(f'checkpoint {model.step} has no tuned inference settings (run '
         '`python -m experiments.tune`): using the model alone.')
    config = InferenceConfig()
  if cache_size >= 0:
    config = dataclasses.replace(config, cache_size=cache_size,
                                 mix_cache_size=cache_size)
  if ngram_order >= 0:
    config = dataclasses.replace(config, ngram_order=ngram_order)
  train_ids = None
  if config.ngram_order > 0:
    train_ids = training_ids(model, corpus_path)
  return config, train_ids


def tune_run(workdir: str, corpus_path: str | None = None,
             ngram_order: int = DEFAULT_NGRAM_ORDER, which: str = 'best',
             warn=lambda message: None, split: CorpusSplit | None = None
             ) -> tuple[InferenceConfig, dict]:
  """Tunes the run's best checkpoint on its own validation split.

  Stores the settings in that checkpoint step and returns them with the
  validation scores of every component. `train` does this itself at its end
  (`tune=True`); call it after a multi-process run, to change the n-gram
  order, or for a model written by `save_model` with its `corpus_path`.
  Holds the workdir's lock meanwhile (`lock.hold`, re-entrant within a
  process): it writes into a checkpoint step, which a run still training
  there could be removing.

  Args:
    workdir: the run's folder.
    corpus_path: its training corpus (default: the path recorded in the
      checkpoint).
    ngram_order: the Kneser-Ney order mixed in (0 = no n-grams).
    which: the checkpoint to tune, 'best' or 'latest'.
    warn: called with a message for every damaged checkpoint skipped.
    split: the run's corpus already read (`data.corpus.read_split`, as
      `train` holds it); it must be the checkpoint's (same cleaned-text
      SHA-256 and vocabulary). Default: read from `corpus_path`.
  Returns:
    (the settings, the validation scores of `evaluate_components`).
  Raises:
    WorkdirLockError: another run is writing the workdir; nothing changed.
  """
  if ngram_order < 0:
    raise JaylyricsError(f'ngram_order={ngram_order!r}: must be >= 0.')
  with lock.hold(workdir):
    model = load_model(workdir, which=which, warn=warn)
    if split is None:
      train, valid = (in_reading_order(model, part) for part in
                      run_corpus_split(model, corpus_path))
      train_ids = model.vocab.encode(train)
    else:
      _check_split(model, split)
      train_ids, valid = split.train_ids, split.valid_text
    train_ids = train_ids if ngram_order > 0 else None
    config = tune_inference(model, valid, train_ids, ngram_order)
    write_inference_config(workdir, model.step, config)
  return config, evaluate_components(model, valid, train_ids, config)


def _check_split(model: LoadedModel, split: CorpusSplit) -> None:
  if (split.corpus_sha256 != model.meta.get('corpus_sha256') or
      split.vocab.chars != model.vocab.chars):
    raise JaylyricsError(
        f'split= is not the corpus checkpoint {model.step} was trained on '
        '(its cleaned text or vocabulary differs). Pass the split read from '
        'that corpus, or split=None to read it from corpus_path.')
