"""The benchmark command runs and prints every figure (no timing asserted)."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_benchmark_prints_one_json_line_of_figures(compilation_cache):
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', '--json',
       '--configs=original', '--repeats=1', '--seconds=0', '--nofirst_step',
       f'--compilation_cache={compilation_cache}'],
      cwd=REPO, env=dict(os.environ, PYTHONUTF8='1'), capture_output=True,
      text=True, timeout=600, check=True)
  figures = json.loads(proc.stdout.strip().splitlines()[-1])
  for key in ('platform', 'device', 'jax_version', 'cpu_threads', 'data',
              'train_chars_per_s', 'sample_200_ms', 'sample_64x200_ms',
              'sample_200_mixture_ms', 'sample_200_controlled_ms',
              'best_of_16_ms', 'demo_8_lines_ms', 'verse_8_lines_ms',
              'eval_chars_per_s'):
    assert key in figures, key
  assert figures['train_chars_per_s'] > 0 and figures['vocab_size'] > 0
