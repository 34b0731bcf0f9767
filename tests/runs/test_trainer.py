"""Whole training runs on a tiny synthetic corpus: logs, checkpoints, resume."""

import dataclasses
import json
import math
import os
import shutil

import jax
import numpy as np
import pytest

import jaylyrics_jax as jl
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.runs import checkpoints as checkpointing
from jaylyrics_jax.runs.store import abstract_tree

MODEL = jl.ModelConfig(embedding_size=8, rnn_size=16, num_layers=2,
                       dropout=0.2)


def _config(workdir, **kw):
  base = dict(workdir=str(workdir), batch_size=4, seq_length=8, num_epochs=3,
              learning_rate=3e-3, decay_rate=0.9, save_every=7, patience=0,
              random_offset=True, rng_seed=3)
  base.update(kw)
  return jl.TrainConfig(**base)


def _listing(workdir):
  out = {}
  for root, _, files in os.walk(workdir):
    for f in files:
      path = os.path.join(root, f)
      out[os.path.relpath(path, workdir)] = os.path.getmtime(path)
  return out


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """An uninterrupted 3-epoch run, shared by the tests below."""
  workdir = tmp_path_factory.mktemp('run')
  corpus_path = workdir / 'corpus.txt'
  from conftest import synthetic_lyrics  # pylint: disable=g-import-not-at-top
  corpus_path.write_text(synthetic_lyrics(), encoding='utf-8')
  config = _config(workdir / 'full')
  result = jl.train(str(corpus_path), MODEL, config)
  return str(corpus_path), config, result


def test_run_writes_log_plot_and_checkpoints(finished_run):
  _, config, result = finished_run
  assert result.stopped == 'finished' and result.epochs == 3
  with open(os.path.join(config.workdir, 'log.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  assert [r['epoch'] for r in records] == [1, 2, 3]
  for key in ('epoch', 'step', 'train_loss', 'valid_loss', 'valid_bpc', 'lr',
              'seconds', 'grad_norm', 'chars_per_s'):
    assert key in records[0]
  assert records[-1]['train_loss'] < records[0]['train_loss']
  assert math.isclose(records[1]['lr'], 3e-3 * 0.9, rel_tol=1e-6)
  assert os.path.getsize(os.path.join(config.workdir, 'loss.png')) > 1000
  steps = os.listdir(os.path.join(config.workdir, 'checkpoints'))
  assert str(result.step) in steps


def test_train_tunes_the_default_inference(finished_run):
  _, config, result = finished_run
  from jaylyrics_jax.runs import tune  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.scoring import tuning  # pylint: disable=g-import-not-at-top
  best = jl.load_model(config.workdir)
  # Stored in the best step, so load_model + the default inference use it.
  assert result.inference is not None and result.inference.step == best.step
  assert tune.read_inference_config(best) == result.inference
  assert result.inference.ngram_order == tuning.DEFAULT_NGRAM_ORDER
  assert result.inference_scores['bpc'] <= result.inference_scores[
      'bpc_model'] + 1e-6


def test_checkpoint_is_self_describing_and_matches_the_log(finished_run):
  corpus_path, config, result = finished_run
  model = jl.load_model(config.workdir, which='latest')
  assert model.step == result.step
  assert model.model_config.vocab_size == model.vocab.size
  # Evaluating the checkpoint on the validation text reproduces the log.
  text = jl.load_clean_text(corpus_path)
  _, valid = jl.split_train_valid(text, config.valid_fraction)
  scores = jl.evaluate_text(model.params, model.model_config, model.vocab,
                            valid)
  assert math.isclose(scores['loss'], result.history[-1]['valid_loss'],
                      rel_tol=1e-5)
  assert math.isclose(scores['bpc'], scores['loss'] / math.log(2))
  assert scores['oov_rate'] == 0.0


def test_resume_equals_uninterrupted(finished_run, tmp_path):
  corpus_path, full_config, full = finished_run
  config = dataclasses.replace(full_config, workdir=str(tmp_path / 'resumed'))
  calls = {'n': 0}

  def stop_at_step_11():  # Mid-epoch 1, between two saves.
    calls['n'] += 1
    return calls['n'] == 11

  first = jl.train(corpus_path, MODEL, config, stop_requested=stop_at_step_11)
  assert first.stopped == 'interrupted' and first.step == 11
  assert first.inference is None  # Interrupted: nothing tuned.
  second = jl.train(corpus_path, MODEL, config, resume=True, tune=False)
  assert second.stopped == 'finished' and second.inference is None
  keys = ('epoch', 'step', 'train_loss', 'valid_loss', 'lr', 'grad_norm')
  with open(os.path.join(config.workdir, 'log.jsonl'), encoding='utf-8') as f:
    resumed_log = [json.loads(line) for line in f]
  assert ([{k: r[k] for k in keys} for r in resumed_log] ==
          [{k: r[k] for k in keys} for r in full.history])
  a = jl.load_model(full_config.workdir, which='latest').params
  b = jl.load_model(config.workdir, which='latest').params
  if jax.default_backend() == 'cpu':
    jax.tree.map(np.testing.assert_array_equal, a, b)
  else:  # GPU scatter-adds (the embedding gradient) sum in any order.
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6),
                 a, b)


def test_resume_with_the_other_impl_continues_the_same_run(finished_run,
                                                          tmp_path):
  # impl (fused or flax) changes how the step is computed, not the model.
  corpus_path, full_config, full = finished_run
  config = dataclasses.replace(full_config, workdir=str(tmp_path / 'other'))
  calls = {'n': 0}

  def stop_at_step_11():
    calls['n'] += 1
    return calls['n'] == 11

  assert MODEL.impl == 'fused'
  jl.train(corpus_path, MODEL, config, stop_requested=stop_at_step_11)
  second = jl.train(corpus_path, dataclasses.replace(MODEL, impl='flax'),
                    config, resume=True, tune=False)
  assert second.stopped == 'finished'
  with open(os.path.join(config.workdir, 'log.jsonl'), encoding='utf-8') as f:
    resumed_log = [json.loads(line) for line in f]
  assert [r['step'] for r in resumed_log] == [r['step'] for r in full.history]
  for key in ('train_loss', 'valid_loss', 'grad_norm'):
    np.testing.assert_allclose([r[key] for r in resumed_log],
                               [r[key] for r in full.history], rtol=1e-5)


def test_resume_refuses_another_model_or_corpus(finished_run, tmp_path):
  corpus_path, config, _ = finished_run
  before = _listing(config.workdir)
  with pytest.raises(JaylyricsError, match='rnn_size: checkpoint 16, now 32'):
    jl.train(corpus_path, dataclasses.replace(MODEL, rnn_size=32), config,
             resume=True)
  other = tmp_path / 'other.txt'
  from conftest import synthetic_lyrics  # pylint: disable=g-import-not-at-top
  other.write_text(synthetic_lyrics(seed=5), encoding='utf-8')
  with pytest.raises(JaylyricsError, match='corpus differs'):
    jl.train(str(other), MODEL, config, resume=True)
  with pytest.raises(JaylyricsError, match='resume=True'):
    jl.train(corpus_path, MODEL, config)  # Not asked to resume.
  assert _listing(config.workdir) == before


def test_damaged_newest_checkpoint_falls_back(finished_run, tmp_path):
  _, config, result = finished_run
  workdir = tmp_path / 'copy'
  shutil.copytree(config.workdir, workdir)
  newest = workdir / 'checkpoints' / str(result.step)
  # Cut every data file of the newest step short.
  for root, _, files in os.walk(newest / 'state'):
    for f in files:
      path = os.path.join(root, f)
      with open(path, 'r+b') as fh:
        fh.truncate(max(0, os.path.getsize(path) // 2))
  warnings = []
  model = jl.load_model(str(workdir), which='latest', warn=warnings.append)
  assert model.step < result.step
  assert len(warnings) == 1 and f'Checkpoint {result.step}' in warnings[0]
  assert 'damaged' in warnings[0]


def _resave_and_load(workdir, step, tree, meta):
  """Saves `tree` and `meta` as checkpoint `step` of workdir in place of
  the one there, then loads the latest model: (model, warnings)."""
  manager = checkpointing.open_manager(str(workdir))
  manager.delete(step)
  manager.save(step, args=checkpointing.ocp.args.Composite(
      state=checkpointing.ocp.args.StandardSave(tree),
      meta=checkpointing.ocp.args.JsonSave(meta)), metrics={'valid_loss': 1.0})
  manager.wait_until_finished()
  manager.close()
  warnings = []
  return jl.load_model(str(workdir), which='latest',
                       warn=warnings.append), warnings


def test_flipped_bytes_are_caught_by_the_digest(finished_run, tmp_path):
  _, config, result = finished_run
  workdir = tmp_path / 'copy'
  shutil.copytree(config.workdir, workdir)
  tree, meta, _ = checkpointing.restore(str(workdir), abstract_tree,
                                        step=result.step)
  meta['state_sha256'] = '0' * 64  # As if the arrays had changed on disk.
  model, warnings = _resave_and_load(workdir, result.step, tree, meta)
  assert model.step != result.step and 'digest' in warnings[0]


def test_changed_values_under_the_saved_digest_are_caught(finished_run,
                                                          tmp_path):
  """One parameter changed after the save, the digest saved with the step
  kept: the digest covers the values, not just the shapes."""
  _, config, result = finished_run
  workdir = tmp_path / 'copy'
  shutil.copytree(config.workdir, workdir)
  tree, meta, _ = checkpointing.restore(str(workdir), abstract_tree,
                                        step=result.step)
  leaves, treedef = jax.tree.flatten(tree)
  i = next(i for i, leaf in enumerate(leaves)
           if np.issubdtype(np.asarray(leaf).dtype, np.floating))
  changed = np.array(leaves[i])
  changed.flat[0] += 1.0
  leaves[i] = jax.numpy.asarray(changed)
  model, warnings = _resave_and_load(
      workdir, result.step, jax.tree.unflatten(treedef, leaves), meta)
  assert model.step != result.step and 'digest' in warnings[0]


def test_no_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(JaylyricsError, match='No checkpoint'):
    jl.load_model(str(tmp_path))


def test_nonfinite_loss_stops_without_saving(finished_run, tmp_path):
  corpus_path, _, _ = finished_run
  config = _config(tmp_path / 'nan', learning_rate=math.inf,
                   save_every=1000)
  with pytest.raises(JaylyricsError, match='NaN/Inf at step'):
    jl.train(corpus_path, MODEL, config)
  ckpt = tmp_path / 'nan' / 'checkpoints'
  assert not ckpt.exists() or not os.listdir(ckpt)


def test_corpus_shorter_than_one_batch(tmp_path):
  path = tmp_path / 'short.txt'
  path.write_text('春天\n', encoding='utf-8')
  with pytest.raises(JaylyricsError, match='at least 129'):
    jl.train(str(path), MODEL, _config(tmp_path / 'w', batch_size=8,
                                       seq_length=16))


def test_inference_tuning_and_evaluation(finished_run):
  corpus_path, config, _ = finished_run
  from jaylyrics_jax.runs import tune  # pylint: disable=g-import-not-at-top
  from jaylyrics_jax.scoring import tuning  # pylint: disable=g-import-not-at-top
  tuned, scores = tune.tune_run(config.workdir, corpus_path,
                                     ngram_order=3)
  # Stored in the tuned (best) checkpoint step, and only there.
  best = jl.load_model(config.workdir)
  assert tune.read_inference_config(best) == tuned
  assert tuned.step == best.step
  others = [s for s in checkpointing.saved_steps(config.workdir)
            if s != best.step]
  assert others and tune.read_inference_config(
      jl.load_model(config.workdir, step=others[0])) is None
  for weights in (tuned.cache_weights, tuned.ngram_weights,
                  tuned.full_weights):
    assert abs(sum(weights) - 1) < 1e-9 and min(weights) >= 0
  assert tuned.cache_size in tuning.CACHE_WINDOWS
  # Tuned on this very text, the mixture cannot lose to its parts.
  for part in ('bpc_model', 'bpc_model_cache', 'bpc_ngram',
               'bpc_ngram_cache'):
    assert scores['bpc'] <= scores[part] + 1e-6, part
  model = jl.load_model(config.workdir)
  text = jl.load_clean_text(corpus_path)
  _, valid = jl.split_train_valid(text, config.valid_fraction)
  plain = jl.evaluate_text(model.params, model.model_config, model.vocab,
                           valid)
  assert math.isclose(scores['bpc_model'], plain['bpc'], rel_tol=1e-5)
  # Off switches.
  off = tuning.evaluate_components(
      model, valid, None, dataclasses.replace(tuned, cache_size=0,
                                              ngram_order=0))
  assert off['components'] == ['model']
  assert math.isclose(off['bpc'], plain['bpc'], rel_tol=1e-5)
