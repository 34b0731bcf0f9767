"""Every number the library takes is bounded where it is taken: the
temperature, PRNG seeds, lines, candidates and lengths; the draw never
leaves the vocabulary; the command line refuses a bad number in one line."""

import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import cli_command
from conftest import cli_env
from conftest import REPO
from conftest import tiny_songwriter
from jaylyrics_jax import config as cfg
from jaylyrics_jax.generation import processors
from jaylyrics_jax.generation import sampler as sampling
from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.config import TrainConfig
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.generation.songwriter import Songwriter

INF, NAN = float('inf'), float('nan')


def _logits(v, kind):
  ramp = jnp.linspace(-3.0, 3.0, v)
  return {
      'all -inf': jnp.full(v, -INF),
      'all nan': jnp.full(v, NAN),
      'one +inf': jnp.zeros(v).at[v // 2].set(INF),
      'two +inf': jnp.full(v, -INF).at[1].set(INF).at[v - 1].set(INF),
      'nan and +inf': jnp.full(v, NAN).at[v - 1].set(INF),
      'nan and finite': jnp.full(v, NAN).at[min(2, v - 1)].set(0.5),
      '-inf and nan': jnp.full(v, -INF).at[0].set(NAN),
      'ramp / 1e-40': ramp / jnp.float32(1e-40),
      'ramp * 1e38': ramp * jnp.float32(1e38),
      'ramp / 1e38': ramp / jnp.float32(1e38),
      'float32 max': jnp.full(v, jnp.finfo(jnp.float32).max),
  }[kind]


@pytest.mark.parametrize('v', [1, 2, 10, 37, 2311])
@pytest.mark.parametrize('kind', [
    'all -inf', 'all nan', 'one +inf', 'two +inf', 'nan and +inf',
    'nan and finite', '-inf and nan', 'ramp / 1e-40', 'ramp * 1e38',
    'ramp / 1e38', 'float32 max'])
def test_draw_stays_in_the_vocabulary(v, kind):
  logits = _logits(v, kind)
  keys = jax.random.split(jax.random.key(0), 400)
  ids = np.asarray(jax.jit(jax.vmap(sampling.draw, (0, None)))(keys, logits))
  assert ids.min() >= 0 and ids.max() < v, (kind, ids.min(), ids.max())
  host = np.asarray(logits)
  if np.isposinf(host).any():  # The +inf entries take all the mass.
    assert np.isposinf(host[ids]).all(), kind
  elif (np.isfinite(host) | np.isneginf(host)).all() and np.isfinite(
      host).any():
    assert np.isfinite(host[ids]).all(), kind
  elif kind == 'nan and finite':
    assert (ids == min(2, v - 1)).all()  # NaN is never drawn.


def test_finite_logits_draw_as_before():
  """The guards change nothing for finite logits: the draw still follows
  the softmax (chi-square against it over 20,000 draws)."""
  logits = jnp.asarray([0.0, 1.0, 2.0, -1.0, 0.5, 3.0, -2.0], jnp.float32)
  keys = jax.random.split(jax.random.key(1), 20_000)
  ids = np.asarray(jax.jit(jax.vmap(sampling.draw, (0, None)))(keys, logits))
  counts = np.bincount(ids, minlength=7)
  expected = 20_000 * np.asarray(jax.nn.softmax(logits))
  chi2 = float(((counts - expected) ** 2 / expected).sum())
  assert chi2 < 22.5, (counts, expected)  # p = 0.001 at 6 degrees.


def test_generate_with_broken_logits_stays_in_the_vocabulary():
  v = 11
  def step_fn(carry, token):  # Each step worse: -inf, NaN, +inf, huge.
    bad = jnp.stack([jnp.full(v, -INF), jnp.full(v, NAN),
                     jnp.zeros(v).at[token % v].set(INF),
                     jnp.full(v, 3e38)])[carry % 4]
    return bad, carry + 1
  tokens, _, _ = jax.jit(sampling.generate, static_argnums=(0, 4, 5))(
      step_fn, jnp.int32(0), jnp.int32(0), jax.random.key(2), 64,
      processors.Chain())
  tokens = np.asarray(tokens)
  assert tokens.min() >= 0 and tokens.max() < v


@pytest.mark.parametrize('temperature', [1e-40, 1.2e-38, 0.0, -1.0, NAN,
                                         INF, 1e38, 9.9e-4, 1000.5])
def test_temperature_out_of_bounds_is_refused(temperature):
  with pytest.raises(JaylyricsError, match=r'temperature=.*\[0.001, 1000\]'):
    SamplingConfig(temperature=temperature)


def test_temperature_bounds_themselves_work():
  for temperature in (cfg.MIN_TEMPERATURE, cfg.MAX_TEMPERATURE):
    assert SamplingConfig(temperature=temperature).temperature == temperature


@pytest.mark.parametrize('seed', [2**32, 2**63, 2**64, 10**400, -1, True,
                                  1.5, '7'])
def test_rng_seed_out_of_range_is_refused(seed):
  with pytest.raises(JaylyricsError, match=r'rng_seed=.*0\.\.4294967295'):
    cfg.check_rng_seed(seed)
  if isinstance(seed, int) and not isinstance(seed, bool):
    with pytest.raises(JaylyricsError, match='rng_seed='):
      TrainConfig(rng_seed=seed)


def test_rng_seed_range_gives_distinct_keys():
  cfg.check_rng_seed(0)
  cfg.check_rng_seed(cfg.MAX_RNG_SEED)
  assert TrainConfig(rng_seed=cfg.MAX_RNG_SEED).rng_seed == 2**32 - 1
  data = lambda s: np.asarray(jax.random.key_data(jax.random.key(s)))
  assert not np.array_equal(data(0), data(cfg.MAX_RNG_SEED))
  # Why the range stops there: one past it is key 0 again.
  assert np.array_equal(data(0), data(cfg.MAX_RNG_SEED + 1))


def test_lines_best_of_and_lengths_are_bounded():
  with pytest.raises(JaylyricsError, match='lines=10001'):
    SamplingConfig(lines=cfg.MAX_LINES + 1)
  with pytest.raises(JaylyricsError, match='best_of=1025'):
    SamplingConfig(best_of=cfg.MAX_BEST_OF + 1)
  config = ModelConfig(vocab_size=5, embedding_size=4, rnn_size=4,
                       num_layers=1)
  params = init_params(config, jax.random.key(0))
  seed = np.asarray([1], np.int32)
  key = jax.random.key(0)
  for length, rows, match in ((cfg.MAX_LENGTH + 1, 1, 'length='),
                              (0, 1, 'length=0'),
                              (10, cfg.MAX_ROWS + 1, 'num_samples='),
                              (cfg.MAX_LENGTH, 512, 'characters in one')):
    with pytest.raises(JaylyricsError, match=match):
      sampling.sample_tokens(params, config, seed, key, length,
                             processors.Chain(), num_samples=rows)


@pytest.fixture(scope='module')
def writer():
  return tiny_songwriter(meta={}, step=1)


def test_songwriter_bounds(writer):
  with pytest.raises(JaylyricsError, match=r'rng_seed=18446744073709551616'):
    writer.write('春', 2, rng_seed=2**64)
  with pytest.raises(JaylyricsError, match='temperature=1e-40'):
    writer.write('春', 2, temperature=1e-40)
  with pytest.raises(JaylyricsError, match='seed holds 3 lines'):
    writer.write('春 天  夏', 2)
  with pytest.raises(JaylyricsError, match="song's lines"):
    writer.rewrite_line(['春天', '夏😀'], 0, '春')


def test_a_rewritten_line_always_differs(writer):
  song = writer.write('春天', lines=4, rng_seed=4)
  texts = [line.text for line in song.lines]
  for rng_seed in range(10):
    index = rng_seed % 4
    new = [line.text for line in
           writer.rewrite_line(texts, index, '春天', rng_seed=rng_seed).lines]
    assert new[index] != texts[index], rng_seed
    assert new[:index] + new[index + 1:] == texts[:index] + texts[index + 1:]


def test_a_line_no_candidate_changes_says_so(writer):
  # Greedy: every candidate writes the line the song already has.
  greedy = Songwriter(writer.model, None, writer.train_text,
                      SamplingConfig(mode='argmax'))
  song = greedy.write('春天', lines=3)
  texts = [line.text for line in song.lines]
  with pytest.raises(JaylyricsError, match='candidates wrote line 2'):
    greedy.rewrite_line(texts, 1, '春天', rng_seed=3)


def test_on_chunk_sees_each_chunk_and_can_stop_a_request(writer):
  lines = writer  # The line writer reports after each call of 8 lines.
  seen = []
  lines.write('春', 24, rng_seed=1, on_chunk=seen.append)
  assert seen and seen == sorted(seen)
  writer = Songwriter(lines.model, None, lines.train_text, writer=None)
  plan = writer.plan_write('春', 64, best_of=8)
  assert plan.chunk < plan.length and plan.work == plan.length * 8
  seen = []
  song = writer.write('春', 64, best_of=8, rng_seed=1, on_chunk=seen.append)
  assert seen == list(range(plan.chunk, plan.length + 1, plan.chunk))
  assert song.to_dict() == writer.write('春', 64, best_of=8,
                                       rng_seed=1).to_dict()

  class Stop(Exception):
    pass

  def stop(done):
    raise Stop(done)

  with pytest.raises(Stop):
    writer.write('春', 64, best_of=8, rng_seed=1, on_chunk=stop)
  with pytest.raises(Stop):
    lines.write('春', 24, rng_seed=1, on_chunk=stop)


@pytest.mark.slow
@pytest.mark.parametrize('module, args, flag', [
    ('sample', ['--rng_seed=18446744073709551616'], '--rng_seed'),
    ('sample', ['--rng_seed=-1'], '--rng_seed'),
    ('sample', ['--temperature=1e-40'], '--temperature'),
    ('sample', ['--temperature=inf'], '--temperature'),
    ('sample', ['--length=10000000'], '--length'),
    ('sample', ['--best_of=100000'], '--best_of'),
    ('serve', ['--rng_seed=99999999999999999999'], '--rng_seed'),
    ('serve', ['--work_budget=0'], '--work_budget'),
    ('train', ['--rng_seed=18446744073709551616'], '--rng_seed'),
])
def test_cli_bad_number_is_one_line_and_exit_2(tmp_path, compilation_cache,
                                               module, args, flag):
  proc = subprocess.run(
      cli_command(module, f'--workdir={tmp_path}', *args,
                  cache=compilation_cache),
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'error: flag {flag}='), (
      proc.stderr)
  assert 'Traceback' not in proc.stderr and not proc.stdout
