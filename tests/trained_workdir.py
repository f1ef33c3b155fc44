"""One tiny trained workdir for the whole test session, shared by every module
that needs a trained model (train, predict, Grad-CAM, figures, export, run.py's
errors).

Training takes tens of seconds, so it runs once per session, not once per
pytest-xdist worker: the first worker that asks trains it in the session's
shared temp folder while holding a file lock there; the other waits on the lock
and reuses the finished run. Its schedule is train_test's (3 + 2 epochs: a
kill in stage 2's second epoch, a resume from stage 1's last checkpoint).

A second shared run, `user_run`, is a user's: run.py in a process of its own
trains a folder of rated photos from the first run (--config.init_from), 1 + 1
epochs with profiled steps; transfer_test checks what it took from that run,
run_timing_test its phase table, TensorBoard's files and the traces.

A workdir is shared between processes: a test that writes to it (a report,
figures, an evaluation, a damaged file) works on a copy: `copy` (its checkpoints
hard-linked), or `shutil.copytree` for a test that damages a checkpoint's bytes.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys

from aesthetix.results import experiment
from aesthetix.runtime import workdir as workdir_lib
from tests import fixtures_data
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The user's run: under the session's shared temp folder, with its photos, its
# data, its lock, its DONE_FILE and its process's log.
USER_FOLDER = 'shared_user_run'
USER_LOG = 'stderr.txt'
# A photographer's outputs: two named as the synthetic set's (score, Light),
# two of their own; ranges unlike the synthetic set's.
USER_OUTPUTS = {'score': [1, 5], 'sharpness': [0, 1], 'Light': [0, 10], 'mood': [-2, 2]}
# 24 training photos of 30 (the default split): 3 steps of 8 per epoch.
USER_PHOTOS = 30
USER_TINY_FLAGS = ('--config.dataset.image_size=32', '--config.stage1.epochs=1',
                   '--config.stage2.epochs=1', '--config.stage1.batch_size=8',
                   '--config.stage2.batch_size=8', '--config.eval_batch_size=8',
                   '--config.checkpoint_max_to_keep=1')
PROFILE_STEPS = 2
# As tests/tiny.py: stage 2's decay acts within its 3 steps.
USER_RUN_FLAGS = USER_TINY_FLAGS + ('--config.stage2.decay_steps=2',
                                    f'--config.profile_steps={PROFILE_STEPS}')
# A training run through run.py: tens of seconds on an idle 2-core machine, but
# a shared one has taken over five minutes.
USER_RUN_TIMEOUT_S = 1800

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
  assert_unchanged(workdir, trained)
  return plan, workdir


def assert_unchanged(workdir, trained):
  """`workdir`'s files are those of `trained` (its snapshot when it was trained)."""
  now = snapshot(workdir)
  changed = sorted(p for p in set(now) | set(trained) if now.get(p) != trained.get(p))
  assert not changed, (f'A test changed the shared run {workdir}: {changed}. A test that '
                       'writes to it works on a copy (`copy`, or shutil.copytree).')


def copy(workdir, dest, ignore=None):
  """Copies `workdir` to `dest` for a test to write in, but hard-links the files
  of its checkpoints and its params file (no bytes copied: they are 277 of the
  run's 279 MB).

  Neither Orbax nor the library writes a finished checkpoint's files in place (a
  damaged checkpoint is moved aside, an old one deleted: the link goes, the
  run's file stays), so a test may do anything a run does on `dest`; a test that
  changes a checkpoint's bytes itself takes shutil.copytree (`get` names a
  changed file of the shared run by its size and time). `ignore`: as copytree's.
  """
  checkpoints = os.path.join(os.path.abspath(workdir), workdir_lib.CHECKPOINT_DIR)
  params = os.path.abspath(workdir_lib.params_file_path(workdir))  # Replaced whole too.
  link_or_copy = lambda src, dst: (os.link(src, dst) if os.path.abspath(src).startswith(
      checkpoints + os.sep) or os.path.abspath(src) == params else shutil.copy2(src, dst))
  return shutil.copytree(workdir, dest, ignore=ignore, copy_function=link_or_copy)


def config(tmp_path_factory):
  """The config that trained `get`'s workdir (a ConfigDict: train it again, or change it)."""
  return _train(tmp_path_factory)[0].copy_and_resolve_references()


def data_dir(tmp_path_factory):
  """The TFDS data_dir of the run's dataset (built by the run)."""
  return _train(tmp_path_factory)[0].dataset.data_dir


def _user_run(tmp_path_factory):
  if 'user' not in _TRAINED:
    source = _train(tmp_path_factory)[2]
    root = session_folder(tmp_path_factory) / USER_FOLDER
    root.mkdir(exist_ok=True)
    photos, workdir = root / 'photos', str(root / 'W')
    with open(root / SESSION_LOCK, 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes, or the process dies.
      if not (root / DONE_FILE).exists():
        for failed in (photos, workdir, root / 'data'):  # A failed try's.
          shutil.rmtree(failed, ignore_errors=True)
        fixtures_data.make_rated(photos, n_images=USER_PHOTOS, outputs=USER_OUTPUTS)
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, 'run.py'), '--config=configs/rated_photos.py',
             f'--workdir={workdir}', f'--config.dataset.manual_dir={photos}',
             f'--config.dataset.data_dir={root / "data"}', f'--config.init_from={source}',
             *USER_RUN_FLAGS],
            cwd=REPO, env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True,
            text=True, timeout=USER_RUN_TIMEOUT_S)
        (root / USER_LOG).write_text(result.stderr)
        assert result.returncode == 0, result.stderr[-3000:]
        (root / DONE_FILE).write_text(json.dumps(snapshot(workdir)))
    _TRAINED['user'] = (str(photos), workdir, (root / USER_LOG).read_text(),
                        json.loads((root / DONE_FILE).read_text()))
  return _TRAINED['user']


def user_run(tmp_path_factory):
  """(photos folder, workdir, run.py's stderr) of the user's run, as it was trained:
  run.py on USER_PHOTOS rated photos of USER_OUTPUTS, from `get`'s workdir."""
  photos, workdir, stderr, trained = _user_run(tmp_path_factory)
  assert_unchanged(workdir, trained)
  return photos, workdir, stderr
