"""The trained model's params as one plain file, so that scoring starts without Orbax.

A checkpoint is the truth about a trained model (checkpoint.py); reading one
back takes Orbax and TensorStore (about 0.6 s of imports and restore on the
development machine, more than the rest of a warm `--mode=predict`). So a
training run that ends leaves W/params.npz: the newest checkpoint's params as
NumPy arrays (key 'params/<module>/.../<name>'), and a record of which
checkpoint they copy (its number, and the sha256 digest of its params that
the checkpoint's own meta item holds).

The file serves only while it is that checkpoint's copy: `read` returns its
params when the newest checkpoint in W/checkpoints/ has the number and
params digest of its record and its arrays have that digest (a finite one);
otherwise it says why not, and the caller reads the checkpoint instead (a
later checkpoint, a stage started again, a damaged file: never a wrong
model). The train command writes it again whenever it is not current. Only
process 0 writes it.
"""

import collections
import json
import os
import zipfile

from absl import logging
import numpy as np

from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import digests

# The npz entry holding the record (JSON text) and the prefix of the arrays' entries.
RECORD_KEY = 'record'
PARAMS_PREFIX = 'params'
SEPARATOR = '/'
# What a reader can read: raised when the layout changes.
FORMAT = 1
# Beyond the arrays' bytes: the zip's and each array's headers (32 arrays of VGG16 and head).
NPZ_OVERHEAD_BYTES = 2**20


class Reading(collections.namedtuple('Reading', 'params why damaged')):
  """params: the nested dict of arrays, or None with `why` (one line) it does
  not serve; damaged: whether the file is damaged (rather than absent or
  outdated: the expected case after training goes on)."""


def flatten(params, prefix=PARAMS_PREFIX):
  """A nested dict of arrays -> {'params/a/b': array}."""
  out = {}
  for name, value in params.items():
    key = f'{prefix}{SEPARATOR}{name}'
    if isinstance(value, dict):
      out.update(flatten(value, key))
    else:
      out[key] = np.asarray(value)
  return out


def unflatten(arrays):
  """{'params/a/b': array} -> the nested dict of arrays."""
  params = {}
  for key, value in arrays.items():
    *path, name = key.split(SEPARATOR)[1:]
    node = params
    for part in path:
      node = node.setdefault(part, {})
    node[name] = value
  return params


def newest_checkpoint(workdir):
  """The highest checkpoint number in W/checkpoints/ (Orbax names each
  finished one by its number, temporaries otherwise), or None."""
  try:
    names = os.listdir(workdir_lib.checkpoint_dir(workdir))
  except OSError:
    return None
  numbers = [int(n) for n in names if n.isdigit()]
  return max(numbers) if numbers else None


def checkpoint_params_digest(workdir, number):
  """The params digest checkpoint `number`'s meta item holds, or None (no
  such file, or one without digests: the checkpoint decides then)."""
  try:
    with open(workdir_lib.checkpoint_meta_path(workdir, number)) as f:
      meta = json.load(f)
    return meta['digests']['params']
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _record(number, digest):
  return dict(format=FORMAT, checkpoint=number, params_digest=digest)


def _load(path):
  """(record, arrays) of the file; OSError, ValueError or BadZipFile when damaged."""
  with np.load(path, allow_pickle=False) as f:
    record = json.loads(str(f[RECORD_KEY]))
    arrays = {k: f[k] for k in f.files if k != RECORD_KEY}
  return record, arrays


def read(workdir):
  """A `Reading` of W/params.npz (see the module's docstring)."""
  path = workdir_lib.params_file_path(workdir)
  if not os.path.exists(path):
    return Reading(None, f'{path} does not exist', False)
  try:
    record, arrays = _load(path)
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    return Reading(None, f'{path} is damaged ({type(e).__name__}: {e})', True)
  number = newest_checkpoint(workdir)
  if not isinstance(record, dict) or record.get('format') != FORMAT:
    return Reading(None, f'{path} holds no record this aesthetix reads', True)
  if record.get('checkpoint') != number:
    return Reading(None, f'{path} copies checkpoint {record.get("checkpoint")}, the newest '
                   f'is {number}', False)
  if checkpoint_params_digest(workdir, number) != record.get('params_digest'):
    return Reading(None, f'{path} is not a copy of checkpoint {number} (other digests)', False)
  params = unflatten(arrays)
  if digests.tree_digest(params) != record['params_digest']:
    return Reading(None, f'{path} is damaged (its arrays differ from their digest)', True)
  leaf = digests.nonfinite_leaf(params)
  if leaf is not None:
    return Reading(None, f'{path} holds a non-finite number at {leaf}', True)
  return Reading(params, None, False)


def refresh(workdir, params):
  """Writes W/params.npz from `params`, the newest checkpoint's (host arrays),
  unless it already is their copy; returns whether it wrote. A disk without
  room for it is a warning: scoring reads the checkpoint then."""
  number = newest_checkpoint(workdir)
  digest = digests.tree_digest(params)
  if number is None or checkpoint_params_digest(workdir, number) != digest:
    logging.warning('%s: the params in memory are not those of the newest checkpoint (%s); '
                    '%s not written.', workdir, number, workdir_lib.PARAMS_FILE)
    return False
  if read(workdir).params is not None:
    return False
  path = workdir_lib.params_file_path(workdir)
  arrays = flatten(params)
  arrays[RECORD_KEY] = np.array(json.dumps(_record(number, digest)))
  needed = sum(a.nbytes for a in arrays.values()) + NPZ_OVERHEAD_BYTES
  try:
    workdir_lib.ensure_space(path, needed, 'the params file')
    workdir_lib.save_npz(path, arrays)
  except workdir_lib.DiskFullError as e:
    logging.warning('%s Scoring reads the checkpoint meanwhile (a slower start); the '
                    'train command writes the file once there is room.', e)
    return False
  return True
