"""The files a run leaves in its workdir: their names, and how they are written and read.

One module for the layout, so that training, reports, figures and tools agree
on it. Every file is written whole or not at all (a temporary file beside it,
fsync, rename), `metrics.jsonl` grows a whole line at a time (a line torn by a
kill is cut off at the next start and skipped by readers, with a warning), and
every parse error names the file and what to do. One training run at a time
holds the workdir's lock.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import zipfile

from absl import logging
import numpy as np

from aesthetix import errors

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
METRICS_FILE = 'metrics.jsonl'
PREDICTIONS_DIR = 'predictions'
SPLITS_DIR = 'splits'
RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'
CACHE_DIR = 'feature_cache'
LOCK_FILE = 'train.lock'
# The figures of `run.py --mode=report`, beside report.md, in the report's order.
SCATTER_OVERALL = 'scatter_overall.png'
SCATTER_OUTPUTS = 'scatter_outputs.png'
BEST = 'best_predictions.png'
WORST = 'worst_predictions.png'
RANK_CORRELATIONS = 'rank_correlations.png'
TRAINING_CURVES = 'training_curves.png'
FIGURES = (SCATTER_OVERALL, SCATTER_OUTPUTS, BEST, WORST, RANK_CORRELATIONS, TRAINING_CURVES)
# Damaged files are moved here, never deleted: the user decides.
DAMAGED_DIR = 'damaged'


class WorkdirError(errors.UserError):
  """A workdir file that cannot be read or written; the message names it and the fix."""


class WorkdirBusyError(WorkdirError):
  """Another training run holds the workdir."""


# ------------------------------------------------------------------- writing


def _fsync_dir(path):
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:  # Some filesystems cannot sync a directory; the rename stands.
    pass
  finally:
    os.close(fd)


def cannot_write(path, error):
  """The WorkdirError for an OSError met while writing `path`."""
  return WorkdirError(f'Cannot write {path} ({error.strerror or error}). Use a folder you '
                      'can write to (--workdir, --output), or fix its permissions or free '
                      'space; nothing was changed.')


@contextlib.contextmanager
def writing(path):
  """Turns an OSError raised while writing `path` into a WorkdirError naming it."""
  try:
    yield
  except OSError as e:
    raise cannot_write(path, e) from e


def _writable(path):
  """Makes `path`'s folder; WorkdirError when it cannot be."""
  folder = os.path.dirname(os.path.abspath(path))
  with writing(folder):
    os.makedirs(folder, exist_ok=True)


@contextlib.contextmanager
def atomic_file(path, mode='w'):
  """Opens a temporary file that replaces `path` when the block ends without error.

  The data is on disk (fsync) before the rename, and the rename is atomic: a
  kill at any moment leaves the old file or the new one, never half of one.
  """
  _writable(path)
  tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                     f'.{os.path.basename(path)}.tmp-{os.getpid()}')
  try:
    with writing(path), open(tmp, mode, **({} if 'b' in mode else {'newline': ''})) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    with writing(path):
      os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
  _fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_text(path, text):
  with atomic_file(path) as f:
    f.write(text)


def write_json(path, value, **kwargs):
  with atomic_file(path) as f:
    json.dump(value, f, **kwargs)
    f.write('\n')


def write_lines(path, lines):
  with atomic_file(path) as f:
    f.writelines(f'{line}\n' for line in lines)


def save_npz(path, arrays):
  with atomic_file(path, 'wb') as f:
    np.savez(f, **arrays)


def append_jsonl(path, record):
  """Appends one JSON line, whole: a single write, flushed and synced."""
  _writable(path)
  line = json.dumps(record) + '\n'
  with writing(path), open(path, 'a') as f:
    f.write(line)
    f.flush()
    os.fsync(f.fileno())


def repair_jsonl(path):
  """Cuts off a last line torn by a kill (no newline), so that appends stay whole.

  Returns the bytes removed (0 when the file is whole or absent).
  """
  if not os.path.exists(path):
    return 0
  with writing(path), open(path, 'rb+') as f:
    data = f.read()
    if not data or data.endswith(b'\n'):
      return 0
    keep = data.rfind(b'\n') + 1
    f.truncate(keep)
  logging.warning('%s ended in a torn line (%d bytes, written when a run was killed); '
                  'cut it off.', path, len(data) - keep)
  return len(data) - keep


# ------------------------------------------------------------------- reading


def read_json(path, what='file'):
  """The JSON value in `path`; WorkdirError naming the file when it does not parse."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise WorkdirError(f'{path} is not valid JSON ({e}); this {what} was damaged or '
                       'edited by hand. Restore it from a copy, or fix the line '
                       'named.') from e
  except UnicodeDecodeError as e:
    raise WorkdirError(f'{path} is not UTF-8 text ({e}); restore it from a copy.') from e


def read_jsonl(path):
  """The records of a JSON-lines file; [] when it is absent.

  A torn last line (a kill mid-write) is skipped with a warning; a bad line
  anywhere else is an error naming the file and the line.
  """
  if not os.path.exists(path):
    return []
  with open(path, 'rb') as f:
    lines = f.read().split(b'\n')
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      if number == len(lines):  # No newline after it: the last write was cut short.
        logging.warning('Skipped the torn last line of %s (a run was killed while '
                        'writing it).', path)
        continue
      raise WorkdirError(f'{path}, line {number}, is not a JSON record ({e}). Delete that '
                         'line (the file holds one record per line) and rerun.') from e
  return records


def prediction_path(workdir, stage, split):
  return os.path.join(workdir, PREDICTIONS_DIR, f'{stage}_{split}.npz')


def load_predictions(workdir, stage, split):
  """{'ids', 'true', 'pred'} saved after `stage` on `split`, or None when absent."""
  path = prediction_path(workdir, stage, split)
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=True) as f:
      return {k: f[k] for k in f.files}
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise WorkdirError(
        f'{path} is damaged ({type(e).__name__}: {e}). Rerun the train command on this '
        'workdir: it moves the file aside and predicts the test split again.') from e


def move_aside(workdir, path, why, name=None):
  """Moves a damaged file or folder to WORKDIR/damaged/NAME.TIME (never deletes it);
  returns the new path."""
  target_dir = os.path.join(workdir, DAMAGED_DIR)
  with writing(target_dir):
    os.makedirs(target_dir, exist_ok=True)
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  base = os.path.join(target_dir, f'{name or os.path.basename(path.rstrip(os.sep))}.{stamp}')
  target, n = base, 1
  while os.path.exists(target):
    target, n = f'{base}-{n}', n + 1
  with writing(target):
    os.replace(path, target)
  logging.warning('Moved %s to %s: %s. Delete it when you no longer need it.', path,
                  target, why)
  return target


# ---------------------------------------------------------------------- lock


class Lock:
  """The exclusive lock of a training run on its workdir, held for the run's life.

  An flock on WORKDIR/train.lock: the OS releases it when the process ends in
  any way (a kill included), so a stopped run never leaves a stale lock. The
  file names the holder (process id, host, start time) for the message of a
  refused second run.
  """

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def acquire(self):
    _writable(self.path)
    with writing(self.path):
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 4096).decode('utf-8', 'replace')
      os.close(fd)
      try:
        info = json.loads(holder)
        who = (f"process {info['pid']} on {info['host']}, started {info['started']}")
      except (json.JSONDecodeError, KeyError, TypeError):
        who = 'another process'
      raise WorkdirBusyError(
          f'{os.path.dirname(self.path)} is in use by another training run ({who}). '
          'Wait for it to end or stop it, or use another --workdir; nothing was '
          'changed.') from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(dict(
        pid=os.getpid(), host=socket.gethostname(),
        started=datetime.datetime.now().isoformat(timespec='seconds'))).encode())
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self):
    if self._fd is not None:
      os.close(self._fd)  # Closing drops the flock.
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
