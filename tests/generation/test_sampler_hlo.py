"""The sampler, lowered for a GPU, has no `while` loop besides its scans.

On a GPU every iteration of a `while` reads its condition back on the host,
so a `while` inside the sampling scan is a round trip per character (a
binary search by `jnp.searchsorted`'s default method was eight of them).
The program is lowered for CUDA with `jax.export`, which needs no GPU, and
its StableHLO read: the loops a GPU would run. (On CPU, where a loop costs
no round trip, the sorted search keeps its `while`: `ngram.insertion_index`.)
"""

import re

from conftest import synthetic_lyrics
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaylyrics_jax.config import ModelConfig
from jaylyrics_jax.config import SamplingConfig
from jaylyrics_jax.data.corpus import clean_text
from jaylyrics_jax.data.vocab import build_vocabulary
from jaylyrics_jax.generation import controls
from jaylyrics_jax.generation import sampler
from jaylyrics_jax.models.charlm import init_params
from jaylyrics_jax.scoring import mixture
from jaylyrics_jax.scoring import tuning

SEED_LENGTH = 5
LENGTH = 24


def _gpu_loops(jitted, *args) -> list[bool]:
  """The `while` ops of `jitted(*args)` lowered for CUDA: for each, whether
  it runs inside another loop (in a loop's region, or in a function called,
  at any depth, from one)."""
  text = jax.export.export(jitted, platforms=('cuda',))(*args).mlir_module()
  functions = re.split(r'\n(?=\s*func\.func )', text)
  loops, called_inside, calls = [], set(), {}
  for function in functions:
    name = re.search(r'func\.func (?:\w+ )*@([\w.$-]+)', function)
    name = name.group(1) if name else ''
    depth, open_loops, own = 0, [], []
    for line in function.splitlines():
      if 'stablehlo.while' in line:
        own.append(bool(open_loops))
        open_loops.append(depth)
      for callee in re.findall(r'call @([\w.$-]+)', line):
        calls.setdefault(name, set()).add(callee)
        if open_loops:
          called_inside.add(callee)
      depth += line.count('{') - line.count('}')
      while open_loops and depth <= open_loops[-1] and '}' in line:
        open_loops.pop()
    loops.append((name, own))
  todo = list(called_inside)
  while todo:
    for callee in calls.get(todo.pop(), ()):
      if callee not in called_inside:
        called_inside.add(callee)
        todo.append(callee)
  return [nested or name in called_inside
          for name, own in loops for nested in own]


@pytest.fixture(scope='module')
def setting():
  text = clean_text(synthetic_lyrics(num_lines=60, seed=1))
  vocab = build_vocabulary(text)
  config = ModelConfig(vocab_size=vocab.size, embedding_size=8, rnn_size=16,
                       num_layers=2)
  params = init_params(config, jax.random.key(0))
  ids = vocab.encode(text)
  kn = tuning.kneser_ney(ids, vocab.size, 6)
  spec = mixture.MixtureSpec((0.8, 0.0, 0.2, 0.0), ngram_order=6)
  seed = text.replace(' ', '')[:SEED_LENGTH]
  return text, vocab, config, params, mixture.device_mixture(spec, kn), seed


def _sampler_loops(setting, config: SamplingConfig, with_mixture: bool,
                   padded: bool, num_samples: int) -> list[bool]:
  text, vocab, model_config, params, mix, seed = setting
  decoder = controls.build_decoder(config, vocab, train_text=text,
                                   total_length=SEED_LENGTH + LENGTH)
  assert len(decoder.chain.processors) >= (5 if config.max_copy else 1)
  mix = mix if with_mixture else None
  start, _ = sampler._compiled(model_config, decoder.chain,
                               mix.spec if mix else None,
                               config.min_copy_distance,
                               SEED_LENGTH + 3 + LENGTH, padded)
  seed_ids = np.pad(vocab.encode(seed), (0, 3 if padded else 0))
  keys = sampler.step_keys(jax.random.key(1), num_samples, LENGTH)
  return _gpu_loops(start, params, mix.tables if mix else None,
                    decoder.tables, jnp.asarray(seed_ids, jnp.int32),
                    jnp.int32(SEED_LENGTH), keys)


@pytest.mark.parametrize('with_mixture, padded, num_samples',
                         [(False, False, 1), (True, True, 4)])
def test_every_control_compiles_to_no_loop_but_the_scans(
    setting, with_mixture, padded, num_samples):
  # The scans: decode's over the generated characters, and the reading of
  # the seed: one scan when padded; else the chain's, and the mixture's or
  # the model's (one per LSTM layer).
  scans = 1 + (1 if padded else 1 + (1 if with_mixture else 2))
  loops = _sampler_loops(setting, SamplingConfig(), with_mixture, padded,
                         num_samples)
  assert loops == [False] * scans


def test_top_k_top_p_and_greedy_mode_add_no_loop(setting):
  config = SamplingConfig(top_k=5, top_p=0.9, mode='combined')
  loops = _sampler_loops(setting, config, with_mixture=True, padded=False,
                         num_samples=1)
  assert loops == [False] * 3


def test_the_mixture_reading_a_text_is_one_loop(setting):
  text, vocab, model_config, params, mix, _ = setting
  step = mixture.make_mixture_step(model_config, mix.spec)

  @jax.jit
  def read(ids):
    carry = mixture.initial_carry(model_config, mix.spec, ids.shape[0])
    return jax.lax.scan(lambda c, t: step(params, mix.tables, c, t)[::-1],
                        carry, ids)[1]

  ids = jnp.asarray(vocab.encode(text[:40]), jnp.int32)
  assert _gpu_loops(read, ids) == [False]


def test_the_count_sees_a_search_loop_inside_a_scan():
  # What the check guards against: the default searchsorted is a `while`.
  keys = jnp.arange(0, 3000, 3, dtype=jnp.int32)

  @jax.jit
  def searched(queries):
    return jax.lax.scan(lambda c, q: (c + jnp.searchsorted(keys, q), None),
                        jnp.int32(0), queries)[0]

  assert sorted(_gpu_loops(searched, jnp.arange(9))) == [False, True]
