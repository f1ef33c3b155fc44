"""Checks of what a command needs, made before JAX or TensorFlow load.

A mistake on the command line (a missing flag, a path that does not exist, an
output that cannot be written, a workdir that is not one) is found here in a
fraction of a second and reported as one line, instead of after a minute of
imports and work. Nothing is left behind (the write test is a temporary file
that vanishes when closed).
"""

import os
import tempfile

from aesthetix.runtime import errors
from aesthetix.runtime import workdir as workdir_lib


class PreflightError(errors.UserError):
  """What a command needs is missing; the message lists every problem found."""


def _nearest_existing(path):
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return path


def writable_problem(path, kind='file'):
  """Why `path` (a file or folder to be written) cannot be, or None.

  Checks that it is not the other kind, and that its nearest existing folder
  can be written (the folders below it are made when the output is written).
  """
  path = os.path.abspath(os.path.expanduser(path))
  if kind == 'file' and os.path.isdir(path):
    return f'{path} is a folder; give a file name (e.g. scores.csv)'
  if kind == 'folder' and os.path.isfile(path):
    return f'{path} is a file; give a folder for the figures'
  existing = _nearest_existing(path if kind == 'folder' else os.path.dirname(path))
  if not os.path.isdir(existing):
    return f'{existing} is a file, so {path} cannot be made'
  try:  # The one sure test (root passes permission checks a read-only mount fails).
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    return f'{path} cannot be written ({existing}: {e.strerror or e})'
  return None


def trained_workdir_problem(workdir, need_checkpoint=True):
  """Why `workdir` is not a workdir of a training run that predict, evaluate or
  report can read (with a checkpoint, when `need_checkpoint`), or None."""
  if not os.path.isdir(workdir):
    return (f'--workdir={workdir} does not exist (train first: python run.py '
            f'--config=configs/demo.py --workdir={workdir})')
  config = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  if not os.path.exists(config):
    return (f'{workdir} holds no {workdir_lib.CONFIG_FILE}: not a workdir of '
            '`run.py --mode=train`')
  try:
    workdir_lib.read_json(config, 'config file')
  except workdir_lib.WorkdirError as e:
    return str(e).rstrip('.')
  checkpoints = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
  if need_checkpoint and not (os.path.isdir(checkpoints) and any(n.isdigit() for n in os.listdir(checkpoints))):
    return (f'{workdir} has no checkpoint yet: its training has not finished a first '
            'epoch (run the train command again to carry on)')
  return None


def raise_if_any(problems, advice=None):
  """Raises one PreflightError listing every problem (None entries are fine),
  with `advice` (a sentence: another way on) last; nothing when there are none."""
  problems = [p.rstrip('.') for p in problems if p]
  if not problems:
    return
  text = (f'{problems[0]}.' if len(problems) == 1 else
          f'{len(problems)} things are missing or wrong:\n' +
          '\n'.join(f'  - {p}.' for p in problems))
  raise PreflightError(text + (f'\n{advice}.' if advice else ''))
