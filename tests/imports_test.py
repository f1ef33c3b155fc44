"""The house's arrows run one way: each wing imports only the wings below it.

Every import statement of the library (at the top of a module or inside a
function) is read with `ast`; one that runs against the arrows of
aesthetix/__init__.py's docstring fails the test, naming the file and line.
"""

import ast
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Wing -> the wings it may import (itself always).
ALLOWED = {
    'runtime': set(),
    'data': {'runtime'},
    'model': {'runtime'},
    'training': {'model', 'data', 'runtime'},
    'results': {'training', 'model', 'data', 'runtime'},
    'serving': {'training', 'model', 'data', 'runtime'},
    'cli': {'serving', 'results', 'training', 'model', 'data', 'runtime'},
}
# Outside the library: the builders read the data wing's targets and photos;
# configs are leaves.
OUTSIDE = {
    'data_builders': {'data', 'runtime'},
    'configs': set(),
}
# Packages that no library module may import.
NEVER = ('tests', 'bench')
# Top-level packages the library may use besides itself.
LIBRARY_MAY_USE = {'data': ('data_builders',), 'results': ('configs',), 'cli': ('configs',)}


def python_files(folder):
  for root, _, files in os.walk(os.path.join(REPO, folder)):
    for name in sorted(files):
      if name.endswith('.py'):
        yield os.path.join(root, name)


def imported_modules(path):
  """(line, dotted module) of every import in the file."""
  tree = ast.parse(open(path, encoding='utf-8').read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      if node.module == 'aesthetix':  # `from aesthetix import wing`.
        for alias in node.names:
          yield node.lineno, f'aesthetix.{alias.name}'
      else:
        yield node.lineno, node.module


def wing_of(path):
  """('aesthetix', wing) or (top folder, None) of a file of the repository."""
  parts = os.path.relpath(path, REPO).split(os.sep)
  if parts[0] == 'aesthetix':
    return 'aesthetix', parts[1] if len(parts) > 2 else None
  return parts[0], None


def violations(path):
  top, wing = wing_of(path)
  allowed = (ALLOWED[wing] if top == 'aesthetix' and wing else
             OUTSIDE.get(top, set(ALLOWED)))
  found = []
  for line, module in imported_modules(path):
    parts = module.split('.')
    where = f'{os.path.relpath(path, REPO)}:{line} imports {module}'
    if parts[0] in NEVER and top in ('aesthetix', 'data_builders', 'configs'):
      found.append(where)
    elif parts[0] == 'aesthetix' and len(parts) > 1:
      target = parts[1]
      if target != wing and target not in allowed:
        found.append(where)
    elif top == 'aesthetix' and wing and parts[0] in ('data_builders', 'configs'):
      if parts[0] not in LIBRARY_MAY_USE.get(wing, ()):
        found.append(where)
  return found


def test_every_wing_is_declared():
  wings = {n for n in os.listdir(os.path.join(REPO, 'aesthetix'))
           if os.path.isdir(os.path.join(REPO, 'aesthetix', n)) and not n.startswith('_')}
  assert wings == set(ALLOWED)
  for wing in wings:  # Each says what it owns and what it may import.
    doc = ast.get_docstring(ast.parse(open(os.path.join(REPO, 'aesthetix', wing,
                                                        '__init__.py')).read()))
    assert doc and 'import' in doc.lower(), wing


def test_no_module_lives_outside_a_wing():
  loose = [n for n in os.listdir(os.path.join(REPO, 'aesthetix'))
           if n.endswith('.py') and n != '__init__.py']
  assert loose == []


@pytest.mark.parametrize('folder', ['aesthetix', 'data_builders', 'configs'])
def test_imports_run_one_way(folder):
  found = [v for path in python_files(folder) for v in violations(path)]
  assert found == [], '\n'.join(found)


def test_the_checker_sees_a_wrong_arrow(tmp_path, monkeypatch):
  """A training module that imports results, or a library module that imports
  the tests, is caught (the test above would pass on a checker that sees nothing)."""
  bad = tmp_path / 'aesthetix' / 'training' / 'bad.py'
  bad.parent.mkdir(parents=True)
  bad.write_text('from aesthetix.results import report\n\ndef f():\n'
                 '  from tests import tiny\n  import aesthetix.serving.scorer\n')
  monkeypatch.setattr(sys.modules[__name__], 'REPO', str(tmp_path))
  assert [v.split(' imports ')[1] for v in violations(str(bad))] == [
      'aesthetix.results', 'tests', 'aesthetix.serving.scorer']
