"""decode draws its uniform numbers before the scan: the same tokens as
`draw` with each step's key."""

import jax
import jax.numpy as jnp
import numpy as np

from jaylyrics_jax.generation import processors
from jaylyrics_jax.generation.sampler import decode
from jaylyrics_jax.generation.sampler import DecodeState
from jaylyrics_jax.generation.sampler import draw


def test_decode_gives_draws_tokens_step_by_step():
  vocab_size, length = 300, 40
  table = jax.random.normal(jax.random.key(0), (vocab_size, vocab_size))

  def step_fn(carry, token):  # Logits depend on the token and the step.
    return table[token] * (1.0 + 0.1 * carry), carry + 1

  keys = jax.random.split(jax.random.key(5), length)
  state = DecodeState(jnp.zeros((), jnp.float32), jnp.int32(7), ())
  tokens, _, _ = jax.jit(lambda s, k: decode(step_fn, s, k,
                                             processors.Chain()))(state, keys)
  carry, token, expected = jnp.zeros(()), jnp.int32(7), []
  for key in keys:
    logits, carry = step_fn(carry, token)
    token = draw(key, logits)
    expected.append(int(token))
  np.testing.assert_array_equal(tokens, expected)
  assert len(set(expected)) > 10  # Really drawn, not one repeated token.
