"""Orbax checkpoints of the train state, and the workdir's config guard.

A checkpoint holds three items: 'params' (alone enough to use the model),
'train' (optimizer state, step, RNG) and 'meta' (stage and epoch, JSON).
Checkpoint numbers count finished epochs over both stages, so the latest one
is where a stopped run carries on.
"""

import json
import os

import jax
from ml_collections import config_dict
import numpy as np
import orbax.checkpoint as ocp

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
# Fields that may change between a run and its resumption: where data lives,
# how often to log, how to evaluate. Anything else changes what is trained.
RESUMABLE_FIELDS = ('dataset.data_dir', 'dataset.manual_dir', 'dataset.cache_decoded',
                    'log_every_steps',
                    'eval_batch_size', 'checkpoint_max_to_keep', 'feature_cache',
                    'prefix_cache', 'feature_cache_dir')


class IncompatibleWorkdirError(ValueError):
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


def stored_config(workdir):
  """The config a workdir was trained with (a ConfigDict), or None."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return config_dict.ConfigDict(json.load(f))


def trained_config(workdir):
  """The stored config of a workdir that `run.py --mode=train` made; else an error."""
  config = stored_config(workdir)
  if config is None:
    raise FileNotFoundError(f'{workdir} holds no {CONFIG_FILE}: not a workdir of '
                            '`run.py --mode=train`.')
  return config


def config_differences(old, new):
  """Dotted names of fields that differ, ignoring RESUMABLE_FIELDS."""
  a, b = _flatten(config_to_json(old)), _flatten(config_to_json(new))
  return sorted(k for k in set(a) | set(b)
                if k not in RESUMABLE_FIELDS and a.get(k) != b.get(k))


def has_checkpoints(workdir):
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  return os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory))


def claim_workdir(workdir, config):
  """Writes the config to the workdir; refuses one whose checkpoints are of another.

  A config.json without checkpoints (a run that stopped before its first
  epoch ended, say for a missing weights file) is replaced.
  """
  old = stored_config(workdir)
  if old is not None and has_checkpoints(workdir):
    diff = config_differences(old, config)
    if diff:
      raise IncompatibleWorkdirError(
          f'{workdir} holds checkpoints of a run with a different config '
          f'({", ".join(diff)} differ from {os.path.join(workdir, CONFIG_FILE)}). '
          'Use a new --workdir, or the same config to resume; nothing was changed.')
    return
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, CONFIG_FILE + '.tmp')
    with open(tmp, 'w') as f:
      json.dump(config_to_json(config), f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(workdir, CONFIG_FILE))


def manager(workdir, max_to_keep=None, read_only=False):
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                         read_only=read_only)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
                               options=options, item_names=('params', 'train', 'meta'))


def save(mngr, number, state, meta):
  """Starts saving `state` ({'params', 'opt_state', 'step', 'rng'}) and `meta`.

  The write finishes in the background while training goes on (Orbax writes
  to a temporary directory and renames it when complete, so a stopped run
  never sees half a checkpoint); the next save, or `finish`, waits for it.
  The state is copied first: np.asarray of a CPU jax.Array can share its
  memory, and a donated buffer may be rewritten before the write finishes.
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


def restore_params(workdir, like, number=None):
  """Just the params of checkpoint `number` (default: the latest) of a workdir."""
  mngr = manager(workdir, read_only=True)
  number = mngr.latest_step() if number is None else number
  if number is None:
    raise FileNotFoundError(f'No checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}.')
  return mngr.restore(number, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract(like))))['params']
