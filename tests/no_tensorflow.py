"""Runs Python code or a script where TensorFlow, TFDS and Keras cannot be imported.

  python -m tests.no_tensorflow -c 'import aesthetix; ...'
  python -m tests.no_tensorflow run.py --mode=predict --workdir=W --images=P

A finder placed first on `sys.meta_path`, before anything else is imported,
answers for those packages with a loader that raises ImportError: the
packages still look installed (a library that only asks whether they are
behaves as on a machine that has them), but importing one fails. At exit the
names that something tried to import are printed on stderr as one line,
`BLOCKED_IMPORTS: [...]` (an import caught by a library's own `try` shows
there too), and those of the training stack the process did import (Orbax,
Optax) as `TRAINING_IMPORTS: [...]`.
"""

import atexit
import importlib.abc
import importlib.machinery
import json
import runpy
import sys

BLOCKED = ('tensorflow', 'tensorflow_datasets', 'keras')
MARKER = 'BLOCKED_IMPORTS: '
# Packages of the training stack that a scoring process need not import.
TRAINING_STACK = ('orbax', 'optax')
TRAINING_MARKER = 'TRAINING_IMPORTS: '
_TRIED = []


class _RaisingLoader(importlib.abc.Loader):

  def create_module(self, spec):
    _TRIED.append(spec.name)
    raise ImportError(f'{spec.name} is blocked (tests/no_tensorflow.py)')

  def exec_module(self, module):
    raise ImportError(f'{module.__name__} is blocked (tests/no_tensorflow.py)')


class _Finder(importlib.abc.MetaPathFinder):

  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in BLOCKED:
      return importlib.machinery.ModuleSpec(name, _RaisingLoader())
    return None


def _marked(stderr, marker):
  line = next(l for l in stderr.splitlines() if l.startswith(marker))
  return json.loads(line[len(marker):])


def blocked_imports(stderr):
  """The names a run tried to import, from its stderr."""
  return _marked(stderr, MARKER)


def training_imports(stderr):
  """The packages of TRAINING_STACK a run imported, from its stderr."""
  return _marked(stderr, TRAINING_MARKER)


def _report():
  print(MARKER + json.dumps(_TRIED), file=sys.stderr, flush=True)
  print(TRAINING_MARKER + json.dumps([p for p in TRAINING_STACK if p in sys.modules]),
        file=sys.stderr, flush=True)


def main(argv):
  sys.meta_path.insert(0, _Finder())
  atexit.register(_report)
  if argv[0] == '-c':
    sys.argv = ['-c'] + argv[2:]
    exec(compile(argv[1], '<-c>', 'exec'), {'__name__': '__main__'})  # pylint: disable=exec-used
  else:
    sys.argv = argv
    runpy.run_path(argv[0], run_name='__main__')


if __name__ == '__main__':
  if any(name.split('.')[0] in BLOCKED for name in sys.modules):
    raise SystemExit('tests/no_tensorflow.py: TensorFlow was imported before the block.')
  main(sys.argv[1:])
