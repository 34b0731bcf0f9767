r"""Measures training, sampling and evaluation speed on this JAX platform.

  python -m experiments.benchmark [--json] [--vs_torch]

Every figure is a median of timed repeats after compilation. With --json the
last line is one JSON object holding every figure.
"""

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags
import jax
import numpy as np

from experiments import common
import jaylyrics_jax as jl
from jaylyrics_jax.data import batching
from jaylyrics_jax.data import corpus
from jaylyrics_jax.scoring import mixture as mixture_step
from jaylyrics_jax.scoring import stream as evaluation
from jaylyrics_jax.scoring import tuning as inference

SHARED_CORPUS = os.path.join('..', 'shared', 'data', 'jaychou', 'origin.txt')

JSON = flags.DEFINE_bool('json', False, 'End with one JSON line of figures.')
VS_TORCH = flags.DEFINE_bool(
    'vs_torch', False, 'Also train the same model with torch.nn.LSTM in this '
    'run (when PyTorch is installed), its timed repeats alternating with '
    "JAX's, and report the ratio.")
CONFIGS = flags.DEFINE_list(
    'configs', ['original', 'large', 'best'],
    'Training configurations to time: original (2x128, batch 32, seq 16), '
    'large (2x512, batch 64, seq 64), best (experiments/best.flags, if any).')
REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats per figure.',
                               lower_bound=1)
SECONDS = flags.DEFINE_float(
    'seconds', 1.0, 'Target seconds per timed training repeat.',
    lower_bound=0.0)
FIRST_STEP = flags.DEFINE_bool(
    'first_step', True, 'Time process start to the first finished training '
    'step, cold and with a warm compilation cache (two child processes).')
IMPL = flags.DEFINE_enum(
    'impl', jl.ModelConfig.impl, list(jl.config.IMPLS),
    'How the timed train step is computed (ModelConfig.impl): fused, or the '
    'flax/optax reference.')
PROBE = flags.DEFINE_bool('first_step_probe', False,
                          'Internal: train one step and exit.')

CONFIG_SHAPES = {
    'original': dict(model=dict(embedding_size=100, rnn_size=128, num_layers=2),
                     batch_size=32, seq_length=16),
    'large': dict(model=dict(embedding_size=100, rnn_size=512, num_layers=2),
                  batch_size=64, seq_length=64),
}


def _corpus_text() -> str | None:
  for path in (SHARED_CORPUS, corpus.DEFAULT_CORPUS_PATH):
    if os.path.exists(path):
      return jl.load_clean_text(path)
  return None


def _corpus_ids() -> tuple[np.ndarray, int, str]:
  """Encoded text, vocabulary size, and where it came from."""
  for path in (SHARED_CORPUS, corpus.DEFAULT_CORPUS_PATH):
    if os.path.exists(path):
      text = jl.load_clean_text(path)
      vocab = jl.build_vocabulary(text)
      return vocab.encode(text), vocab.size, f'real corpus {path}'
  rng = np.random.default_rng(0)
  # Zipf-like synthetic ids with the real vocabulary size.
  ids = np.minimum(rng.zipf(1.3, 51_000) - 1, 2310).astype(np.int32)
  return ids, 2311, 'synthetic text (no corpus found), vocabulary 2,311'


def _best_flags() -> dict | None:
  path = os.path.join('experiments', 'best.flags')
  if not os.path.exists(path):
    return None
  values = {}
  with open(path, encoding='utf-8') as f:
    for line in f:
      line = line.strip()
      if line.startswith('--') and '=' in line:
        key, value = line[2:].split('=', 1)
        values[key] = value
  model = {k: int(values[k]) for k in ('embedding_size', 'rnn_size',
                                       'num_layers', 'attn_length',
                                       'attn_size') if k in values}
  model.update({k: float(values[k]) for k in ('dropout', 'embed_init_std')
                if k in values})
  if 'rnncell' in values:
    model['cell'] = values['rnncell']
  return dict(model=model, batch_size=int(values.get('batch_size', 32)),
              seq_length=int(values.get('seq_length', 16)))


def _median_rate(run, units: float, repeats: int) -> float:
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    rates.append(units / (time.perf_counter() - start))
  return statistics.median(rates)


def _training_runner(ids, vocab_size, shape):
  """(steps(n), state holder) for the library's jitted train step."""
  model_config = jl.ModelConfig(vocab_size=vocab_size, impl=IMPL.value,
                                **shape['model'])
  b, t = shape['batch_size'], shape['seq_length']
  config = jl.TrainConfig(batch_size=b, seq_length=t)
  inputs, targets = batching.epoch_batches(ids, b, t)
  tx = jl.make_optimizer(config, len(inputs))
  train_step = jl.make_train_step(model_config, tx)
  state = jl.create_train_state(model_config, tx, b, jax.random.key(0))
  key = jax.random.key(1)
  holder = {'state': state, 'i': 0}

  def steps(n):
    s = holder['state']
    for _ in range(n):
      i = holder['i'] % len(inputs)
      s, _ = train_step(s, (inputs[i], targets[i]), key)
      holder['i'] += 1
    jax.block_until_ready(s)
    holder['state'] = s

  return steps, holder


def _steps_per_repeat(steps, seconds) -> int:
  start = time.perf_counter()
  steps(3)
  per_step = (time.perf_counter() - start) / 3
  return max(3, int(seconds / per_step))


def time_training(ids, vocab_size, shape, repeats, seconds,
                  vs_torch=False) -> dict:
  """Steady-state chars/s of the library's jitted train step.

  With `vs_torch`, the same model in torch.nn.LSTM (`time_torch`) is timed
  in the same process, its repeats alternating with JAX's, so both see the
  same machine load; its figures are under 'torch' (None without PyTorch).
  """
  steps, holder = _training_runner(ids, vocab_size, shape)
  b, t = shape['batch_size'], shape['seq_length']
  start = time.perf_counter()
  steps(1)
  compile_s = time.perf_counter() - start
  n = _steps_per_repeat(steps, seconds)

  def run():
    steps(n)
    return n * b * t

  runs = [run]
  torch_run = time_torch(ids, vocab_size, shape, seconds) if vs_torch else None
  if torch_run is not None:
    runs.append(torch_run['run'])
  rates = [[] for _ in runs]
  for _ in range(repeats):
    for run, out in zip(runs, rates):
      start = time.perf_counter()
      chars = run()
      out.append(chars / (time.perf_counter() - start))
  result = {'chars_per_s': statistics.median(rates[0]), 'steps_per_repeat': n,
            'first_step_compile_s': compile_s,
            'params': sum(x.size for x in jax.tree.leaves(
                holder['state'].params)), 'torch': None}
  if torch_run is not None:
    result['torch'] = {k: v for k, v in torch_run.items() if k != 'run'}
    result['torch']['chars_per_s'] = statistics.median(rates[1])
  return result


def time_torch(ids, vocab_size, shape, seconds) -> dict | None:
  """The same model and batching with torch.nn.LSTM, in this process.

  Returns None without PyTorch, else 'run' (one timed repeat; returns the
  characters it trained on), 'device', 'torch_version', 'threads'.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  m, b, t = shape['model'], shape['batch_size'], shape['seq_length']

  class Net(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.embed = torch.nn.Embedding(vocab_size, m['embedding_size'])
      self.lstm = torch.nn.LSTM(m['embedding_size'], m['rnn_size'],
                                m['num_layers'], batch_first=True)
      self.out = torch.nn.Linear(m['rnn_size'], vocab_size)

    def forward(self, x, state):
      y, state = self.lstm(self.embed(x), state)
      return self.out(y), state

  net = Net().to(device)
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  inputs, targets = batching.epoch_batches(ids, b, t)
  inputs = torch.from_numpy(inputs.astype(np.int64)).to(device)
  targets = torch.from_numpy(targets.astype(np.int64)).to(device)
  holder = {'state': None, 'i': 0}

  def steps(n):
    for _ in range(n):
      i = holder['i'] % len(inputs)
      state = holder['state']
      if state is not None:
        state = tuple(s.detach() for s in state)
      logits, state = net(inputs[i], state)
      loss = torch.nn.functional.cross_entropy(
          logits.reshape(-1, vocab_size), targets[i].reshape(-1))
      opt.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
      opt.step()
      holder['state'], holder['i'] = state, holder['i'] + 1
    if device == 'cuda':
      torch.cuda.synchronize()

  steps(3)
  n = _steps_per_repeat(steps, seconds)

  def run():
    steps(n)
    return n * b * t

  return {'run': run, 'device': device, 'torch_version': torch.__version__,
          'threads': torch.get_num_threads()}


# A typical tuned default inference (weights as best.flags' tuning found).
MIXTURE = mixture_step.MixtureSpec(weights=(0.5, 0.1, 0.2, 0.2), cache_size=300,
                                theta=10.0, ngram_order=6,
                                ngram_cache_order=7)


def time_sampling(ids, vocab_size, repeats) -> dict:
  """Sampling after compilation: plain, with the mixture, with every
  decoding control on (line form, rhyme, no-repeat, max-copy), best-of-16
  with every control (16 candidates in one call, scored on the host), all a
  character at a time; and a verse of 8 lines by the line writer (16
  candidate lines each)."""
  config = jl.ModelConfig(vocab_size=vocab_size)
  params = jl.init_params(config, jax.random.key(0))
  # The real vocabulary when the corpus is here (rhyme table, line bounds).
  text = _corpus_text()
  vocab = (jl.build_vocabulary(text) if text else
           jl.Vocabulary(tuple(chr(0x4e00 + i) for i in range(vocab_size - 1))
                         + (' ',)))
  train = text[:int(0.9 * len(text))] if text else None
  kn = inference.kneser_ney(ids[:int(0.9 * len(ids))], vocab_size,
                            MIXTURE.ngram_order)
  mixture = mixture_step.device_mixture(MIXTURE, kn)
  plain = jl.SamplingConfig(mixture='tuned').controls_off()
  controlled = jl.SamplingConfig(mixture='tuned')
  out = {}
  for name, n, mix, c, writer in (
      ('sample_200_ms', 1, None, plain, None),
      ('sample_64x200_ms', 64, None, plain, None),
      ('sample_200_mixture_ms', 1, mixture, plain, None),
      ('sample_200_controlled_ms', 1, None, controlled, None),
      ('best_of_16_ms', 1, None, dataclasses.replace(controlled, best_of=16),
       None),
      # The default writer: 8 whole lines, 16 candidates each.
      ('verse_8_lines_ms', 1, None, dataclasses.replace(controlled, lines=8),
       jl.LineConfig())):
    run = lambda k, n=n, mix=mix, c=c, w=writer: jl.sample_text(
        params, config, vocab, vocab.chars[1] + vocab.chars[2],
        jax.random.key(k), 200, c, num_samples=n, mixture=mix,
        train_text=train, writer=w)
    run(0)  # Compile.
    times = []
    for k in range(max(repeats, 5)):
      start = time.perf_counter()
      run(k + 1)  # sample_text returns text: the device work is done.
      times.append((time.perf_counter() - start) * 1e3)
    out[name] = statistics.median(times)
  # What the demo page does for "8 lines" (padded seed, length bucket).
  from jaylyrics_jax.generation.songwriter import Songwriter  # pylint: disable=g-import-not-at-top
  model = jl.LoadedModel(params, config, vocab, {}, 0)
  writer = Songwriter(model, None, train)
  seed = vocab.chars[1] + vocab.chars[2]
  writer.write(seed, 8)  # Compile.
  times = []
  for k in range(max(repeats, 5)):
    start = time.perf_counter()
    writer.write(seed, 8, rng_seed=k + 1)
    times.append((time.perf_counter() - start) * 1e3)
  out['demo_8_lines_ms'] = statistics.median(times)
  return out


def time_evaluation(ids, vocab_size, repeats) -> float:
  config = jl.ModelConfig(vocab_size=vocab_size)
  params = jl.init_params(config, jax.random.key(0))
  n = min(len(ids), 20_000)
  arrays = evaluation.StreamArrays(inputs=ids[:n], targets=ids[1:n + 1],
                                   mask=np.ones(n, bool))
  evaluation.stream_nll(params, config, arrays)  # Compile.
  return _median_rate(lambda: evaluation.stream_nll(params, config, arrays),
                      n, repeats)


def time_first_step() -> dict:
  """Process start -> first finished train step, in fresh child processes."""
  out = {}
  with tempfile.TemporaryDirectory() as cache:
    for name in ('cold', 'warm'):
      start = time.perf_counter()
      subprocess.run(
          [sys.executable, '-m', 'experiments.benchmark',
           '--first_step_probe', f'--compilation_cache={cache}'],
          check=True, capture_output=True, env=dict(os.environ,
                                                    PYTHONUTF8='1'))
      out[f'first_step_s_{name}'] = time.perf_counter() - start
  return out


def first_step_probe():
  ids, vocab_size, _ = _corpus_ids()
  config = jl.TrainConfig()
  model_config = jl.ModelConfig(vocab_size=vocab_size)
  inputs, targets = batching.epoch_batches(ids, 32, 16)
  tx = jl.make_optimizer(config, len(inputs))
  state = jl.create_train_state(model_config, tx, 32, jax.random.key(0))
  state, _ = jl.make_train_step(model_config, tx)(
      state, (inputs[0], targets[0]), jax.random.key(1))
  jax.block_until_ready(state)


def main(argv):
  del argv
  if PROBE.value:
    first_step_probe()
    return
  device = jax.devices()[0]
  ids, vocab_size, source = _corpus_ids()
  figures = {
      'platform': jax.default_backend(),
      'device': getattr(device, 'device_kind', str(device)),
      'jax_version': jax.__version__,
      'cpu_threads': len(os.sched_getaffinity(0)),
      'machine': platform.processor() or platform.machine(),
      'data': source,
      'vocab_size': vocab_size,
  }
  print(f"platform {figures['platform']} ({figures['device']}), jax "
        f"{figures['jax_version']}, {figures['cpu_threads']} CPU threads; "
        f'data: {source}', flush=True)
  shapes = dict(CONFIG_SHAPES)
  best = _best_flags()
  if best:
    shapes['best'] = best
  for name in CONFIGS.value:
    if name not in shapes:
      print(f'{name}: skipped (no experiments/best.flags yet)'
            if name == 'best' else f'{name}: unknown configuration',
            flush=True)
      continue
    shape = shapes[name]
    # torch.nn.LSTM has no attention/copy: no like-for-like comparison.
    with_torch = VS_TORCH.value and not shape['model'].get('attn_length')
    result = time_training(ids, vocab_size, shape, REPEATS.value,
                           SECONDS.value, vs_torch=with_torch)
    key = 'train_chars_per_s' + ('' if name == 'original' else f'_{name}')
    figures[key] = result['chars_per_s']
    figures[f'{name}_first_step_compile_s'] = result['first_step_compile_s']
    line = (f"train {name} (B={shape['batch_size']} T={shape['seq_length']} "
            f"{shape['model']}): {result['chars_per_s']:,.0f} chars/s")
    torch_result = result['torch']
    if VS_TORCH.value and not with_torch:
      line += '; no torch equivalent (attention/copy model)'
    elif with_torch and torch_result is None:
      line += '; PyTorch not installed'
    elif with_torch:
      ratio = result['chars_per_s'] / torch_result['chars_per_s']
      figures[f'torch_{key}'] = torch_result['chars_per_s']
      figures[f'jax_over_torch_{name}'] = ratio
      figures['torch'] = (f"{torch_result['torch_version']} on "
                          f"{torch_result['device']}, "
                          f"{torch_result['threads']} threads")
      line += (f"; torch.nn.LSTM {torch_result['chars_per_s']:,.0f} chars/s"
               f' (JAX/torch {ratio:.2f}x, repeats interleaved)')
    print(line, flush=True)
  figures.update(time_sampling(ids, vocab_size, REPEATS.value))
  print(f"sample 200 chars: {figures['sample_200_ms']:.1f} ms; 64 x 200 in "
        f"one call: {figures['sample_64x200_ms']:.1f} ms; 200 chars from the "
        f"model mixed with its caches and a 6-gram: "
        f"{figures['sample_200_mixture_ms']:.1f} ms; with every decoding "
        f"control: {figures['sample_200_controlled_ms']:.1f} ms; best of 16 "
        f"with every control: {figures['best_of_16_ms']:.1f} ms; the demo "
        f"page's 8 lines: {figures['demo_8_lines_ms']:.1f} ms; a verse of 8 "
        f"lines (line writer): {figures['verse_8_lines_ms']:.1f} ms",
        flush=True)
  figures['eval_chars_per_s'] = time_evaluation(ids, vocab_size,
                                                REPEATS.value)
  print(f"evaluate: {figures['eval_chars_per_s']:,.0f} chars/s", flush=True)
  if FIRST_STEP.value:
    figures.update(time_first_step())
    print(f"process start -> first train step: "
          f"{figures['first_step_s_cold']:.2f} s cold, "
          f"{figures['first_step_s_warm']:.2f} s with the compilation cache",
          flush=True)
  if JSON.value:
    print(json.dumps(figures), flush=True)


if __name__ == '__main__':
  common.run(main)
