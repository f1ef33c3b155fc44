"""aesthetix: the one entry point.

  python run.py --config=configs/aadb.py --workdir=W              # train + evaluate
  python run.py --config=configs/aadb.py --mode=audit             # Table 2
  python run.py --mode=evaluate --workdir=W [--eval_dataset=eva]  # test split again
  python run.py --mode=convert_weights --keras_h5=IN.h5 --out=OUT.msgpack
  python run.py --mode=predict --workdir=W --images=PHOTOS --output=scores.csv  # or .json
  python run.py --mode=gradcam --workdir=W --images=PHOTOS --output=DIR [--target=Light]
  python run.py --mode=report --workdir=W                         # report.md + figures
  python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4     # the paper: PAPER.md
  python run.py --mode=reproduce --workdir=W --datasets=aadb       # AADB's experiments only
  python run.py --mode=reproduce --config=configs/reproduce.py:demo --workdir=W
  python run.py --mode=export --workdir=W --output=DIR --format=saved_model  # or stablehlo, tflite

Exit status: 0 done; 2 a mistake of the command line, the set-up or the data
(one line saying what and how to fix it); 3 the audit found counts that differ
from the paper's; 1 a bug (a traceback). --verbosity=1 shows the traceback of
a status-2 error too. Flags, paths and the config are checked before JAX or
TensorFlow load, so a mistake is reported within a second or two. Each mode's
flags, checks and function: aesthetix/cli/modes.py.
"""

import os
import sys
import traceback

from absl import app
from absl import flags

from aesthetix.cli import checks
from aesthetix.cli import flags as cli_flags
from aesthetix.cli import logs
from aesthetix.cli import modes
from aesthetix.runtime import errors
from aesthetix.runtime import preflight

USAGE_EXIT = 2
BUG_EXIT = 1


def dispatch(argv):
  """Checks the command line, then runs its mode; returns the exit status."""
  if len(argv) > 1:
    raise errors.UserError(f'Unexpected arguments {argv[1:]}: every option is a --flag '
                           '(python run.py --helpshort lists them).')
  mode = modes.MODES[cli_flags.value('mode')]
  checks.check_flags(mode)
  config = checks.load_config() if mode.config else None
  preflight.raise_if_any(mode.check())
  return mode.run(config)


def _processes():
  """Processes of this run (more than one once a mode joined them); no JAX import."""
  jax = sys.modules.get('jax')
  return jax.process_count() if jax is not None and _started(jax) else 1


def _started(jax):
  try:
    return jax.distributed.is_initialized()
  except AttributeError:
    return False


def main(argv):
  """Runs the mode; a user's mistake (errors.UserError) is one line and exit 2,
  anything else is a bug: its traceback and exit 1."""
  try:
    code = dispatch(argv)
  except errors.UserError as e:
    if flags.FLAGS['verbosity'].value >= 1:
      traceback.print_exc()
    print(f'error: {e}', file=sys.stderr)
    code = USAGE_EXIT
  except Exception:  # pylint: disable=broad-except
    if _processes() == 1:
      raise
    traceback.print_exc()
    code = BUG_EXIT
  if code and _processes() > 1:
    # A failed multi-process run cannot shut down cleanly: JAX's exit handlers
    # would wait for peers that may be dead. Leave now; checkpoints on disk are whole.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  return code


def parse_flags(argv):
  """absl's parsing; a flag it cannot parse is one line and exit 2. A mode with
  a default config (reproduce: configs/reproduce.py) gets it first, so that its
  --config.x overrides parse without a --config."""
  argv = checks.with_default_config(argv, modes.DEFAULT_CONFIGS)
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:  # The last two: unknown config fields.
    print(f'error: {checks.parse_error(e, argv)}', file=sys.stderr)
    sys.exit(USAGE_EXIT)


if __name__ == '__main__':
  logs.setup()
  app.run(main, flags_parser=parse_flags)
