"""Orbax checkpoints of the train state, and loading a trained workdir.

A checkpoint holds three items: 'params' (alone enough to use the model),
'train' (optimizer state, step, RNG) and 'meta' (stage and epoch, JSON).
Checkpoint numbers count finished epochs over all stages, so the latest one
is where a stopped run carries on. A checkpoint that does not restore is
skipped for the newest one that does (and, by a training run, moved to
WORKDIR/damaged/, never deleted); the first stage's last checkpoint is always
kept, so that the last stage can start again from it with other settings.
`load_trained(workdir)` is the one way to read a trained model back (the
Scorer, evaluation, Grad-CAM and export all use it).
"""

import os

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers
import numpy as np

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import errors
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib


class NoCheckpointError(errors.UserError):
  """A workdir holds no checkpoint that restores."""


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
  directory = workdir_lib.checkpoint_dir(workdir)
  if number is None:
    detail = ''.join(f'; {n}: {why}' for n, why in skipped.items())
    raise NoCheckpointError(f'No checkpoint in {directory} restores{detail}.' if skipped
                            else f'No checkpoint in {directory}.')
  if skipped:
    logging.warning('Using checkpoint %d of %s: the newer %s did not restore (%s).', number,
                    directory, ', '.join(map(str, skipped)), '; '.join(skipped.values()))
  return params


def load_trained(workdir):
  """(plan, model, params) of a trained workdir, from its files alone: its
  config.json and its newest checkpoint that restores."""
  plan = plan_lib.resolve(workdir_lib.trained_config(workdir))
  model = model_lib.build_model(plan.model)
  like = model_lib.param_shapes(model, plan.data.image_size)
  return plan, model, restore_params(workdir, like)
