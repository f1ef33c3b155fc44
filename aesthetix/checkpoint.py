"""Orbax checkpoints of the train state, and the workdir's config guard.

A checkpoint holds three items: 'params' (alone enough to use the model),
'train' (optimizer state, step, RNG) and 'meta' (stage and epoch, JSON).
Checkpoint numbers count finished epochs over both stages, so the latest one
is where a stopped run carries on. A checkpoint that does not restore is
skipped for the newest one that does (and, by a training run, moved to
WORKDIR/damaged/, never deleted); stage 1's last checkpoint is always kept, so
that stage 2 can start again from it with other settings.
"""

import datetime
import json
import os

from absl import logging
import jax
from ml_collections import config_dict
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from aesthetix import errors
from aesthetix import targets
from aesthetix import workdir as workdir_lib

CONFIG_FILE = workdir_lib.CONFIG_FILE
CHECKPOINT_DIR = workdir_lib.CHECKPOINT_DIR
# Fields that may change between a run and its resumption: where data lives,
# how often to log, how to evaluate. Anything else changes what is trained.
RESUMABLE_FIELDS = ('dataset.data_dir', 'dataset.manual_dir', 'dataset.cache_decoded',
                    'log_every_steps',
                    'eval_batch_size', 'checkpoint_max_to_keep', 'feature_cache',
                    'prefix_cache', 'feature_cache_dir')
# Fields that a run whose stage 2 has not finished may change: stage 2 then
# starts again from the end of stage 1 (after a divergence, say).
RESTARTABLE_STAGE = 'stage2'
# config.json's record of such changes (not a config field).
CHANGES_KEY = 'changes'
# Where the checkpoints of a stage 2 that was started again are moved.
SUPERSEDED_DIR = 'superseded'


class IncompatibleWorkdirError(errors.UserError, ValueError):
  """The workdir holds a run of a different config."""


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    else:
      out[key] = v
  return out


def config_to_json(config):
  return json.loads(config.to_json_best_effort())


def _stored_json(workdir):
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  stored = workdir_lib.read_json(path, 'config file')
  if not isinstance(stored, dict):
    raise workdir_lib.WorkdirError(f'{path} does not hold a config (a JSON object).')
  return stored


def stored_config(workdir):
  """The config a workdir was trained with (a ConfigDict), or None."""
  stored = _stored_json(workdir)
  if stored is None:
    return None
  stored.pop(CHANGES_KEY, None)
  return config_dict.ConfigDict(stored)


def stored_changes(workdir):
  """The recorded changes of stage-2 fields, oldest first ([] when none)."""
  stored = _stored_json(workdir) or {}
  return list(stored.get(CHANGES_KEY, []))


def trained_config(workdir):
  """The stored config of a workdir that `run.py --mode=train` made; else an error."""
  config = stored_config(workdir)
  if config is None:
    raise FileNotFoundError(f'{workdir} holds no {CONFIG_FILE}: not a workdir of '
                            '`run.py --mode=train`.')
  targets.use_config(config)  # A user's own outputs, as the run stored them.
  return config


def config_differences(old, new):
  """Dotted names of fields that differ, ignoring RESUMABLE_FIELDS."""
  a, b = _flatten(config_to_json(old)), _flatten(config_to_json(new))
  return sorted(k for k in set(a) | set(b)
                if k not in RESUMABLE_FIELDS and a.get(k) != b.get(k))


def checkpoint_numbers(workdir):
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def has_checkpoints(workdir):
  return bool(checkpoint_numbers(workdir))


def _restart_stage2(workdir, old, new, diff):
  """The change record when only stage 2's fields changed and stage 2 may start
  again from the end of stage 1; else None."""
  if not all(k.startswith(RESTARTABLE_STAGE + '.') for k in diff):
    return None
  if os.path.exists(workdir_lib.prediction_path(workdir, RESTARTABLE_STAGE,
                                                old.dataset.test_split)):
    return None  # Stage 2 finished: its results stand, as the config said.
  stage1_end = int(old.stage1.epochs)
  later = [n for n in checkpoint_numbers(workdir) if n > stage1_end]
  if later and stage1_end not in checkpoint_numbers(workdir):
    return None
  a, b = _flatten(config_to_json(old)), _flatten(config_to_json(new))
  return dict(time=datetime.datetime.now().isoformat(timespec='seconds'),
              fields={k: [a.get(k), b.get(k)] for k in diff},
              restarts=RESTARTABLE_STAGE, from_checkpoint=stage1_end,
              superseded=later)


def _supersede(workdir, numbers):
  """Moves stage-2 checkpoints of the old settings to WORKDIR/superseded/ (kept)."""
  if not numbers:
    return None
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  target = os.path.join(workdir, SUPERSEDED_DIR, f'{RESTARTABLE_STAGE}-{stamp}')
  os.makedirs(target, exist_ok=True)
  for n in numbers:
    os.replace(os.path.join(workdir, CHECKPOINT_DIR, str(n)), os.path.join(target, str(n)))
  return target


def claim_workdir(workdir, config, write=True):
  """Writes the config to the workdir; refuses one whose checkpoints are of another.

  A config.json without checkpoints (a run that stopped before its first
  epoch ended, say for a missing weights file) is replaced. Changed stage-2
  fields are accepted while stage 2 has not finished: stage 2 then starts
  again from stage 1's last checkpoint, its earlier checkpoints are moved to
  WORKDIR/superseded/, and config.json records the change. Returns that
  change record, or None. `write` False (processes other than 0) checks only.
  """
  old = stored_config(workdir)
  changes = stored_changes(workdir) if old is not None else []
  change = None
  if old is not None and has_checkpoints(workdir):
    diff = config_differences(old, config)
    if not diff:
      return None
    change = _restart_stage2(workdir, old, config, diff)
    if change is None:
      raise IncompatibleWorkdirError(
          f'{workdir} holds checkpoints of a run with a different config '
          f'({", ".join(diff)} differ from {os.path.join(workdir, CONFIG_FILE)}). '
          'Use a new --workdir, or the same config to resume (stage2.* fields may change '
          'until stage 2 has finished); nothing was changed.')
  if not write:
    return change
  if change is not None:
    change['moved_to'] = _supersede(workdir, change['superseded'])
    changes.append(change)
    logging.warning('Changed %s: stage 2 starts again from checkpoint %d (the end of '
                    'stage 1)%s.', ', '.join(change['fields']), change['from_checkpoint'],
                    f"; its earlier checkpoints are in {change['moved_to']}"
                    if change['moved_to'] else '')
  stored = config_to_json(config)
  if changes:
    stored[CHANGES_KEY] = changes
  workdir_lib.write_json(os.path.join(workdir, CONFIG_FILE), stored, indent=2,
                         sort_keys=True)
  return change


def manager(workdir, max_to_keep=None, read_only=False, keep=()):
  """Orbax's manager of WORKDIR/checkpoints: the latest `max_to_keep` and the
  numbers in `keep` stay; temporaries of an interrupted save are removed."""
  policies = [checkpoint_managers.LatestN(max_to_keep)]
  if keep:
    policies.append(checkpoint_managers.CustomSteps(list(keep)))
  options = ocp.CheckpointManagerOptions(
      create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
      preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies))
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
                               options=options, item_names=('params', 'train', 'meta'))


def save(mngr, number, state, meta):
  """Starts saving `state` ({'params', 'opt_state', 'step', 'rng'}) and `meta`.

  The write finishes in the background while training goes on (Orbax writes
  to a temporary directory and renames it when complete, so a stopped run
  never sees half a checkpoint); the next save, or `finish`, waits for it.
  The state is copied first: its caller passes host arrays that may share
  memory with device buffers, and a donated buffer may be rewritten before
  the write finishes.
  """
  state = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), state)
  train = {k: v for k, v in state.items() if k != 'params'}
  mngr.save(number, args=ocp.args.Composite(
      params=ocp.args.StandardSave(state['params']),
      train=ocp.args.StandardSave(train),
      meta=ocp.args.JsonSave(meta)))


def finish(mngr):
  """Waits for a checkpoint still being written."""
  mngr.wait_until_finished()


def restore_meta(mngr, number):
  return mngr.restore(number, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


def abstract(tree):
  """Shapes and dtypes of a tree of arrays, numpy scalars or ShapeDtypeStructs."""
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def restore(mngr, number, like):
  """The state saved as `number`, shaped like `like` (a state of the same stage)."""
  train_like = {k: v for k, v in like.items() if k != 'params'}
  restored = mngr.restore(number, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract(like['params'])),
      train=ocp.args.StandardRestore(abstract(train_like))))
  return {'params': restored['params'], **restored['train']}


def damage(error):
  """One line on why a checkpoint did not restore."""
  text = (str(error).strip().splitlines() or [''])[0]
  return f'{type(error).__name__}: {text[:300]}'


def restore_newest(mngr, restore_fn, agree=lambda ok: ok):
  """(number, restore_fn(number), {number: why}) of the newest checkpoint that restores.

  Older ones are tried in turn when a newer one raises; the reasons of those
  skipped are returned (and logged). (None, None, skipped) when none restores.
  `agree` makes the processes of a multi-process run decide together.
  """
  skipped = {}
  for number in sorted(mngr.all_steps(), reverse=True):
    try:
      value, error = restore_fn(number), None
    except Exception as e:  # pylint: disable=broad-except
      value, error = None, e
    if agree(error is None):
      return number, value, skipped
    skipped[number] = damage(error) if error is not None else 'not restored on every process'
    logging.warning('Checkpoint %d does not restore (%s); trying the one before it.',
                    number, skipped[number])
  return None, None, skipped


def restore_params(workdir, like, number=None):
  """Just the params of checkpoint `number` (default: the newest that restores)."""
  mngr = manager(workdir, read_only=True)
  restore_fn = lambda n: mngr.restore(n, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract(like))))['params']
  if number is not None:
    return restore_fn(number)
  number, params, skipped = restore_newest(mngr, restore_fn)
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if number is None:
    detail = ''.join(f'; {n}: {why}' for n, why in skipped.items())
    raise FileNotFoundError(f'No checkpoint in {directory} restores{detail}.' if skipped
                            else f'No checkpoint in {directory}.')
  if skipped:
    logging.warning('Using checkpoint %d of %s: the newer %s did not restore (%s).', number,
                    directory, ', '.join(map(str, skipped)), '; '.join(skipped.values()))
  return params
