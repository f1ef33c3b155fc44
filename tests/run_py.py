"""run.py in this process, as a user's command runs it: its own parse and main,
sys.argv as typed (ml_collections reads the --config.x overrides there).

Saves each command JAX's and TensorFlow's start-up (the test process has
them loaded); tests that time a command, or check what it imports, start a
process instead (tests/cli_test.py).
"""

import contextlib
import io
import sys

from absl import flags


def in_process(args, monkeypatch):
  """(exit status, stderr) of `python run.py ARGS`; `monkeypatch` sets sys.argv."""
  import run  # pylint: disable=g-import-not-at-top
  from aesthetix.cli import logs  # pylint: disable=g-import-not-at-top
  argv = ['run.py', *args]
  monkeypatch.setattr(sys, 'argv', argv)
  logs.setup()  # As run.py does first: INFO logs (an earlier command's unparse reset them).
  stderr = io.StringIO()
  try:
    with contextlib.redirect_stderr(stderr):
      code = run.main(run.parse_flags(argv))
  except SystemExit as e:
    code = e.code
  finally:
    forget_flags()
  return code, stderr.getvalue()


def forget_flags():
  """Unparses every flag and drops the --config.x flags that ml_collections
  defined for this command line (the next one defines its own)."""
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)


def error_line(stderr):
  """The one 'error: ' line of `stderr`, with the lines of its list after it."""
  lines = stderr.splitlines()
  starts = [i for i, line in enumerate(lines) if line.startswith('error: ')]
  assert len(starts) == 1, stderr[-4000:]
  rest = lines[starts[0] + 1:]
  listed = []
  for line in rest:
    if not line.startswith(('  - ', 'Or ')):
      break
    listed.append(line)
  return '\n'.join([lines[starts[0]], *listed])
