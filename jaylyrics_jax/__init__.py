"""jaylyrics_jax: character-level lyrics models in JAX/Flax.

The library takes plain dataclasses and arrays and never reads flags:

    import jax, jaylyrics_jax as jl
    result = jl.train('lyrics.txt', jl.ModelConfig(), jl.TrainConfig(workdir='runs/x'))
    m = jl.load_model('runs/x')
    print(jl.sample_text(m.params, m.model_config, m.vocab, '从前', jax.random.key(0))[0])

The package's parts, lowest first: `data` (corpus, vocabulary, batches,
rhyme), `config`, `models` (`CharLM`), `training` (one step), `scoring`
(stream scores, n-grams, the tuned mixture, realism), `generation` (the
sampler and the lyrics on top) and `runs` (training runs, checkpoints,
tuning, loading a run to write with: `load_run`).

A loop of your own: `create_train_state` and `make_train_step` with any optax
optimizer, `score_text` for per-character log-probabilities and hidden
states, `save_model` so `load_model` and the command line can use the result
(README.md, "Library"). Errors are `JaylyricsError`s naming the Python
argument to change.
"""

from jaylyrics_jax.config import InferenceConfig
from jaylyrics_jax.config import LineConfig
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.data.batching import epoch_batches
from jaylyrics_jax.data.corpus import clean_line
from jaylyrics_jax.data.corpus import clean_text
from jaylyrics_jax.data.corpus import download_corpus
from jaylyrics_jax.data.corpus import load_clean_text
from jaylyrics_jax.data.corpus import resolve_corpus
from jaylyrics_jax.data.corpus import reverse_lines
from jaylyrics_jax.data.corpus import split_train_valid
from jaylyrics_jax.data.vocab import build_vocabulary
from jaylyrics_jax.data.vocab import Vocabulary
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation.controls import build_decoder
from jaylyrics_jax.generation.lyrics import sample_candidates
from jaylyrics_jax.generation.lyrics import sample_text
from jaylyrics_jax.generation.lyrics import text_key
from jaylyrics_jax.generation.line_writer import write_verses
from jaylyrics_jax.generation.sampler import generate
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.models.charlm import zero_carries
from jaylyrics_jax.runs.checkpoints import restore as restore_checkpoint
from jaylyrics_jax.runs.loaded import load_run
from jaylyrics_jax.runs.loaded import Run
from jaylyrics_jax.runs.plot import plot_losses
from jaylyrics_jax.runs.store import load_model
from jaylyrics_jax.runs.store import LoadedModel
from jaylyrics_jax.runs.store import save_model
from jaylyrics_jax.runs.train import train
from jaylyrics_jax.runs.train import TrainResult
from jaylyrics_jax.runs.tune import tune_run
from jaylyrics_jax.scoring.realism import make_judge
from jaylyrics_jax.scoring.realism import reference_pieces
from jaylyrics_jax.scoring.realism import report as realism_report
from jaylyrics_jax.scoring.stream import evaluate_text
from jaylyrics_jax.scoring.stream import make_eval_step
from jaylyrics_jax.scoring.stream import score_text
from jaylyrics_jax.scoring.stream import TextScores
from jaylyrics_jax.scoring.tuning import evaluate_components
from jaylyrics_jax.training.steps import create_train_state
from jaylyrics_jax.training.steps import make_optimizer
from jaylyrics_jax.training.steps import make_train_step
from jaylyrics_jax.training.steps import TrainState

__version__ = '0.1.0'

__all__ = [
    'evaluate_components',
    'InferenceConfig',
    'tune_run',
    'load_run',
    'Run',
    'epoch_batches',
    'restore_checkpoint',
    'LineConfig',
    'ModelConfig',
    'TrainConfig',
    'clean_line',
    'clean_text',
    'download_corpus',
    'load_clean_text',
    'resolve_corpus',
    'reverse_lines',
    'split_train_valid',
    'JaylyricsError',
    'evaluate_text',
    'score_text',
    'TextScores',
    'CharLM',
    'init_params',
    'zero_carries',
    'plot_losses',
    'build_decoder',
    'generate',
    'make_judge',
    'realism_report',
    'reference_pieces',
    'sample_candidates',
    'sample_text',
    'text_key',
    'write_verses',
    'SamplingConfig',
    'load_model',
    'LoadedModel',
    'save_model',
    'train',
    'TrainResult',
    'create_train_state',
    'make_eval_step',
    'make_optimizer',
    'make_train_step',
    'TrainState',
    'build_vocabulary',
    'Vocabulary',
]
