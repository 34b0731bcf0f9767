"""The compiled sampler has no `while` loop besides its own scans.

On a GPU every iteration of an XLA `while` reads its condition back on the
host, so a `while` inside the sampling scan is a round trip per character
(a binary search by `jnp.searchsorted`'s default method was eight of them).
The loops of a compiled program are the same on every backend, so the
optimized HLO is checked here on CPU.
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


def _whiles(hlo: str) -> list[tuple[str, bool]]:
  """The `while` ops of an HLO module's text: for each, the op name it was
  lowered from (e.g. `jit(start)/vmap()/while`) and whether it runs inside
  another loop (in a computation reachable from a `while` body)."""
  computations = dict(re.findall(r'^(?:ENTRY )?%(\S+) .*?\{\n(.*?)\n\}$',
                                 hlo, re.M | re.S))
  calls = {name: set(re.findall(r'%([\w.\-]+)', text)) & set(computations)
           for name, text in computations.items()}
  inside = set()  # Every computation a while body reaches.
  todo = [b for text in computations.values()
          for b in re.findall(r'\swhile\(.*?body=%([\w.\-]+)', text)]
  while todo:
    name = todo.pop()
    if name not in inside:
      inside.add(name)
      todo.extend(calls[name])
  found = []
  for name, text in computations.items():
    for line in re.findall(r'^.*\swhile\(.*$', text, re.M):
      found.append((re.search(r'op_name="([^"]*)"', line).group(1),
                    name in inside))
  return found


def _check_loops(whiles: list[tuple[str, bool]], scans: int):
  """No loop inside a loop, and no loop but the scans: jax lowers
  threefry's rounds to a loop on CPU (unrolled on a GPU), which the sampler
  runs once before its scan, for all the steps' uniform numbers."""
  assert not any(nested for _, nested in whiles), whiles
  rounds = [name for name, _ in whiles if 'jit(_uniform)' in name]
  assert len(rounds) <= 1, whiles
  assert len(whiles) - len(rounds) == scans, whiles


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


def _sampler_hlo(setting, config: SamplingConfig, with_mixture: bool,
                 padded: bool, num_samples: int) -> str:
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
  return start.lower(params, mix.tables if mix else None, decoder.tables,
                     jnp.asarray(seed_ids, jnp.int32), jnp.int32(SEED_LENGTH),
                     keys).compile().as_text()


@pytest.mark.parametrize('with_mixture, padded, num_samples',
                         [(False, False, 1), (True, True, 4)])
def test_every_control_compiles_to_no_loop_but_the_scans(
    setting, with_mixture, padded, num_samples):
  # The scans: decode's over the generated characters, and the reading of
  # the seed: one scan when padded; else the chain's, and the mixture's or
  # the model's (one per LSTM layer).
  scans = 1 + (1 if padded else 1 + (1 if with_mixture else 2))
  _check_loops(_whiles(_sampler_hlo(setting, SamplingConfig(), with_mixture,
                                    padded, num_samples)), scans)


def test_top_k_top_p_and_greedy_mode_add_no_loop(setting):
  config = SamplingConfig(top_k=5, top_p=0.9, mode='combined')
  _check_loops(_whiles(_sampler_hlo(setting, config, with_mixture=True,
                                    padded=False, num_samples=1)), 3)


def test_the_mixture_reading_a_text_is_one_loop(setting):
  text, vocab, model_config, params, mix, _ = setting
  step = mixture.make_mixture_step(model_config, mix.spec)

  @jax.jit
  def read(ids):
    carry = mixture.initial_carry(model_config, mix.spec, ids.shape[0])
    return jax.lax.scan(lambda c, t: step(params, mix.tables, c, t)[::-1],
                        carry, ids)[1]

  ids = jnp.asarray(vocab.encode(text[:40]), jnp.int32)
  _check_loops(_whiles(read.lower(ids).compile().as_text()), 1)


def test_the_count_sees_a_search_loop_inside_a_scan():
  # What the check guards against: the default searchsorted is a `while`.
  keys = jnp.arange(0, 3000, 3, dtype=jnp.int32)

  @jax.jit
  def searched(queries):
    return jax.lax.scan(lambda c, q: (c + jnp.searchsorted(keys, q), None),
                        jnp.int32(0), queries)[0]

  whiles = _whiles(searched.lower(jnp.arange(9)).compile().as_text())
  assert len(whiles) == 2, whiles
  ((name, nested),) = [w for w in whiles if 'searchsorted' in w[0]]
  assert nested, whiles
  with pytest.raises(AssertionError):
    _check_loops(whiles, 1)
