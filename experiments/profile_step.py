r"""Where one training step's time goes, JAX (both impls) and torch.nn.LSTM.

  python -m experiments.profile_step [--rounds=9] [--notorch]

The original configuration (embedding 100, 2 x 128 LSTM, vocabulary 2,311,
batch 32, window 16, Adam + clip 5), random token ids. JAX: each part of the
step jitted alone (the whole step, the loss gradient, the LSTM layers, the
output layer with the loss, the optimizer, dispatch), every part timed
round-robin in one process (`--rounds` rounds of 20 calls; median and min
in ms per call), so machine load hits all parts alike. torch: the same model
and step timed, then `torch.profiler` over 50 steps, self CPU time per
operator divided by 50 (the profiler adds its own overhead).
"""

import statistics
import time

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import common
import jaylyrics_jax as jl
from jaylyrics_jax.models import fused
from jaylyrics_jax.models.charlm import CharLM
from jaylyrics_jax.models.charlm import zero_carries

ROUNDS = flags.DEFINE_integer('rounds', 9, 'Round-robin timing rounds.',
                              lower_bound=1)
TORCH = flags.DEFINE_bool('torch', True, 'Also profile torch.nn.LSTM.')

B, T, V, E, H = 32, 16, 2311, 100, 128


def jax_parts(x, y):
  """name -> zero-argument callable running one jitted part once."""
  tx = jl.make_optimizer(jl.TrainConfig(), 1000)
  key = jax.random.key(1)
  parts = {}
  for impl in ('flax', 'fused'):
    cfg = jl.ModelConfig(vocab_size=V, impl=impl)
    step = jl.make_train_step(cfg, tx)
    holder = {'s': jl.create_train_state(cfg, tx, B, jax.random.key(0))}

    def whole(holder=holder, step=step):
      holder['s'], _ = step(holder['s'], (x, y), key)
      return holder['s']

    parts[f'{impl}: whole train step'] = whole
  config = jl.ModelConfig(vocab_size=V)
  params = jl.init_params(config, jax.random.key(0))
  carry = zero_carries(config, B)
  model = CharLM(config)

  def loss_flax(p):
    logits, _ = model.apply({'params': p}, x, carry)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def loss_fused(p):
    features, _ = model.apply({'params': p}, x, carry, fused=True)
    return fused.dense_cross_entropy(features, p['output']['kernel'],
                                     p['output']['bias'], y)

  for impl, loss in (('flax', loss_flax), ('fused', loss_fused)):
    grad = jax.jit(jax.grad(loss))
    parts[f'{impl}: loss gradient (no optimizer)'] = (
        lambda grad=grad: grad(params))

  def lstm(p, use_fused):
    h = p['embed']['embedding'][x]
    for i in range(2):
      if use_fused:
        _, h = fused.WindowLSTM(H).apply({'params': p[f'cell{i}']}, carry[i],
                                         h)
      else:
        _, h = nn.RNN(nn.OptimizedLSTMCell(H)).apply(
            {'params': {'cell': p[f'cell{i}']}}, h, initial_carry=carry[i],
            return_carry=True)
    return h

  cot = jax.random.normal(jax.random.key(3), (B, T, H))
  for impl, use_fused in (('flax', False), ('fused', True)):
    fwd = jax.jit(lambda p, u=use_fused: lstm(p, u))
    bwd = jax.jit(lambda p, u=use_fused: jax.vjp(lambda q: lstm(q, u), p)[1](
        cot))
    parts[f'{impl}: embedding + 2 LSTM layers, forward'] = (
        lambda fwd=fwd: fwd(params))
    parts[f'{impl}: embedding + 2 LSTM layers, forward + backward'] = (
        lambda bwd=bwd: bwd(params))
  hidden = jax.random.normal(jax.random.key(4), (B, T, H))
  w, b = params['output']['kernel'], params['output']['bias']

  def out_flax(w, b, h):
    return optax.softmax_cross_entropy_with_integer_labels(h @ w + b,
                                                           y).mean()

  def out_fused(w, b, h):
    return fused.dense_cross_entropy(h, w, b, y)

  for impl, f in (('flax', out_flax), ('fused', out_fused)):
    fwd, bwd = jax.jit(f), jax.jit(jax.grad(f, (0, 1, 2)))
    parts[f'{impl}: output layer + loss, forward'] = (
        lambda fwd=fwd: fwd(w, b, hidden))
    parts[f'{impl}: output layer + loss, forward + backward'] = (
        lambda bwd=bwd: bwd(w, b, hidden))
  product = jax.jit(lambda h, w: h.reshape(-1, H) @ w)
  parts['both: one [512, 128] x [128, 2311] product'] = (
      lambda: product(hidden, w))
  grads = jax.jit(jax.grad(loss_flax))(params)
  opt_state = tx.init(params)

  @jax.jit
  def optimizer(g, s, p):
    updates, s = tx.update(g, s, p)
    return optax.apply_updates(p, updates), s, optax.tree.norm(g)

  parts['both: clip + Adam + gradient norm'] = (
      lambda: optimizer(grads, opt_state, params))
  identity = jax.jit(lambda s: s, donate_argnums=0)
  held = {'s': jl.create_train_state(config, tx, B, jax.random.key(0))}

  def dispatch():
    held['s'] = identity(held['s'])
    return held['s']

  parts['both: dispatch (jitted identity of the donated state)'] = dispatch
  return parts


def time_round_robin(parts, rounds, calls=20):
  for f in parts.values():
    jax.block_until_ready(f())
  times = {k: [] for k in parts}
  for _ in range(rounds):
    for k, f in parts.items():
      start = time.perf_counter()
      for _ in range(calls):
        out = f()
      jax.block_until_ready(out)
      times[k].append((time.perf_counter() - start) / calls * 1e3)
  return times


def torch_profile(x, y):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import profiler  # pylint: disable=g-import-not-at-top

  class Net(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.embed = torch.nn.Embedding(V, E)
      self.lstm = torch.nn.LSTM(E, H, 2, batch_first=True)
      self.out = torch.nn.Linear(H, V)

    def forward(self, x, state):
      out, state = self.lstm(self.embed(x), state)
      return self.out(out), state

  net = Net()
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  x = torch.from_numpy(np.asarray(x, np.int64))
  y = torch.from_numpy(np.asarray(y, np.int64))
  held = {'state': None}

  def step():
    state = held['state']
    if state is not None:
      state = tuple(s.detach() for s in state)
    logits, held['state'] = net(x, state)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V),
                                             y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()

  for _ in range(10):
    step()
  times = []
  for _ in range(200):
    start = time.perf_counter()
    step()
    times.append((time.perf_counter() - start) * 1e3)
  print(f'torch {torch.__version__}, {torch.get_num_threads()} threads: '
        f'whole step median {statistics.median(times):.2f} ms, min '
        f'{min(times):.2f} (200 steps)')
  with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(50):
      step()
  print('torch.profiler, self CPU ms per step (50 steps):')
  rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
  for e in rows[:16]:
    print(f'  {e.key:45s} {e.self_cpu_time_total / 1e3 / 50:6.2f} ms  '
          f'({e.count // 50} calls)')
  total = sum(e.self_cpu_time_total for e in rows) / 1e3 / 50
  print(f'  {"total under the profiler":45s} {total:6.2f} ms')


def main(argv):
  del argv
  ids = np.random.default_rng(0).integers(0, V, (B, T + 1)).astype(np.int32)
  x, y = jnp.asarray(ids[:, :-1]), jnp.asarray(ids[:, 1:])
  times = time_round_robin(jax_parts(x, y), ROUNDS.value)
  print(f'JAX {jax.__version__}: ms per call, median (min) of '
        f'{ROUNDS.value} round-robin rounds x 20 calls')
  for k in sorted(times, key=lambda k: (k.split(': ')[1], k)):
    print(f'  {k:62s} {statistics.median(times[k]):6.2f} '
          f'({min(times[k]):.2f})')
  if TORCH.value:
    torch_profile(ids[:, :-1], ids[:, 1:])


if __name__ == '__main__':
  common.run(main)
