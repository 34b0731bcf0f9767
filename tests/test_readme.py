"""Every ```python block of README.md runs, in order, as a user would run it.

The blocks share one namespace (later ones use what earlier ones defined)
and run in a temporary folder holding a small made-up `lyrics.txt` and
`other.txt`, so they train tiny runs there.
"""

import os
import re

import pytest

from conftest import REPO
from conftest import synthetic_lyrics


def python_blocks() -> list[str]:
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  return re.findall(r'^```python\n(.*?)^```', readme, re.M | re.S)


def test_readme_has_the_library_examples():
  code = '\n'.join(python_blocks())
  for name in ('jl.train(', 'jl.make_train_step(', 'optax.adamw(',
               'jl.score_text(', 'jl.save_model(', 'jl.load_model(',
               'CharLM(config).apply('):
    assert name in code, name


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
  # The seed the README uses must be in the made-up corpus.
  (tmp_path / 'lyrics.txt').write_text(
      synthetic_lyrics(num_lines=200) + '从前有座山 从前的你\n',
      encoding='utf-8')
  (tmp_path / 'other.txt').write_text(synthetic_lyrics(seed=3),
                                      encoding='utf-8')
  monkeypatch.chdir(tmp_path)
  namespace = {'__name__': '__readme__'}
  blocks = python_blocks()
  for i, block in enumerate(blocks):
    exec(compile(block, f'README.md python block {i + 1}', 'exec'),  # pylint: disable=exec-used
         namespace)
  # What the blocks claim happened.
  assert namespace['result'].inference is not None
  assert namespace['text'].startswith('从前') and len(namespace['text']) > 2
  state, model = namespace['state'], namespace['model']
  assert model.step == int(state.step) and model.model_config == (
      namespace['config'])
  assert namespace['tuned'].step == model.step
  scores = namespace['scores']
  assert abs(-scores.log_probs[scores.mask].mean() - namespace['loss']) < 1e-4
  assert namespace['logits'].shape == (1, 2, namespace['vocab'].size)
  c, h = namespace['carries'][0]
  assert c.shape == h.shape == (1, 128)
  assert os.path.isdir(tmp_path / 'runs' / 'custom' / 'checkpoints')
