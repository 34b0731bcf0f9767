"""Attention over the model's own past with a copy (pointer) mixture.

The original project's `--attention` attended over a learned random tensor.
Here each position attends over the last `length` positions the model has
read — the current window and a memory carried from earlier windows without
gradient (as Transformer-XL carries its memory) — and may copy the character
that followed an attended position. As in pointer-sentinel models, one
softmax runs over the attended positions and a learned sentinel; the
sentinel's share is the weight of the ordinary softmax:

    p(w) = g * softmax(logits)(w) + sum_{j: next(j) = w} a_j.

Position p's memory entry is (hidden state h_p, the next character x_{p+1},
stamp p). The query at position P sees exactly the entries with
P - length <= stamp <= P - 1, whether the text comes as one window or one
character at a time (tested), so sampling can repeat a line the way songs do.
The memory is a ring buffer: entry p lives in slot p mod length.

Generation reads one character per step with fixed parameters, so it keeps
a `ProjectedMemory` (`projected`): the entries' key projections and unit
vectors, computed once when an entry is written instead of for all
`length` entries at every step (the key projection of 1,000 entries was
most of a step's time). Training keeps the plain memory: its projections
must follow the parameters as they change.
"""

from typing import Any


import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

EMPTY = -(2 ** 30)  # Stamp of an empty slot: outside every query's range.


@flax.struct.dataclass
class PointerMemory:
  """<float32>[B, L, H] keys (hidden states), <int32>[B, L] values (next
  characters) and stamps (positions), <float32>[B, H] the last hidden state
  (its next character is not read yet) and <int32>[B] characters read."""
  keys: jax.Array
  values: jax.Array
  stamps: jax.Array
  pending: jax.Array
  count: jax.Array


@flax.struct.dataclass
class ProjectedMemory(PointerMemory):
  """A `PointerMemory` for generation: `keys` hold the entries' unit
  vectors h / |h| and `proj` <float32>[B, L, attn_size] their key
  projections (the same scores as the plain memory, each entry projected
  once)."""
  proj: Any = None


def projected(memory: PointerMemory, attn_size: int) -> ProjectedMemory:
  """An empty (`empty_memory`) memory as a `ProjectedMemory`, for
  generation (the zero keys of an empty memory are their own unit
  vectors)."""
  b, length, _ = memory.keys.shape
  return ProjectedMemory(memory.keys, memory.values, memory.stamps,
                         memory.pending, memory.count,
                         jnp.zeros((b, length, attn_size), jnp.float32))


def empty_memory(batch_size: int, length: int, hidden_size: int
                 ) -> PointerMemory:
  return PointerMemory(
      keys=jnp.zeros((batch_size, length, hidden_size), jnp.float32),
      values=jnp.zeros((batch_size, length), jnp.int32),
      stamps=jnp.full((batch_size, length), EMPTY, jnp.int32),
      pending=jnp.zeros((batch_size, hidden_size), jnp.float32),
      count=jnp.zeros((batch_size,), jnp.int32))


def _unit(v: jax.Array) -> jax.Array:
  return v * jax.lax.rsqrt(jnp.sum(v * v, -1, keepdims=True) + 1e-6)


class PointerMixture(nn.Module):
  """Mixes the softmax with copies of what followed attended positions."""
  length: int
  attn_size: int = 64
  # Positions nearer than this are not copied from (1 = every past one).
  min_distance: int = 1

  @nn.compact
  def __call__(self, hidden: jax.Array, inputs: jax.Array, logits: jax.Array,
               memory: PointerMemory) -> tuple[jax.Array, PointerMemory]:
    """Returns log p <float32>[B, T, V] and the updated memory.

    Args:
      hidden: <float32>[B, T, H] the top layer's outputs.
      inputs: <int32>[B, T] the characters read (inputs[:, t] produced
        hidden[:, t]).
      logits: <float32>[B, T, V] the ordinary output layer's logits.
      memory: the state after everything before this window.
    """
    b, t, _ = hidden.shape
    start = memory.count[:, None]                      # [B, 1]
    positions = start + jnp.arange(t)[None, :]         # [B, T]
    pending_stamp = jnp.where(memory.count > 0, memory.count - 1, EMPTY)
    # Candidates: the ring, the pending position (its next character is
    # inputs[:, 0]) and this window's positions (the last one's next
    # character is unknown: no query can see it, see the stamps below).
    values = jnp.concatenate(
        [memory.values, inputs, jnp.zeros((b, 1), jnp.int32)], 1)
    stamps = jnp.concatenate(
        [memory.stamps, pending_stamp[:, None], positions], 1)   # [B, K]
    visible = ((stamps[:, None, :] >= positions[:, :, None] - self.length) &
               (stamps[:, None, :] <= positions[:, :, None] -
                self.min_distance))                                # [B,T,K]

    query = nn.Dense(self.attn_size, name='query')(hidden)
    key_layer = nn.Dense(self.attn_size, use_bias=False, name='key')
    # Plus a neural-cache term, theta * cos(h_t, h_j), theta learned from 10:
    # from the first step the pointer already matches similar contexts
    # (Grave et al.'s cache), and training sharpens it.
    log_theta = self.param('log_theta', nn.initializers.constant(jnp.log(10.0)),
                           ())
    root = jnp.sqrt(float(self.attn_size))
    theta = jnp.exp(log_theta)
    unit_hidden = _unit(hidden)
    fresh = jnp.concatenate([memory.pending[:, None], hidden], 1)
    if isinstance(memory, ProjectedMemory):
      # The ring's projections are stored; only the new entries are made.
      fresh_keys = key_layer(fresh)
      scores = jnp.concatenate([
          jnp.einsum('btd,bkd->btk', query, memory.proj) / root +
          theta * jnp.einsum('bth,bkh->btk', unit_hidden, memory.keys),
          jnp.einsum('btd,bkd->btk', query, fresh_keys) / root +
          theta * jnp.einsum('bth,bkh->btk', unit_hidden, _unit(fresh))], -1)
    else:
      keys = jnp.concatenate([memory.keys, fresh], 1)
      scores = jnp.einsum('btd,bkd->btk', query, key_layer(keys)) / root
      scores += theta * jnp.einsum('bth,bkh->btk', unit_hidden, _unit(keys))
    scores = jnp.where(visible, scores, -jnp.inf)
    sentinel = nn.Dense(1, name='sentinel')(hidden)              # [B, T, 1]
    weights = jax.nn.softmax(jnp.concatenate([scores, sentinel], -1), -1)
    attn, gate = weights[..., :-1], weights[..., -1:]
    vocab = logits.shape[-1]
    batch_index = jnp.arange(b)[:, None, None]
    time_index = jnp.arange(t)[None, :, None]
    copy = jnp.zeros((b, t, vocab), attn.dtype).at[
        batch_index, time_index, values[:, None, :]].add(attn)
    probs = gate * jax.nn.softmax(logits, -1) + copy
    log_probs = jnp.log(jnp.maximum(probs, 1e-30))

    # Write the pending position and this window's positions but the last
    # (T entries with known next characters) into the ring, without gradient.
    new_keys = jax.lax.stop_gradient(
        jnp.concatenate([memory.pending[:, None], hidden[:, :-1]], 1))
    new_stamps = jnp.concatenate(
        [pending_stamp[:, None], positions[:, :-1]], 1)
    new_values = inputs
    if t > self.length:  # Only the newest `length` entries fit.
      new_keys, new_stamps, new_values = (
          new_keys[:, -self.length:], new_stamps[:, -self.length:],
          new_values[:, -self.length:])
    slots = jnp.concatenate([(memory.count - 1)[:, None],
                             positions[:, :-1]], 1)[:, -new_keys.shape[1]:]
    slots = slots % self.length
    rows = jnp.arange(b)[:, None]
    extra = {}
    if isinstance(memory, ProjectedMemory):
      kept = new_keys.shape[1]
      new_keys = _unit(fresh[:, :-1])[:, -kept:]
      extra['proj'] = memory.proj.at[rows, slots].set(
          fresh_keys[:, :-1][:, -kept:])
    memory = type(memory)(
        **extra,
        keys=memory.keys.at[rows, slots].set(new_keys),
        values=memory.values.at[rows, slots].set(new_values),
        stamps=memory.stamps.at[rows, slots].set(new_stamps),
        pending=jax.lax.stop_gradient(hidden[:, -1]),
        count=memory.count + t)
    return log_probs, memory
