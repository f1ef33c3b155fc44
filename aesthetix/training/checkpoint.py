"""Orbax checkpoints of the train state, and loading a trained workdir.

A checkpoint holds three items: 'params' (alone enough to use the model),
'train' (optimizer state, step, RNG) and 'meta' (stage and epoch, JSON, and
the sha256 digests of the other two and of itself). Checkpoint numbers count
finished epochs over all stages, so the latest one is where a stopped run
carries on. A checkpoint is whole or it is not used: one that does not
restore, whose arrays differ from their digests, or that holds a non-finite
number is skipped for the newest one that is whole (and, by a training run,
moved to WORKDIR/damaged/, never deleted); the first stage's last checkpoint
is always kept, so that the last stage can start again from it with other
settings. A save first makes sure its space is free. A trained model is read
back by trained.py's `load_trained` (this module's `restore_params`, unless
the params file serves).
"""

import hashlib
import json
import os
import sys

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers
import numpy as np

from aesthetix.runtime import errors
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import digests as digests_lib


class NoCheckpointError(errors.UserError):
  """A workdir holds no checkpoint that restores."""


class DamagedCheckpointError(Exception):
  """A checkpoint that restored, but not as it was saved (its digests differ, or
  it holds a non-finite number); handled like one that does not restore."""


# The meta item: what checkpoints hold since they carry digests, and before.
DIGESTS = 'digests'
OLD_META_KEYS = frozenset({'stage_index', 'stage', 'epoch'})
# Beyond the arrays' bytes, what a checkpoint's files take at most: Orbax's
# metadata (tens of KiB per item) and the file system's blocks of some 30 files.
# (The arrays are stored in at most their own size: the tiny test run's 59.8
# and 97.5 MB of state took 54.4 and 87.4 MB.)
METADATA_BYTES = 2**20
# Other ways out of a full disk than freeing space (a field that may change on a workdir).
FULL_DISK_ADVICE = ', or keep fewer checkpoints (--config.checkpoint_max_to_keep=N)'
# Checkpoint folders (of this process) whose missing digests were already logged.
_UNVERIFIED_LOGGED = set()


def manager(workdir, max_to_keep=None, read_only=False, keep=()):
  """Orbax's manager of WORKDIR/checkpoints: the latest `max_to_keep` and the
  numbers in `keep` stay; temporaries of an interrupted save are removed."""
  policies = [checkpoint_managers.LatestN(max_to_keep)]
  if keep:
    policies.append(checkpoint_managers.CustomSteps(list(keep)))
  options = ocp.CheckpointManagerOptions(
      create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
      preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies))
  return ocp.CheckpointManager(workdir_lib.checkpoint_dir(os.path.abspath(workdir)),
                               options=options, item_names=('params', 'train', 'meta'))


def meta_digest(meta):
  """sha256 (hex) of the meta item's fields other than the digests."""
  fields = {k: v for k, v in meta.items() if k != DIGESTS}
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def with_digests(meta, params, train):
  """`meta` with the digests of `params`, `train` and its own fields."""
  return dict(meta, **{DIGESTS: dict(params=digests_lib.tree_digest(params),
                                     train=digests_lib.tree_digest(train),
                                     meta=meta_digest(meta))})


def needed_bytes(state):
  """Disk a checkpoint of `state` takes at most: its arrays and their metadata."""
  return sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(state)) + METADATA_BYTES


def save(mngr, number, state, meta, agree=lambda ok: ok):
  """Starts saving `state` ({'params', 'opt_state', 'step', 'rng'}) and `meta`.

  The write finishes in the background while training goes on (Orbax writes
  to a temporary directory and renames it when complete, so a stopped run
  never sees half a checkpoint); the next save, or `finish`, waits for it.
  The state is copied first: its caller passes host arrays that may share
  memory with device buffers, and a donated buffer may be rewritten before
  the write finishes. Before it starts, the previous write is waited for and
  the space this one needs must be free (DiskFullError otherwise: no write
  began, every earlier checkpoint is whole). `agree` makes the processes of a
  multi-process run decide together.
  """
  state = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), state)
  train = {k: v for k, v in state.items() if k != 'params'}
  finish(mngr)  # Its space is taken, and a failure is known, before this one starts.
  directory = os.fspath(mngr.directory)
  needed = needed_bytes(state)
  if not agree(workdir_lib.free_bytes(directory) >= needed):
    raise workdir_lib.disk_full(os.path.join(directory, str(number)),
                                f'checkpoint {number}', needed, FULL_DISK_ADVICE)
  mngr.save(number, args=ocp.args.Composite(
      params=ocp.args.StandardSave(state['params']),
      train=ocp.args.StandardSave(train),
      meta=ocp.args.JsonSave(with_digests(meta, state['params'], train))))


def _disk_full_text(error):
  """The words of a full disk in `error` or its causes (Orbax and TensorStore
  quote the system's), or None."""
  while error is not None:
    found = next((t for t in workdir_lib.DISK_FULL_TEXTS if t in str(error)), None)
    if found:
      return found
    error = error.__cause__ or error.__context__
  return None


def finish(mngr):
  """Waits for a checkpoint still being written; DiskFullError when there was
  no room for it (the earlier checkpoints are whole)."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    why = _disk_full_text(e)
    if why is None:
      raise
    raise workdir_lib.disk_full(os.fspath(mngr.directory), why=why,
                                advice=FULL_DISK_ADVICE) from e


def restore_meta(mngr, number):
  return mngr.restore(number, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


def abstract(tree):
  """Shapes and dtypes of a tree of arrays, numpy scalars or ShapeDtypeStructs."""
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def restore(mngr, number, like):
  """The state saved as `number`, shaped like `like` (a state of the same stage),
  checked whole (`verify`)."""
  train_like = {k: v for k, v in like.items() if k != 'params'}
  restored = mngr.restore(number, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract(like['params'])),
      train=ocp.args.StandardRestore(abstract(train_like)),
      meta=ocp.args.JsonRestore()))
  verify(os.fspath(mngr.directory), restored['meta'], params=restored['params'],
         train=restored['train'])
  return {'params': restored['params'], **restored['train']}


def verify(directory, meta, **items):
  """Raises DamagedCheckpointError unless the restored `items` {name: tree}
  ('params', 'train') and `meta` are what was saved: their digests match those
  in `meta`, and no array holds a non-finite number (a NaN is never a result,
  whatever the digests say). A checkpoint saved before digests existed is
  checked for non-finite numbers only (logged once per folder)."""
  digests = meta.get(DIGESTS) if isinstance(meta, dict) else None
  if digests is None:
    if not isinstance(meta, dict) or set(meta) != OLD_META_KEYS:
      raise DamagedCheckpointError(f'its meta item is not one this project writes: {meta}')
    if directory not in _UNVERIFIED_LOGGED:
      _UNVERIFIED_LOGGED.add(directory)
      logging.warning('The checkpoints of %s carry no digests (saved before they were '
                      'added): their arrays are checked for non-finite numbers only.',
                      directory)
  elif not isinstance(digests, dict) or digests.get('meta') != meta_digest(meta):
    raise DamagedCheckpointError('its meta item differs from its digest (a damaged file)')
  for name, tree in items.items():
    if digests is not None and digests.get(name) != digests_lib.tree_digest(tree):
      raise DamagedCheckpointError(f'its {name} differ from their digest (a damaged file)')
    leaf = digests_lib.nonfinite_leaf(tree)
    if leaf is not None:
      raise DamagedCheckpointError(f'its {name} hold a non-finite number at {leaf}')


def damage(error):
  """One line on why a checkpoint did not restore."""
  text = (str(error).strip().splitlines() or [''])[0]
  return f'{type(error).__name__}: {text[:300]}'


def _late_read_of_a_failed_restore(unraisable):
  """Whether an unraisable exception is TensorStore handing a read's result to
  the event loop of an Orbax restore that already failed and closed its loop.

  Orbax runs a restore's reads on a fresh event loop and closes it as soon as
  one read raises; the reads still in flight complete later, on TensorStore's
  threads, and their callbacks meet a closed loop. Nothing waits for those
  results, so nothing is lost, but each prints a traceback (about 50 lines
  for one damaged checkpoint) after a fault that was handled.
  """
  error, tb = unraisable.exc_value, unraisable.exc_traceback
  if not (isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'
          and unraisable.object is None and tb is not None):
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  code = tb.tb_frame.f_code
  return (code.co_name == '_check_closed'
          and code.co_filename.endswith(os.path.join('asyncio', 'base_events.py')))


def _quiet_late_reads():
  """Drops the tracebacks of `_late_read_of_a_failed_restore` (every other
  unraisable exception goes to the hook that was there); installed once."""
  previous = sys.unraisablehook
  if getattr(previous, 'drops_late_reads', False):
    return

  def hook(unraisable):
    if not _late_read_of_a_failed_restore(unraisable):
      previous(unraisable)

  hook.drops_late_reads = True
  sys.unraisablehook = hook


def restore_newest(mngr, restore_fn, agree=lambda ok: ok):
  """(number, restore_fn(number), {number: why}) of the newest checkpoint that restores.

  Older ones are tried in turn when a newer one raises; the reasons of those
  skipped are returned (and logged). (None, None, skipped) when none restores.
  `agree` makes the processes of a multi-process run decide together.
  """
  _quiet_late_reads()
  skipped = {}
  for number in sorted(mngr.all_steps(), reverse=True):
    try:
      value, error = restore_fn(number), None
    except Exception as e:  # pylint: disable=broad-except
      value, error = None, e
    if agree(error is None):
      return number, value, skipped
    skipped[number] = damage(error) if error is not None else 'not restored on every process'
    logging.warning('Checkpoint %d is damaged (%s); trying the one before it.',
                    number, skipped[number])
  return None, None, skipped


def restore_params(workdir, like, number=None):
  """Just the params of checkpoint `number` (default: the newest whole one),
  checked whole (`verify`)."""
  mngr = manager(workdir, read_only=True)

  def restore_fn(n):
    restored = mngr.restore(n, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract(like)), meta=ocp.args.JsonRestore()))
    verify(os.fspath(mngr.directory), restored['meta'], params=restored['params'])
    return restored['params']

  if number is not None:
    return restore_fn(number)
  number, params, skipped = restore_newest(mngr, restore_fn)
  directory = workdir_lib.checkpoint_dir(workdir)
  if number is None:
    detail = ''.join(f'; {n}: {why}' for n, why in skipped.items())
    raise NoCheckpointError(f'No checkpoint in {directory} restores{detail}.' if skipped
                            else f'No checkpoint in {directory}.')
  if skipped:
    logging.warning('Using checkpoint %d of %s: the newer %s did not restore (%s).', number,
                    directory, ', '.join(map(str, skipped)), '; '.join(skipped.values()))
  return params
