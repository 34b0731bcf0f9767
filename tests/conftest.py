"""Shared fixtures: small synthetic corpora and the shared real corpus."""

import json
import os
import random
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CORPUS = os.path.join(REPO, '..', 'shared', 'data', 'jaychou',
                             'origin.txt')

# The tiny CLI run of the fault and concurrency tests, and its logged keys.
TINY_RUN = ['--rnn_size=16', '--embedding_size=8', '--batch_size=4',
            '--seq_length=8', '--num_epochs=3', '--patience=0',
            '--save_every=7', '--dropout=0.1', '--random_offset',
            '--rng_seed=5']
LOSS_KEYS = ('epoch', 'step', 'train_loss', 'valid_loss', 'lr', 'grad_norm')


def cli_command(module, *args, cache):
  """argv of `python -m experiments.<module>` with the test XLA cache."""
  return [sys.executable, '-m', f'experiments.{module}', *args,
          f'--compilation_cache={cache}']


def cli_env():
  return dict(os.environ, PYTHONUTF8='1')


def logged_losses(workdir):
  """The loss fields of every record of <workdir>/log.jsonl."""
  with open(os.path.join(workdir, 'log.jsonl'), encoding='utf-8') as f:
    return [{k: json.loads(line)[k] for k in LOSS_KEYS} for line in f]


# Made-up "lyrics" from a fixed character set: no corpus text in the repo.
_CHARS = '春夏秋冬风花雪月山水天地你我他爱恨情长短夜雨星光云海心梦'


def synthetic_lyrics(num_lines: int = 120, seed: int = 0) -> str:
  """Raw text with headers, credits, Latin and full-width spaces to clean."""
  rng = random.Random(seed)
  motifs = [''.join(rng.choice(_CHARS) for _ in range(rng.randint(3, 7)))
            for _ in range(12)]
  lines = ['01、《春夏》', '作词：某人 作曲：某人', '（3’50）']
  for i in range(num_lines):
    line = ' '.join(rng.choice(motifs) for _ in range(rng.randint(1, 3)))
    if i % 17 == 0:
      line += '　Baby~'
    lines.append(line)
  return '\n'.join(lines) + '\n'


@pytest.fixture
def tiny_corpus(tmp_path):
  path = tmp_path / 'tiny.txt'
  path.write_text(synthetic_lyrics(), encoding='utf-8')
  return str(path)


@pytest.fixture
def shared_corpus():
  if not os.path.exists(SHARED_CORPUS):
    pytest.skip('../shared/data/jaychou/origin.txt is not here')
  return SHARED_CORPUS


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """One XLA cache for the session: identical tiny models compile once.

  Subprocess tests pass it on with --compilation_cache. JAYLYRICS_TEST_XLA_CACHE
  names a folder to use instead of a fresh one (tests/mutation.py shares one
  across its many pytest runs).
  """
  from jaylyrics_jax import runtime  # pylint: disable=g-import-not-at-top
  cache_dir = (os.environ.get('JAYLYRICS_TEST_XLA_CACHE') or
               str(tmp_path_factory.mktemp('xla_cache')))
  runtime.enable_compilation_cache(cache_dir)
  return cache_dir


def tiny_songwriter(meta=None, step=7, **kwargs):
  """A `Songwriter` over an untrained 16-unit model of made-up lyrics (its
  vocabulary has 春天; 晴 stays unknown); kwargs go to `Songwriter`."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.config import ModelConfig  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.data.corpus import clean_text  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.data.vocab import build_vocabulary  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.generation.songwriter import Songwriter  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.models.charlm import init_params  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.runs.store import LoadedModel  # pylint: disable=g-import-not-at-top
  text = clean_text(synthetic_lyrics(num_lines=150, seed=3)) + '春天夏秋冬 '
  vocab = build_vocabulary(text)
  config = ModelConfig(vocab_size=vocab.size, embedding_size=8, rnn_size=16,
                       num_layers=1)
  model = LoadedModel(init_params(config, jax.random.key(0)), config, vocab,
                      {'valid_loss': 3.0} if meta is None else meta, step)
  return Songwriter(model, None, text, **kwargs)


# The demo page's browser tests: Debian's Chromium and its flags.
CHROMIUM = '/usr/bin/chromium'
BROWSER_ARGS = ['--no-sandbox', '--disable-gpu',
                '--disable-background-networking',
                '--disable-component-update', '--no-first-run',
                '--disable-sync']


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]
