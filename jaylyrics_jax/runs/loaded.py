"""A run loaded for writing: its model, default inference and corpus.

`load_run` is what `experiments.sample`, `judge` and `serve` write with:
the checkpoint, its tuned default inference on the device (with a caller's
overrides), and the run's training and validation text when its corpus is
at hand (the decoding controls that need it fall back without it).
"""

import dataclasses
from typing import Callable

from jaylyrics_jax.config import LineConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation.songwriter import Songwriter
from jaylyrics_jax.runs.store import load_model
from jaylyrics_jax.runs.store import LoadedModel
from jaylyrics_jax.runs.tune import run_corpus_split
from jaylyrics_jax.runs.tune import settings_for
from jaylyrics_jax.scoring.mixture import DeviceMixture
from jaylyrics_jax.scoring.tuning import device_mixture_for


@dataclasses.dataclass(frozen=True)
class Run:
  """What writing needs from a run: the model, its default inference and
  the training and validation text (None when the corpus is not here)."""
  model: LoadedModel
  mixture: DeviceMixture
  train_text: str | None
  valid_text: str | None

  def songwriter(self, config: SamplingConfig = SamplingConfig(),
                 warn: Callable[[str], None] = lambda message: None,
                 writer: LineConfig | None = LineConfig()) -> Songwriter:
    """A `Songwriter` writing with this run."""
    return Songwriter(self.model, self.mixture, self.train_text, config, warn,
                      writer)


def load_run(workdir: str, which: str = 'best', cache_size: int = -1,
             ngram_order: int = -1, corpus_path: str | None = None,
             warn: Callable[[str], None] = lambda message: None) -> Run:
  """Loads the run in `workdir` for writing.

  Args:
    workdir: the run's folder.
    which: the checkpoint, 'best' or 'latest'.
    cache_size, ngram_order: override the tuned settings (-1 keeps them, 0
      turns that component off; see `runs.tune.settings_for`).
    corpus_path: the run's training corpus (default: the path recorded in
      the checkpoint).
    warn: called with every fallback and damaged checkpoint skipped.
  """
  model = load_model(workdir, which=which, warn=warn)
  settings, train_ids = settings_for(model, cache_size, ngram_order,
                                     corpus_path, warn)
  mixture = device_mixture_for(settings, model.vocab.size, train_ids)
  try:
    train_text, valid_text = run_corpus_split(model, corpus_path)
  except JaylyricsError as e:
    warn(f'{e} The controls that need it fall back.')
    train_text = valid_text = None
  return Run(model, mixture, train_text, valid_text)
