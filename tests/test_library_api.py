"""The library as research code uses it: own loops, any optimizer, scores,
saving a model for `load_model` and the command line, errors in Python terms."""

import dataclasses
import math
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from conftest import REPO
from conftest import synthetic_lyrics
import jaylyrics_jax as jl

B, T = 4, 8
NUM_STEPS = 60


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp('lib') / 'lyrics.txt'
  path.write_text(synthetic_lyrics(), encoding='utf-8')
  text = jl.load_clean_text(str(path))
  vocab = jl.build_vocabulary(text)
  train_text, valid_text = jl.split_train_valid(text, 0.1)
  return str(path), vocab, train_text, valid_text


def _model_config(vocab):
  return jl.ModelConfig(vocab_size=vocab.size, embedding_size=8, rnn_size=16,
                        num_layers=1)


@pytest.fixture(scope='module')
def custom_loop(corpus):
  """A loop of our own: adamw with a cosine schedule, chained after clipping."""
  _, vocab, train_text, _ = corpus
  config = _model_config(vocab)
  inputs, targets = jl.epoch_batches(vocab.encode(train_text), B, T)
  schedule = optax.cosine_decay_schedule(1e-2, decay_steps=NUM_STEPS)
  tx = optax.chain(optax.clip_by_global_norm(5.0), optax.adamw(schedule))
  state = jl.create_train_state(config, tx, B, jax.random.key(0))
  train_step = jl.make_train_step(config, tx, schedule=schedule)
  losses, lrs = [], []
  for i in range(NUM_STEPS):
    if i % len(inputs) == 0:
      state = state.replace(carry=jl.zero_carries(config, B))
    j = i % len(inputs)
    state, metrics = train_step(state, (inputs[j], targets[j]),
                                jax.random.key(1))
    losses.append(float(metrics['loss']))
    lrs.append(float(metrics['lr']))
  return config, state, losses, lrs, schedule


def test_custom_optimizer_loop_lowers_the_loss(custom_loop):
  _, state, losses, lrs, schedule = custom_loop
  assert int(state.step) == NUM_STEPS
  first, last = np.mean(losses[:5]), np.mean(losses[-5:])
  assert last < first - 0.5, (first, last)
  # The logged lr is the schedule's at each step.
  np.testing.assert_allclose(lrs, [schedule(i) for i in range(NUM_STEPS)],
                             rtol=1e-5)


def test_learning_rate_logged_only_when_known(corpus):
  _, vocab, train_text, _ = corpus
  config = _model_config(vocab)
  inputs, targets = jl.epoch_batches(vocab.encode(train_text), B, T)
  batch = (inputs[0], targets[0])
  plain = optax.adam(1e-3)  # No schedule, nothing injected: no 'lr'.
  state = jl.create_train_state(config, plain, B, jax.random.key(0))
  _, metrics = jl.make_train_step(config, plain)(state, batch,
                                                 jax.random.key(1))
  assert set(metrics) == {'loss', 'grad_norm'}
  # inject_hyperparams on one link of a chain: found inside the state tree.
  nested = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.inject_hyperparams(optax.adamw)(
          learning_rate=optax.linear_schedule(1e-3, 0.0, 10)))
  state = jl.create_train_state(config, nested, B, jax.random.key(0))
  step = jl.make_train_step(config, nested)
  state, m0 = step(state, batch, jax.random.key(1))
  _, m1 = step(state, batch, jax.random.key(1))
  np.testing.assert_allclose([m0['lr'], m1['lr']], [1e-3, 9e-4], rtol=1e-5)


def test_score_text_mean_equals_evaluate_text(custom_loop, corpus):
  _, vocab, _, valid_text = corpus
  config, state, *_ = custom_loop
  text = valid_text + '晴'  # One character outside the vocabulary.
  scores = jl.score_text(state.params, config, vocab, text)
  n = len(text)
  assert scores.log_probs.shape == (n,) and scores.mask.shape == (n,)
  assert scores.hidden.shape == (n, config.rnn_size)
  assert not scores.mask[-1] and scores.mask[:-1].all()
  assert np.isnan(scores.log_probs[-1])
  assert (scores.log_probs[scores.mask] < 0).all()
  result = jl.evaluate_text(state.params, config, vocab, text)
  assert math.isclose(-scores.log_probs[scores.mask].mean(), result['loss'],
                      rel_tol=1e-5)
  # The hidden state is the top layer's output: CharLM called directly.
  ids = vocab.encode(' ' + text[:9], unknown='frequent')[None]
  _, _, hidden = jl.CharLM(config).apply(
      {'params': state.params}, ids, jl.zero_carries(config, 1),
      return_hidden=True)
  np.testing.assert_allclose(scores.hidden[:10], hidden[0], atol=1e-5)


def test_lstm_carry_is_c_h_pairs(corpus):
  _, vocab, _, _ = corpus
  config = dataclasses.replace(_model_config(vocab), num_layers=2)
  carries = jl.zero_carries(config, 3)
  assert len(carries) == 2
  for c, h in carries:
    assert c.shape == h.shape == (3, config.rnn_size)
  gru = dataclasses.replace(config, cell='gru')
  assert [h.shape for h in jl.zero_carries(gru, 3)] == [(3, 16), (3, 16)]


@pytest.fixture(scope='module')
def saved(custom_loop, corpus, tmp_path_factory):
  path, vocab, _, valid_text = corpus
  config, state, *_ = custom_loop
  workdir = str(tmp_path_factory.mktemp('saved') / 'custom')
  valid_loss = jl.evaluate_text(state.params, config, vocab,
                                valid_text)['loss']
  step = jl.save_model(workdir, state.params, config, vocab,
                       step=int(state.step), valid_loss=valid_loss,
                       corpus_path=path)
  return workdir, step, valid_loss


def test_save_model_loads_back(saved, custom_loop, corpus):
  workdir, step, valid_loss = saved
  _, vocab, _, valid_text = corpus
  config, state, *_ = custom_loop
  model = jl.load_model(workdir)
  assert model.step == step == NUM_STEPS
  assert model.model_config == config and model.vocab == vocab
  jax.tree.map(np.testing.assert_array_equal, model.params, state.params)
  again = jl.evaluate_text(model.params, model.model_config, model.vocab,
                           valid_text)['loss']
  assert math.isclose(again, valid_loss, rel_tol=1e-6)
  with pytest.raises(jl.JaylyricsError, match='already in'):
    jl.save_model(workdir, state.params, config, vocab, step=step)
  # A model-only checkpoint cannot be resumed as a training run.
  with pytest.raises(jl.JaylyricsError, match='save_model'):
    jl.train(corpus[0], config, jl.TrainConfig(workdir=workdir, batch_size=B,
                                               seq_length=T), resume=True)


def test_saved_model_tunes_with_its_corpus(saved):
  workdir, step, _ = saved
  tuned, scores = jl.tune_run(workdir, ngram_order=3)
  assert tuned.step == step and 'bpc_ngram' in scores
  from jaylyrics_jax.runs import tune as inference  # pylint: disable=g-import-not-at-top
  assert inference.read_inference_config(jl.load_model(workdir)) == tuned


def _run(module, *args, cache):
  return subprocess.run(
      [sys.executable, '-m', f'experiments.{module}', *args,
       f'--compilation_cache={cache}'],
      cwd=REPO, env=dict(os.environ, PYTHONUTF8='1'), capture_output=True,
      text=True, timeout=240)


@pytest.mark.slow
def test_saved_model_works_with_sample_and_evaluate(saved, corpus,
                                                    compilation_cache,
                                                    tmp_path):
  workdir, _, _ = saved
  proc = _run('sample', f'--workdir={workdir}', '--length=20', '--seed=春',
              '--nonewlines', cache=compilation_cache)
  assert proc.returncode == 0, proc.stderr
  text = proc.stdout.splitlines()[0]
  assert text.startswith('春') and text.endswith(' ')  # Whole lines,
  assert 21 - 12 < len(text) <= 21  # stopped before passing --length.
  proc = _run('evaluate', f'--workdir={workdir}', f'--text_file={corpus[0]}',
              '--ngram_order=0', '--cache_size=0', cache=compilation_cache)
  assert proc.returncode == 0, proc.stderr
  assert '"bpc"' in proc.stdout.splitlines()[-1]


def _library_errors(corpus_path, used_workdir, tmp_path):
  """(bad call, the argument its JaylyricsError must name)."""
  vocab = jl.build_vocabulary('春夏秋冬 ')
  model = jl.ModelConfig(vocab_size=vocab.size, embedding_size=4, rnn_size=8,
                         num_layers=1)
  auto = dataclasses.replace(model, vocab_size=0)  # From the corpus.
  train = lambda model_config=auto, **kw: jl.train(
      corpus_path, model_config, jl.TrainConfig(**dict(
          dict(workdir=str(tmp_path / 't'), batch_size=B, seq_length=T),
          **kw)))
  yield from (
      (lambda: jl.ModelConfig(cell='LSTM'), "cell='LSTM'"),
      (lambda: jl.ModelConfig(rnn_size=0), 'rnn_size=0'),
      (lambda: jl.ModelConfig(num_layers=-1), 'num_layers=-1'),
      (lambda: jl.ModelConfig(embedding_size=0), 'embedding_size=0'),
      (lambda: jl.ModelConfig(dropout=1.0), 'dropout=1.0'),
      (lambda: jl.ModelConfig(vocab_size=-1), 'vocab_size=-1'),
      (lambda: jl.ModelConfig(attn_length=-1), 'attn_length=-1'),
      (lambda: jl.ModelConfig(attn_size=0), 'attn_size=0'),
      (lambda: jl.ModelConfig(attn_min_distance=0), 'attn_min_distance=0'),
      (lambda: jl.ModelConfig(embed_init_std=-1.0), 'embed_init_std=-1.0'),
      (lambda: jl.ModelConfig(softmax_loss_weight=-1.0),
       'softmax_loss_weight=-1.0'),
      (lambda: jl.init_params(jl.ModelConfig(), jax.random.key(0)),
       'vocab_size=0'),
      (lambda: jl.make_train_step(jl.ModelConfig(), optax.adam(1e-3)),
       'vocab_size=0'),
      (lambda: jl.TrainConfig(batch_size=0), 'batch_size=0'),
      (lambda: jl.TrainConfig(seq_length=0), 'seq_length=0'),
      (lambda: jl.TrainConfig(num_epochs=0), 'num_epochs=0'),
      (lambda: jl.TrainConfig(learning_rate=0.0), 'learning_rate=0.0'),
      (lambda: jl.TrainConfig(learning_rate=float('nan')),
       'learning_rate=nan'),
      (lambda: jl.TrainConfig(decay_rate=1.5), 'decay_rate=1.5'),
      (lambda: jl.TrainConfig(grad_clip=0.0), 'grad_clip=0.0'),
      (lambda: jl.TrainConfig(patience=-1), 'patience=-1'),
      (lambda: jl.TrainConfig(valid_fraction=1.0), 'valid_fraction=1.0'),
      (lambda: jl.TrainConfig(num_devices=-1), 'num_devices=-1'),
      (lambda: jl.TrainConfig(save_every=0), 'save_every=0'),
      (lambda: jl.TrainConfig(keep_checkpoints=0), 'keep_checkpoints=0'),
      (lambda: jl.TrainConfig(workdir=''), "workdir=''"),
      (lambda: vocab.encode('春天'), "unknown='skip'"),
      (lambda: vocab.encode('春', unknown='drop'), 'unknown must be'),
      (lambda: jl.epoch_batches(np.zeros(5, np.int32), 4, 8),
       'batch_size=4'),
      (lambda: jl.split_train_valid('春夏', 1.5), 'valid_fraction=1.5'),
      (lambda: jl.load_clean_text(str(tmp_path / 'missing.txt')),
       'does not exist'),
      (lambda: jl.load_model(used_workdir, which='last'), "which='last'"),
      (lambda: jl.load_model(str(tmp_path)), 'workdir='),
      (lambda: jl.plot_losses(str(tmp_path)), 'workdir='),
      (lambda: jl.save_model(str(tmp_path / 's'), {'params': {}}, model,
                             vocab), 'params'),
      (lambda: jl.save_model(str(tmp_path / 's'), jl.init_params(
          model, jax.random.key(0)), model, jl.build_vocabulary('春夏')),
       'vocab_size=5'),
      (lambda: jl.save_model(str(tmp_path / 's'), jl.init_params(
          model, jax.random.key(0)), model, vocab, step=2.5), 'step=2.5'),
      (lambda: train(workdir=used_workdir), 'resume=True'),
      (lambda: train(jl.ModelConfig(vocab_size=3)), 'vocab_size=0'),
      (lambda: train(batch_size=64, seq_length=64), 'at least'),
      (lambda: train(num_devices=99), 'num_devices='),
      (lambda: jl.train(corpus_path, auto, jl.TrainConfig(
          workdir=str(tmp_path / 'n')), ngram_order=-1), 'ngram_order=-1'),
  )


def test_library_errors_name_python_arguments_not_flags(saved, corpus,
                                                        tmp_path):
  workdir, _, _ = saved
  for call, argument in _library_errors(corpus[0], workdir, tmp_path):
    with pytest.raises(jl.JaylyricsError) as raised:
      call()
    message = str(raised.value)
    assert '--' not in message, message
    assert argument in message, (argument, message)


def test_train_takes_vocab_size_from_the_corpus_only_when_zero(corpus,
                                                               tmp_path):
  path, vocab, _, _ = corpus
  config = jl.TrainConfig(workdir=str(tmp_path / 'w'), batch_size=B,
                          seq_length=T, num_epochs=1, valid_fraction=0.0)
  small = jl.ModelConfig(embedding_size=4, rnn_size=8, num_layers=1)
  result = jl.train(path, dataclasses.replace(small, vocab_size=vocab.size),
                    config, make_plot=False)
  assert result.inference is None  # valid_fraction=0: nothing to tune on.
  assert jl.load_model(config.workdir).model_config.vocab_size == vocab.size
  with pytest.raises(jl.JaylyricsError, match='vocab_size=0'):
    jl.train(path, dataclasses.replace(small, vocab_size=vocab.size + 1),
             dataclasses.replace(config, workdir=str(tmp_path / 'x')))


@pytest.mark.slow
def test_cli_shows_library_errors_as_flags(saved, corpus, compilation_cache):
  workdir, _, _ = saved
  # A used workdir without --resume: the library says resume=True.
  proc = _run('train', f'--workdir={workdir}', f'--corpus={corpus[0]}',
              '--rnn_size=16', '--embedding_size=8', '--batch_size=4',
              '--seq_length=8', cache=compilation_cache)
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr
  assert 'Pass --resume to continue it' in proc.stderr, proc.stderr
  assert 'another --workdir= ' in proc.stderr
  assert 'resume=True' not in proc.stderr
  proc = _run('sample', f'--workdir={workdir}', '--seed=晴', '--length=3',
              cache=compilation_cache)
  assert proc.returncode == 1, proc.stderr
  assert '--unknown_chars=skip' in proc.stderr
  assert "unknown='skip'" not in proc.stderr
  proc = _run('evaluate', f'--workdir={workdir}', '--text_file=/no/such',
              cache=compilation_cache)
  assert proc.returncode == 1 and 'does not exist' in proc.stderr
