"""The package's shape: imports only go down the layers, functions stay short.

Pure AST: nothing is imported, so this runs in well under a second.
"""

import ast
import os

from conftest import REPO

PACKAGE = os.path.join(REPO, 'jaylyrics_jax')

# Lowest first: a module may import only from its own layer or a lower one.
LAYERS = (
    ('errors', 'files', 'runtime'),
    ('data',),
    ('config',),
    ('models',),
    ('training',),
    ('scoring',),
    ('generation',),
    ('runs',),
    ('__init__',),
)
MAX_FUNCTION_LINES = 100


def _modules():
  """{dotted module name: path} of every module of the package."""
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
        out[rel.removesuffix('.__init__')] = path
  return out


def _layer(module: str) -> int:
  """The layer of a dotted module name inside the package."""
  parts = module.split('.')
  part = parts[1] if len(parts) > 1 else '__init__'
  for i, layer in enumerate(LAYERS):
    if part in layer:
      return i
  raise AssertionError(f'{module}: not in any layer of LAYERS.')


def _imports(path: str, modules) -> set[str]:
  """The package modules `path` imports (at any depth of the file)."""
  found = set()
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.level == 0 and node.module.startswith('jaylyrics_jax')):
      for alias in node.names:
        sub = f'{node.module}.{alias.name}'
        found.add(sub if sub in modules else node.module)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names
                   if a.name.startswith('jaylyrics_jax'))
  return found


def _graph():
  modules = _modules()
  return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_module_has_a_layer_and_imports_go_down():
  upward = []
  for module, imported in _graph().items():
    for target in imported:
      if _layer(target) > _layer(module):
        upward.append(f'{module} -> {target}')
  assert not upward, upward


def test_no_import_cycle():
  graph = _graph()
  # The top-level __init__ re-exports everything and nothing imports it.
  graph = {m: {t for t in ts if t in graph and t != 'jaylyrics_jax'}
           for m, ts in graph.items() if m != 'jaylyrics_jax'}
  state = {}

  def visit(node, path):
    state[node] = 'open'
    for nxt in graph.get(node, ()):
      if state.get(nxt) == 'open':
        raise AssertionError('cycle: ' + ' -> '.join(path + [node, nxt]))
      if nxt not in state:
        visit(nxt, path + [node])
    state[node] = 'done'

  for node in graph:
    if node not in state:
      visit(node, [])


def test_subpackages_say_what_they_do():
  for module, path in _modules().items():
    if path.endswith('__init__.py'):
      with open(path, encoding='utf-8') as f:
        assert ast.get_docstring(ast.parse(f.read())), module


def test_no_library_function_is_over_100_lines():
  long = []
  for module, path in _modules().items():
    with open(path, encoding='utf-8') as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          long.append(f'{module}.{node.name}: {lines} lines')
  assert not long, long
