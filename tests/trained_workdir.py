"""One tiny trained workdir for the whole test session, shared by every module
that needs a trained model (train, predict, Grad-CAM, figures, export, run.py's
errors).

Training takes tens of seconds, so it runs once per session, not once per
pytest-xdist worker: the first worker that asks trains it in the session's
shared temp folder while holding a file lock there; the other waits on the lock
and reuses the finished run. Its schedule is train_test's (3 + 2 epochs: a
kill in stage 2's second epoch, a resume from stage 1's last checkpoint).

The workdir is shared between processes: a test that writes to it (a report,
figures, an evaluation, a damaged file) works on a copy (`shutil.copytree`).
"""

import fcntl
import json
import os

from aesthetix.results import experiment
from aesthetix.runtime import workdir as workdir_lib
from tests import tiny

STAGE1_EPOCHS = 3
STAGE2_EPOCHS = 2
# Under the session's shared temp folder: the run, its data and the lock.
FOLDER = 'shared_trained_workdir'
SESSION_LOCK = 'lock'
# Written after the run finished, with the run's files and their sizes and
# times: a worker that finds it reuses the run, and checks it is unchanged.
DONE_FILE = 'done.json'
# A refused second run takes the training lock (and rewrites its file) before
# it refuses: the one file a test may change.
UNCHECKED = (workdir_lib.LOCK_FILE,)

_TRAINED = {}


def session_folder(tmp_path_factory):
  """The temp folder of this pytest session that all its xdist workers share.

  A worker's basetemp is <session>/popen-gwN; without xdist it is the session's own.
  """
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def _train(tmp_path_factory):
  if 'run' not in _TRAINED:
    root = session_folder(tmp_path_factory) / FOLDER
    root.mkdir(exist_ok=True)
    config = tiny.config(root / 'data', STAGE1_EPOCHS, STAGE2_EPOCHS)
    workdir = str(root / 'run')
    with open(root / SESSION_LOCK, 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes, or the process dies.
      if not (root / DONE_FILE).exists():
        experiment.run(config, workdir)
        (root / DONE_FILE).write_text(json.dumps(snapshot(workdir)))
    _TRAINED['run'] = (config, tiny.plan(config), workdir,
                       json.loads((root / DONE_FILE).read_text()))
  return _TRAINED['run']


def snapshot(workdir):
  """{path relative to `workdir`: [size, mtime in ns]} of its files, UNCHECKED aside."""
  files = {}
  for folder, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(folder, name)
      if os.path.relpath(path, workdir) not in UNCHECKED:
        stat = os.stat(path)
        files[os.path.relpath(path, workdir)] = [stat.st_size, stat.st_mtime_ns]
  return files


def get(tmp_path_factory):
  """(plan, workdir) of the finished two-stage tiny run, as it was trained."""
  _, plan, workdir, trained = _train(tmp_path_factory)
  now = snapshot(workdir)
  changed = sorted(p for p in set(now) | set(trained) if now.get(p) != trained.get(p))
  assert not changed, (f'A test changed the shared run {workdir}: {changed}. A test that '
                       'writes to it works on a copy (shutil.copytree).')
  return plan, workdir


def config(tmp_path_factory):
  """The config that trained `get`'s workdir (a ConfigDict: train it again, or change it)."""
  return _train(tmp_path_factory)[0].copy_and_resolve_references()


def data_dir(tmp_path_factory):
  """The TFDS data_dir of the run's dataset (built by the run)."""
  return _train(tmp_path_factory)[0].dataset.data_dir
