"""Data parallelism: forced CPU devices in one process, and two processes."""

import json
import os
import socket
import subprocess
import sys

import pytest

import jaylyrics_jax as jl
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.training import parallel
from conftest import REPO
from conftest import synthetic_lyrics

TINY = ['--rnn_size=16', '--embedding_size=8', '--batch_size=4',
        '--seq_length=8', '--num_epochs=2', '--patience=0', '--save_every=20']


def _train(corpus, workdir, *extra, cache, env=None):
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.train', f'--corpus={corpus}',
       f'--workdir={workdir}', *TINY, *extra, f'--compilation_cache={cache}'],
      cwd=REPO, env=dict(os.environ, PYTHONUTF8='1', **(env or {})),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
  out, err = proc.communicate(timeout=400)
  assert proc.returncode == 0, err
  return out


def _log(workdir):
  with open(os.path.join(workdir, 'log.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f]


def _assert_same_losses(a, b):
  assert len(a) == len(b) == 2
  for x, y in zip(a, b):
    assert x['step'] == y['step']
    for key in ('train_loss', 'valid_loss'):
      assert x[key] == pytest.approx(y[key], abs=1e-5)


@pytest.fixture(scope='module')
def single(tmp_path_factory, compilation_cache):
  root = tmp_path_factory.mktemp('parallel')
  corpus = root / 'lyrics.txt'
  corpus.write_text(synthetic_lyrics(num_lines=200, seed=1), encoding='utf-8')
  _finish(_train(corpus, root / 'single', cache=compilation_cache))
  return corpus, root / 'single', compilation_cache


def test_two_forced_cpu_devices_in_one_process(single, tmp_path):
  corpus, single_dir, cache = single
  out = _finish(_train(
      corpus, tmp_path / 'mesh', '--num_devices=2', cache=cache,
      env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}))
  assert 'Done (finished)' in out
  _assert_same_losses(_log(tmp_path / 'mesh'), _log(single_dir))


def test_two_processes_with_gloo_match_one(single, tmp_path):
  corpus, single_dir, cache = single
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  workdir = tmp_path / 'two'
  procs = [_train(corpus, workdir, f'--coordinator_address=127.0.0.1:{port}',
                  '--num_processes=2', f'--process_id={i}', cache=cache)
           for i in range(2)]
  outs = [_finish(p) for p in procs]
  assert 'epoch   2' in outs[0] and 'Done (finished)' in outs[0]
  assert 'epoch' not in outs[1]  # Only process 0 reports and writes logs.
  assert 'python -m experiments.tune' in outs[0]
  _assert_same_losses(_log(workdir), _log(single_dir))
  assert (workdir / 'loss.png').exists()
  # The checkpoint written by two processes samples in one.
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.sample', f'--workdir={workdir}',
       '--seed=春', '--length=20', '--nonewlines',
       f'--compilation_cache={cache}'],
      cwd=REPO, env=dict(os.environ, PYTHONUTF8='1'), capture_output=True,
      text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().startswith('春')
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.tune', f'--workdir={workdir}',
       '--ngram_order=3', f'--compilation_cache={cache}'],
      cwd=REPO, env=dict(os.environ, PYTHONUTF8='1'), capture_output=True,
      text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert 'bpc_mixture' in json.loads(proc.stdout.strip().splitlines()[-1])
  assert os.path.isdir(workdir / 'checkpoints' / str(
      json.loads(proc.stdout.strip().splitlines()[-1])['settings']['step'])
                       / 'inference')


def test_mesh_errors(tmp_path):
  with pytest.raises(JaylyricsError, match='only 1 devices are visible'):
    parallel.data_mesh(2, 4)
  assert parallel.data_mesh(1, 4) is None
  assert parallel.data_mesh(0, 4) is None  # All (one) devices.
  with pytest.raises(JaylyricsError, match='num_devices'):
    jl.TrainConfig(num_devices=-1)
