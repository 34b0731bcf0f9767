"""Fused training kernels: a whole-window LSTM layer and the output softmax loss.

Both compute exactly the functions of the reference path
(`nn.RNN(nn.OptimizedLSTMCell)`, `nn.Dense` + optax's integer-label
cross-entropy) with hand-written gradients (`jax.custom_vjp`), because on
XLA:CPU the automatic ones cost about twice the matrix products they need
(BUILD_NOTES.md):

- `lstm_window`: the input projection of all T steps is one [B*T, F] x
  [F, 4H] product before the scan. The backward scan carries only (dc, dh)
  and does one [B, 4H] x [4H, H] product per step; the weight gradients are
  three products after it, instead of two accumulated products per step.
- `dense_cross_entropy`: logits, log-sum-exp and the mean loss in the
  forward; the backward is `(softmax - onehot) / n` and two products, with
  no scatter and no second exponential.

Selected by `ModelConfig.impl` ('fused'); 'flax' keeps the reference.
"""

import flax.linen as nn
from flax.linen.recurrent import DenseParams
import jax
import jax.numpy as jnp

_GATES = ('i', 'f', 'g', 'o')  # OptimizedLSTMCell's order and names.


def _cell_step(wh, b, carry, xp_t):
  """One step; returns the new carry and the gate activations (i, f, g, o)."""
  c, h = carry
  z = h @ wh + b + xp_t
  hidden = h.shape[-1]
  i = jax.nn.sigmoid(z[:, :hidden])
  f = jax.nn.sigmoid(z[:, hidden:2 * hidden])
  g = jnp.tanh(z[:, 2 * hidden:3 * hidden])
  o = jax.nn.sigmoid(z[:, 3 * hidden:])
  new_c = f * c + i * g
  new_h = o * jnp.tanh(new_c)
  return (new_c, new_h), jnp.concatenate([i, f, g, o], axis=-1)


def _forward(wi, wh, b, c0, h0, x):
  xs = jnp.swapaxes(x, 0, 1)  # [T, B, F]
  xp = xs @ wi  # All steps' input projections in one product.

  def step(carry, xp_t):
    new, acts = _cell_step(wh, b, carry, xp_t)
    return new, (new[0], new[1], acts)

  (c, h), (cs, hs, acts) = jax.lax.scan(step, (c0, h0), xp)
  return (c, h), xs, cs, hs, acts


@jax.custom_vjp
def lstm_window(wi, wh, b, c0, h0, x):
  """An LSTM layer over a window, equal to `nn.RNN(OptimizedLSTMCell)`.

  Args:
    wi: <float32>[F, 4H] input kernels ii|if|ig|io side by side.
    wh: <float32>[H, 4H] recurrent kernels hi|hf|hg|ho.
    b: <float32>[4H] recurrent biases.
    c0, h0: <float32>[B, H] the carry before the window.
    x: <float32>[B, T, F] inputs.

  Returns:
    ((c, h) after the last step, outputs <float32>[B, T, H]).
  """
  (c, h), _, _, hs, _ = _forward(wi, wh, b, c0, h0, x)
  return (c, h), jnp.swapaxes(hs, 0, 1)


def _lstm_fwd(wi, wh, b, c0, h0, x):
  (c, h), xs, cs, hs, acts = _forward(wi, wh, b, c0, h0, x)
  return ((c, h), jnp.swapaxes(hs, 0, 1)), (wi, wh, c0, h0, xs, cs, hs, acts)


def _lstm_bwd(res, cotangents):
  wi, wh, c0, h0, xs, cs, hs, acts = res
  (dc_last, dh_last), dys = cotangents
  dys = jnp.swapaxes(dys, 0, 1)  # [T, B, H]
  c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
  hidden = h0.shape[-1]

  def step(carry, inputs):
    dc, dh = carry
    dy, a, c, cp = inputs
    i, f = a[:, :hidden], a[:, hidden:2 * hidden]
    g, o = a[:, 2 * hidden:3 * hidden], a[:, 3 * hidden:]
    dh = dh + dy
    tc = jnp.tanh(c)
    dc = dc + dh * o * (1 - tc * tc)
    dz = jnp.concatenate([dc * g * i * (1 - i), dc * cp * f * (1 - f),
                          dc * i * (1 - g * g), dh * tc * o * (1 - o)],
                         axis=-1)
    return (dc * f, dz @ wh.T), dz

  (dc0, dh0), dzs = jax.lax.scan(step, (dc_last, dh_last),
                                 (dys, acts, cs, c_prev), reverse=True)
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
  dwh = jnp.einsum('tbh,tbg->hg', h_prev, dzs)
  dwi = jnp.einsum('tbf,tbg->fg', xs, dzs)
  db = jnp.sum(dzs, axis=(0, 1))
  dx = jnp.swapaxes(dzs @ wi.T, 0, 1)
  return dwi, dwh, db, dc0, dh0, dx


lstm_window.defvjp(_lstm_fwd, _lstm_bwd)


class WindowLSTM(nn.Module):
  """`nn.RNN(nn.OptimizedLSTMCell(features))` over a window, via `lstm_window`.

  Same parameter names, shapes and initialisers as the cell it replaces (so
  `name='cell0'` reads and writes the same parameters), same outputs and
  gradients to float32 rounding.
  """
  features: int

  @nn.compact
  def __call__(self, carry, x):
    """carry: (c, h) <float32>[B, H]; x: [B, T, F] -> (carry, [B, T, H])."""
    c0, h0 = carry
    kernels_i, kernels_h, biases = [], [], []
    for gate in _GATES:
      k, _ = DenseParams(self.features, use_bias=False,
                         name=f'i{gate}')(x)
      kernels_i.append(k)
      k, bias = DenseParams(self.features, use_bias=True,
                            kernel_init=nn.initializers.orthogonal(),
                            name=f'h{gate}')(h0)
      kernels_h.append(k)
      biases.append(bias)
    return lstm_window(jnp.concatenate(kernels_i, axis=-1),
                       jnp.concatenate(kernels_h, axis=-1),
                       jnp.concatenate(biases, axis=-1), c0, h0, x)


@jax.custom_vjp
def dense_cross_entropy(x, kernel, bias, targets):
  """Mean softmax cross-entropy of `x @ kernel + bias` against `targets`.

  Equal to `optax.softmax_cross_entropy_with_integer_labels(nn.Dense(V)(x),
  targets).mean()`. x: <float32>[..., H]; kernel [H, V]; bias [V];
  targets <int32>[...] (same leading shape as x).
  """
  return _dense_ce_fwd(x, kernel, bias, targets)[0]


def _dense_ce_fwd(x, kernel, bias, targets):
  flat = x.reshape(-1, x.shape[-1])
  logits = flat @ kernel + bias
  top = jnp.max(logits, axis=-1, keepdims=True)
  e = jnp.exp(logits - top)
  total = jnp.sum(e, axis=-1, keepdims=True)
  labels = targets.reshape(-1, 1)
  picked = jnp.take_along_axis(logits, labels, axis=-1)
  loss = jnp.mean(jnp.log(total) + top - picked)
  return loss, (x, kernel, e / total, labels)


def _dense_ce_bwd(res, ct):
  x, kernel, probs, labels = res
  flat = x.reshape(-1, x.shape[-1])
  onehot = labels == jnp.arange(probs.shape[-1])[None]
  g = (probs - onehot.astype(probs.dtype)) * (ct / probs.shape[0])
  return ((g @ kernel.T).reshape(x.shape), flat.T @ g, jnp.sum(g, axis=0),
          None)


dense_cross_entropy.defvjp(_dense_ce_fwd, _dense_ce_bwd)
