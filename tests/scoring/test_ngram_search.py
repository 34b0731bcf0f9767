"""`ngram.insertion_index` and its loop-free search equal numpy's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaylyrics_jax.scoring import ngram


@pytest.mark.parametrize('size', [1, 2, 3, 7, 8, 9, 255, 256, 257, 40_000])
@pytest.mark.parametrize('side', ['left', 'right'])
@pytest.mark.parametrize('search', [
    ngram.insertion_index,
    ngram._blocked_index,  # What other backends than CPU run.  pylint: disable=protected-access
])
def test_insertion_index_equals_numpy(size, side, search):
  rng = np.random.default_rng(size)
  # Repeated keys too (a CDF with empty blocks has them).
  keys = np.sort(rng.integers(-50, 3 * size, size)).astype(np.int32)
  queries = np.concatenate([keys, keys - 1, keys + 1, [-10**6, 10**6],
                            rng.integers(-60, 3 * size + 10, 50)])
  got = jax.jit(lambda k, q: search(k, q, side))(
      jnp.asarray(keys), jnp.asarray(queries, jnp.int32))
  np.testing.assert_array_equal(got, np.searchsorted(keys, queries, side))


def test_lookup_finds_present_keys_only():
  keys = ngram.device_keys(np.array([3, 8, 20, 21]), 'too many')
  queries = jnp.asarray([3, 8, 20, 21, 0, 9, 22, -1], jnp.int32)
  np.testing.assert_array_equal(ngram.lookup(keys, queries),
                                [0, 1, 2, 3, -1, -1, -1, -1])
