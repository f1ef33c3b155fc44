"""The files a run leaves in its workdir: their names, how they are written and
read, and the guard that keeps one workdir to one config.

The one home of the layout, so that training, reports, figures, scoring and
the reproduction agree on it: every file name of a run (and of a
reproduction's folder) is a constant or a path function here. Every file is
written whole or not at all (a temporary file beside it, fsync, rename; the
temporaries of a killed writer are removed by `remove_stale_temporaries`),
`metrics.jsonl` grows a whole line at a time (a line torn by a kill is cut off
at the next start and skipped by readers, with a warning; a whole last record
without its newline is kept), and every parse error names the file and what
to do. A full disk is a DiskFullError that names the file, the space needed
and free (`reserve`, `ensure_space`). One training run at a time holds the
workdir's lock. `claim` writes config.json and refuses a workdir whose
checkpoints are of another config.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import math
import os
import re
import resource
import shutil
import socket
import zipfile

from absl import logging
from ml_collections import config_dict
import numpy as np

from aesthetix.runtime import errors

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
METRICS_FILE = 'metrics.jsonl'
PREDICTIONS_DIR = 'predictions'
SPLITS_DIR = 'splits'
RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'
CACHE_DIR = 'feature_cache'
LOCK_FILE = 'train.lock'
# TensorBoard's folder: the event files, and jax.profiler's traces under plugins/profile/.
TENSORBOARD_DIR = 'tensorboard'
# The distribution of the trained model's predictions on its own training
# photos (quantiles per output, the dataset's scale): what a score's
# percentile is read against (serving/scorer.py).
SCORE_QUANTILES_FILE = 'score_quantiles.json'
# The newest checkpoint's params as plain arrays, for a scoring process that
# starts without Orbax (training/params_file.py); the checkpoint stays the truth.
PARAMS_FILE = 'params.npz'
# Where Orbax keeps a checkpoint's JSON item 'meta' (its JsonSave handler's
# file): its params digest says which checkpoint the params file copies.
CHECKPOINT_META_FILE = os.path.join('meta', 'metadata')
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
# Where the checkpoints of a last stage that was started again are moved.
SUPERSEDED_DIR = 'superseded'
# A reproduction's folder (run.py --mode=reproduce): its tables, the runs'
# shared caches and, for the demo, the one random backbone every run starts from.
PAPER_MD = 'PAPER.md'
PAPER_JSON = 'paper.json'
SHARED_CACHES_DIR = 'caches'
SHARED_BACKBONE = 'backbone.msgpack'


def checkpoint_dir(workdir):
  return os.path.join(workdir, CHECKPOINT_DIR)


def results_path(workdir):
  return os.path.join(workdir, RESULTS_FILE)


def report_path(workdir):
  return os.path.join(workdir, REPORT_FILE)


def metrics_path(workdir):
  return os.path.join(workdir, METRICS_FILE)


def tensorboard_dir(workdir):
  return os.path.join(workdir, TENSORBOARD_DIR)


def prediction_path(workdir, stage, split):
  """The test (or other split's) predictions saved after `stage`."""
  return os.path.join(workdir, PREDICTIONS_DIR, f'{stage}_{split}.npz')


def score_quantiles_path(workdir):
  return os.path.join(workdir, SCORE_QUANTILES_FILE)


def params_file_path(workdir):
  return os.path.join(workdir, PARAMS_FILE)


def checkpoint_meta_path(workdir, number):
  return os.path.join(checkpoint_dir(workdir), str(number), CHECKPOINT_META_FILE)


def checkpoint_source(path):
  """(workdir, checkpoint number or None) of `path`: a workdir, or one of its
  checkpoints, WORKDIR/checkpoints/N."""
  path = os.path.normpath(path)
  parent, name = os.path.split(path)
  if name.isdigit() and os.path.basename(parent) == CHECKPOINT_DIR:
    return os.path.dirname(parent) or '.', int(name)
  return path, None


def split_list_path(workdir, split):
  """The ids of a split's images, one per line."""
  return os.path.join(workdir, SPLITS_DIR, f'{split}.txt')


EVALUATION_PREFIX = 'evaluation_'


def evaluation_path(workdir, dataset, split):
  """The metrics of `--mode=evaluate` on `dataset`'s `split` (Table 11's cross tests)."""
  return os.path.join(workdir, f'{EVALUATION_PREFIX}{dataset}_{split}.json')


def evaluation_paths(workdir):
  """Every evaluation file in `workdir`, sorted."""
  if not os.path.isdir(workdir):
    return []
  return [os.path.join(workdir, n) for n in sorted(os.listdir(workdir))
          if n.startswith(EVALUATION_PREFIX) and n.endswith('.json')]


def reproduction_run_dir(workdir, experiment, seed):
  """A reproduction's run of `experiment` with `seed`: W/<experiment>/seed<N>/."""
  return os.path.join(workdir, experiment, f'seed{seed}')


class WorkdirError(errors.UserError):
  """A workdir file that cannot be read or written; the message names it and the fix."""


class WorkdirBusyError(WorkdirError):
  """Another training run holds the workdir."""


class DiskFullError(WorkdirError):
  """A file could not be written for lack of space; the message says how much
  was needed and is free, and that the same command resumes once there is room."""


# OSError numbers that mean "no room for this file": the disk (or a tmpfs) is
# full, a quota is spent, or the file would pass the process's file size limit.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# What posix_fallocate raises where a file system cannot reserve space.
_NO_FALLOCATE_ERRNOS = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
# The words of DISK_FULL_ERRNOS, as libraries that wrap an OSError quote them.
DISK_FULL_TEXTS = tuple(os.strerror(n) for n in DISK_FULL_ERRNOS)


def _existing_folder(path):
  """`path` or its nearest existing parent folder."""
  path = os.path.abspath(path)
  while not os.path.isdir(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def free_bytes(path):
  """Bytes free (for this user) on the file system that holds `path`."""
  return shutil.disk_usage(_existing_folder(path)).free


def size_text(nbytes):
  """A byte count for a person: 812 KiB, 53.2 MiB, 24.9 GiB."""
  for unit, scale in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
    if nbytes >= scale:
      return f'{nbytes / scale:.1f} {unit}'
  return f'{int(nbytes)} bytes'


def _file_size_limit():
  """This process's limit on the size of a file it writes (ulimit -f), or None."""
  limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
  return None if limit == resource.RLIM_INFINITY else limit


def disk_full(path, what=None, needed=None, advice='', why=None):
  """The DiskFullError for `what` (e.g. 'this cache file') at `path`.

  needed: bytes `what` needs (None when unknown); advice: other ways out, as
  a clause ('or ...'); why: the system's words, when it refused a write.
  """
  need = f'{what} needs {size_text(needed)} and ' if needed is not None else ''
  limit = _file_size_limit()
  if why == os.strerror(errno.EFBIG) and limit is not None:
    return DiskFullError(
        f'No room for {path} ({why}): {need}this process may write files of at most '
        f'{size_text(limit)} (ulimit -f). Raise that limit, then run the same command '
        'again: what was written before is whole and is kept.')
  return DiskFullError(
      f'No room for {path}{f" ({why})" if why else ""}: {need}'
      f'{size_text(free_bytes(path))} are free there. Free space on that disk{advice}, '
      'then run the same command again: what was written before is whole and is kept.')


def ensure_space(path, needed, what, advice=''):
  """Raises DiskFullError unless `needed` bytes are free where `path` goes."""
  if free_bytes(path) < needed:
    raise disk_full(path, what, needed, advice)


def reserve(f, nbytes, path, what, advice=''):
  """Reserves `nbytes` of disk for the open file `f` (posix_fallocate), so that
  writing into it, memory-mapped or not, cannot meet a full disk later (a
  memory-mapped write to a disk that is full kills the process with SIGBUS).

  Raises DiskFullError naming `path` when the space is not there. Where the
  file system cannot reserve space, a check of its free space stands in.
  """
  try:
    os.posix_fallocate(f.fileno(), 0, nbytes)
  except OSError as e:
    if e.errno in DISK_FULL_ERRNOS:
      raise disk_full(path, what, nbytes, advice, e.strerror) from e
    if e.errno not in _NO_FALLOCATE_ERRNOS:
      raise
    ensure_space(path, nbytes - os.fstat(f.fileno()).st_blocks * 512, what, advice)


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
  """The WorkdirError for an OSError met while writing `path` (a DiskFullError
  when there was no room)."""
  if error.errno in DISK_FULL_ERRNOS:
    return disk_full(path, why=error.strerror)
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


# ------------------------------------------------------------ temporaries

# A temporary file: the final name, '.tmp-', the writer's host and process id
# (older versions wrote no host), and the cache files' '.npy'.
_TMP_PATTERN = re.compile(r'\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)(?:\.npy)?$')
# The folders of a workdir that atomic writes put temporaries in.
_WRITTEN_FOLDERS = ('', PREDICTIONS_DIR, SPLITS_DIR)


def tmp_name(name, suffix=''):
  """The name of this process's temporary file for `name` (a name or a path)."""
  return f'{name}.tmp-{socket.gethostname()}-{os.getpid()}{suffix}'


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Someone else's live process.
    return True
  return True


def remove_stale_temporaries(folder):
  """Deletes the temporary files in `folder` whose writer is gone; returns their paths.

  A write killed midway leaves its temporary file (an atomic write's
  '.NAME.tmp-HOST-PID', a cache pass's 25 GiB for AADB's prefix). Only files
  of this host are judged (a process id means nothing on another host), and a
  live process's file is left alone (ablations may share a cache folder).
  """
  removed = []
  if not os.path.isdir(folder):
    return removed
  host = socket.gethostname()
  for name in sorted(os.listdir(folder)):
    match = _TMP_PATTERN.search(name)
    if not match or (match['host'] or host) != host or _alive(int(match['pid'])):
      continue
    path = os.path.join(folder, name)
    try:
      os.remove(path)
    except FileNotFoundError:  # Another process of this host removed it first.
      continue
    except IsADirectoryError:  # Not a file any writer of this project leaves.
      continue
    logging.warning('Removed %s, left by a write that did not finish.', path)
    removed.append(path)
  return removed


def remove_workdir_temporaries(workdir):
  """`remove_stale_temporaries` of every folder a run writes whole files to."""
  return [path for folder in _WRITTEN_FOLDERS
          for path in remove_stale_temporaries(os.path.join(workdir, folder))]


@contextlib.contextmanager
def atomic_file(path, mode='w'):
  """Opens a temporary file that replaces `path` when the block ends without error.

  The data is on disk (fsync) before the rename, and the rename is atomic: a
  kill at any moment leaves the old file or the new one, never half of one.
  """
  _writable(path)
  tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                     tmp_name(f'.{os.path.basename(path)}'))
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


def finite_json(value):
  """`value` with what strict JSON (RFC 8259) cannot hold made plain: NaN and
  infinities become None (null: the value does not exist, e.g. the rho of a
  constant column), NumPy scalars and arrays Python numbers and lists, tuples lists."""
  if isinstance(value, dict):
    return {k: finite_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_json(v) for v in value]
  if isinstance(value, np.ndarray):
    return finite_json(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def dumps(value, **kwargs):
  """Strict JSON text of `value` (see finite_json): every reader parses it,
  JSON.parse and serde_json included."""
  return json.dumps(finite_json(value), allow_nan=False, **kwargs)


def write_json(path, value, **kwargs):
  """Writes `value` as strict JSON (see `dumps`), whole or not at all."""
  text = dumps(value, **kwargs)
  with atomic_file(path) as f:
    f.write(text + '\n')


def write_lines(path, lines):
  with atomic_file(path) as f:
    f.writelines(f'{line}\n' for line in lines)


def save_npz(path, arrays):
  with atomic_file(path, 'wb') as f:
    np.savez(f, **arrays)


def append_jsonl(path, record):
  """Appends one JSON line, whole: a single write, flushed and synced."""
  _writable(path)
  line = dumps(record) + '\n'
  with writing(path), open(path, 'a') as f:
    f.write(line)
    f.flush()
    os.fsync(f.fileno())


def _whole_record(line):
  """Whether a line (bytes, no newline) is a whole JSON record: a JSON object.

  Each record is one object, so a line cut short by a kill never parses:
  a last line that does lacks only its newline.
  """
  try:
    return isinstance(json.loads(line), dict)
  except (json.JSONDecodeError, UnicodeDecodeError):
    return False


def repair_jsonl(path):
  """Makes the last line of a JSON-lines file whole, so that appends stay whole:
  a line torn by a kill is cut off; a whole record that lacks only its newline
  gets it. Returns the bytes cut off (0 when none were).
  """
  if not os.path.exists(path):
    return 0
  with writing(path), open(path, 'rb+') as f:
    data = f.read()
    if not data or data.endswith(b'\n'):
      return 0
    keep = data.rfind(b'\n') + 1
    if _whole_record(data[keep:]):
      f.write(b'\n')
      f.flush()
      os.fsync(f.fileno())
      logging.warning('%s ended in a whole record without its newline; added it.', path)
      return 0
    f.truncate(keep)
  logging.warning('%s ended in a torn line (%d bytes, written when a run was killed); '
                  'cut it off.', path, len(data) - keep)
  return len(data) - keep


# ------------------------------------------------------------------- reading


def read_json(path, what='file'):
  """The JSON value in `path`; WorkdirError naming the file when it does not parse.

  Lenient on purpose: files of older versions hold bare NaN, which reads as nan.
  """
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise WorkdirError(f'{path} is not valid JSON ({e}); this {what} was damaged or '
                       'edited by hand. Restore it from a copy, or fix the line '
                       'named.') from e
  except UnicodeDecodeError as e:
    raise WorkdirError(f'{path} is not UTF-8 text ({e}); restore it from a copy.') from e


def read_jsonl(path, check=None):
  """The records of a JSON-lines file; [] when it is absent.

  A torn last line (a kill mid-write) is skipped with a warning; a bad line
  anywhere else is an error naming the file and the line. check: record ->
  None, or what is wrong with it (a line that parses but is not a record
  this file holds: named the same way).
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
      record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      if number == len(lines):  # No newline after it: the last write was cut short.
        logging.warning('Skipped the torn last line of %s (a run was killed while '
                        'writing it).', path)
        continue
      raise bad_line(path, number, f'is not a JSON record ({e})') from e
    problem = check(record) if check else None
    if problem:
      raise bad_line(path, number, f'does not hold a record of this file: {problem}')
    records.append(record)
  return records


def bad_line(path, number, what):
  """The WorkdirError for line `number` of a JSON-lines file."""
  return WorkdirError(f'{path}, line {number}, {what}. Delete that line, or restore the '
                      'file from a copy (it holds one record per line), and rerun.')


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


def read_score_quantiles(workdir):
  """{'levels': [Q], 'outputs': {name: [Q]}, ...} of score_quantiles.json, or
  None when the workdir has none (trained before it was kept)."""
  path = score_quantiles_path(workdir)
  if not os.path.exists(path):
    return None
  try:
    record = read_json(path, 'file of score quantiles')
  except WorkdirError as e:
    raise WorkdirError(f'{e} Or run the train command on this workdir again: it moves the '
                       'file aside and writes it anew.') from e
  if not isinstance(record, dict) or not {'levels', 'outputs'} <= set(record):
    raise WorkdirError(f'{path} does not hold score quantiles (levels and outputs); '
                       'run the train command on this workdir again to write it anew.')
  return record


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


# ------------------------------------------------------------ config guard

# Fields that may change between a run and its resumption: where data lives,
# how often to log, how to evaluate. Anything else changes what is trained.
RESUMABLE_FIELDS = ('dataset.data_dir', 'dataset.manual_dir', 'dataset.cache_decoded',
                    'log_every_steps',
                    'eval_batch_size', 'checkpoint_max_to_keep', 'feature_cache',
                    'prefix_cache', 'feature_cache_dir', 'compilation_cache',
                    'profile_steps')
# config.json's record of changes to the last stage's fields (not a config field).
CHANGES_KEY = 'changes'


class IncompatibleWorkdirError(errors.UserError):
  """The workdir holds a run of a different config."""


class NotAWorkdirError(errors.UserError):
  """A folder that holds no run of `run.py --mode=train`."""


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    else:
      out[key] = v
  return out


def _stored_json(workdir):
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  stored = read_json(path, 'config file')
  if not isinstance(stored, dict):
    raise WorkdirError(f'{path} does not hold a config (a JSON object).')
  return stored


def stored_json(workdir):
  """The config a workdir was trained with (a JSON object), or None."""
  stored = _stored_json(workdir)
  if stored is not None:
    stored.pop(CHANGES_KEY, None)
  return stored


def stored_config(workdir):
  """The config a workdir was trained with (a ConfigDict), or None."""
  stored = stored_json(workdir)
  return None if stored is None else config_dict.ConfigDict(stored)


def stored_changes(workdir):
  """The recorded changes of the last stage's fields, oldest first ([] when none)."""
  stored = _stored_json(workdir) or {}
  return list(stored.get(CHANGES_KEY, []))


def trained_config(workdir):
  """The stored config of a workdir that `run.py --mode=train` made; else an error."""
  config = stored_config(workdir)
  if config is None:
    raise NotAWorkdirError(f'{workdir} holds no {CONFIG_FILE}: not a workdir of '
                           '`run.py --mode=train`.')
  return config


def config_differences(old, new):
  """Dotted names of fields that differ between two configs (JSON objects),
  ignoring RESUMABLE_FIELDS."""
  a, b = _flatten(old), _flatten(new)
  return sorted(k for k in set(a) | set(b)
                if k not in RESUMABLE_FIELDS and a.get(k) != b.get(k))


def checkpoint_numbers(workdir):
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def has_checkpoints(workdir):
  return bool(checkpoint_numbers(workdir))


def _restart(workdir, old, new, diff, stage, restart_from, test_split):
  """The change record when only `stage`'s fields changed and it may start
  again from checkpoint `restart_from` (the end of the stage before it); else None."""
  if not all(k.startswith(stage + '.') for k in diff):
    return None
  if os.path.exists(prediction_path(workdir, stage, test_split)):
    return None  # The stage finished: its results stand, as the config said.
  later = [n for n in checkpoint_numbers(workdir) if n > restart_from]
  if later and restart_from not in checkpoint_numbers(workdir):
    return None
  a, b = _flatten(old), _flatten(new)
  return dict(time=datetime.datetime.now().isoformat(timespec='seconds'),
              fields={k: [a.get(k), b.get(k)] for k in diff},
              restarts=stage, from_checkpoint=restart_from, superseded=later)


def _supersede(workdir, stage, numbers):
  """Moves the checkpoints of the old settings to WORKDIR/superseded/ (kept)."""
  if not numbers:
    return None
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  target = os.path.join(workdir, SUPERSEDED_DIR, f'{stage}-{stamp}')
  os.makedirs(target, exist_ok=True)
  for n in numbers:
    os.replace(os.path.join(checkpoint_dir(workdir), str(n)), os.path.join(target, str(n)))
  return target


def claim(workdir, config, restartable, restart_from, test_split, write=True):
  """Writes `config` (a JSON object) to the workdir's config.json; refuses a
  workdir whose checkpoints are of another config.

  A config.json without checkpoints (a run that stopped before its first
  epoch ended, say for a missing weights file) is replaced. Changed fields of
  the stage `restartable` (the last one) are accepted while it has not
  finished: it then starts again from checkpoint `restart_from` (the end of
  the stage before it), its earlier checkpoints are moved to
  WORKDIR/superseded/, and config.json records the change. Returns that
  change record, or None. `write` False (processes other than 0) checks only.
  """
  old = stored_json(workdir)
  changes = stored_changes(workdir) if old is not None else []
  change = None
  if old is not None and has_checkpoints(workdir):
    diff = config_differences(old, config)
    if not diff:
      return None
    change = _restart(workdir, old, config, diff, restartable, restart_from, test_split)
    if change is None:
      raise IncompatibleWorkdirError(
          f'{workdir} holds checkpoints of a run with a different config '
          f'({", ".join(diff)} differ from {os.path.join(workdir, CONFIG_FILE)}). '
          f'Use a new --workdir, or the same config to resume ({restartable}.* fields may '
          f'change until {restartable} has finished); nothing was changed.')
  if not write:
    return change
  if change is not None:
    change['moved_to'] = _supersede(workdir, restartable, change['superseded'])
    changes.append(change)
    logging.warning('Changed %s: %s starts again from checkpoint %d (the end of the '
                    'stage before it)%s.', ', '.join(change['fields']), restartable,
                    change['from_checkpoint'],
                    f"; its earlier checkpoints are in {change['moved_to']}"
                    if change['moved_to'] else '')
  stored = dict(config)
  if changes:
    stored[CHANGES_KEY] = changes
  write_json(os.path.join(workdir, CONFIG_FILE), stored, indent=2, sort_keys=True)
  return change
