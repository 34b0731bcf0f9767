"""jaylyrics_jax: character-level lyrics models in JAX/Flax.

The library takes plain dataclasses and arrays and never reads flags:

    import jax, jaylyrics_jax as jl
    result = jl.train('lyrics.txt', jl.ModelConfig(), jl.TrainConfig(workdir='runs/x'))
    m = jl.load_model('runs/x')
    print(jl.sample_text(m.params, m.model_config, m.vocab, '从前', jax.random.key(0))[0])

A loop of your own: `create_train_state` and `make_train_step` with any optax
optimizer, `score_text` for per-character log-probabilities and hidden
states, `save_model` so `load_model` and the command line can use the result
(README.md, "Library"). Errors are `JaylyricsError`s naming the Python
argument to change.
"""

from jaylyrics_jax.batching import epoch_batches
from jaylyrics_jax.checkpointing import restore as restore_checkpoint
from jaylyrics_jax.inference import evaluate_components
from jaylyrics_jax.inference import InferenceConfig
from jaylyrics_jax.inference import tune_run
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.corpus import clean_line
from jaylyrics_jax.corpus import clean_text
from jaylyrics_jax.corpus import download_corpus
from jaylyrics_jax.corpus import load_clean_text
from jaylyrics_jax.corpus import resolve_corpus
from jaylyrics_jax.corpus import split_train_valid
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.evaluation import evaluate_text
from jaylyrics_jax.evaluation import score_text
from jaylyrics_jax.evaluation import TextScores
from jaylyrics_jax.model import CharLM
from jaylyrics_jax.model import init_params
from jaylyrics_jax.model import zero_carries
from jaylyrics_jax.plotting import plot_losses
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.decoding import build_decoder
from jaylyrics_jax.lyrics import sample_candidates
from jaylyrics_jax.lyrics import sample_text
from jaylyrics_jax.realism import make_judge
from jaylyrics_jax.realism import reference_pieces
from jaylyrics_jax.realism import report as realism_report
from jaylyrics_jax.sampling import generate
from jaylyrics_jax.saved_model import load_model
from jaylyrics_jax.saved_model import LoadedModel
from jaylyrics_jax.saved_model import save_model
from jaylyrics_jax.trainer import train
from jaylyrics_jax.trainer import TrainResult
from jaylyrics_jax.training import create_train_state
from jaylyrics_jax.training import make_eval_step
from jaylyrics_jax.training import make_optimizer
from jaylyrics_jax.training import make_train_step
from jaylyrics_jax.training import TrainState
from jaylyrics_jax.vocab import build_vocabulary
from jaylyrics_jax.vocab import Vocabulary

__version__ = '0.1.0'

__all__ = [
    'evaluate_components',
    'InferenceConfig',
    'tune_run',
    'epoch_batches',
    'restore_checkpoint',
    'ModelConfig',
    'TrainConfig',
    'clean_line',
    'clean_text',
    'download_corpus',
    'load_clean_text',
    'resolve_corpus',
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
