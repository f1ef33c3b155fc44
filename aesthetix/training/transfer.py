"""Starting a run from a trained model: `--config.init_from=W` (or W/checkpoints/N).

The backbone and the hidden layers start from W's parameters (its newest
checkpoint that restores, or checkpoint N), each output named as one of W's
starts from W's output unit (`model.multitask.transfer_params`: a kernel
column and a bias, in unit scale, whatever the two output-layer layouts), and
the other outputs from fresh Keras-style units; then the configured schedule
runs. The config's `model.backbone_weights` is not read. A W of another image
size or other hidden layers is refused before anything loads (run.py's
checks, before JAX loads, and train.preflight: `source_problem`).
"""

from absl import logging
import jax
import jax.numpy as jnp

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import preflight
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib


def source_plan(plan):
  """(the `Plan` of the workdir `plan.init_from` names, its checkpoint number or None)."""
  source, number = workdir_lib.checkpoint_source(plan.init_from)
  # Its model and data are read, not run: no device rule is needed.
  return plan_lib.resolve(workdir_lib.trained_config(source), backend='cpu'), number


def source_problem(plan):
  """Why `plan.init_from` cannot start this run (another image size or hidden
  layers, no trained workdir there), or None; reads only W's config.json."""
  if not plan.init_from:
    return None
  return preflight.init_source_problem(plan.init_from, plan.config_dict())


def summary(plan):
  """What a start from `plan.init_from` takes: {'path', 'dataset', 'checkpoint'
  (None: its newest that restores), 'from_source': outputs that start from its
  units, 'fresh': the others} (metrics.jsonl keeps it)."""
  source, number = source_plan(plan)
  taken, left = model_lib.matched_outputs(plan.model, source.model)
  return dict(path=plan.init_from, dataset=source.data.name, checkpoint=number,
              from_source=list(taken), fresh=list(left))


def start_params(plan, model, rng):
  """Initial params of `plan.model` from the trained model `plan.init_from` names.

  Fresh units are the Keras-style random ones that `rng` draws for a fresh
  start (no backbone weights file is read); the log says which outputs
  start from W and which are fresh.
  """
  source, number = source_plan(plan)
  source_dir, _ = workdir_lib.checkpoint_source(plan.init_from)
  like = model_lib.param_shapes(model_lib.build_model(source.model), source.data.image_size)
  # Here, not at the top: the scoring path imports this module (through
  # steps.py) and must not pay Orbax's import.
  from aesthetix.training import checkpoint  # pylint: disable=g-import-not-at-top
  trained = checkpoint.restore_params(source_dir, like, number)
  fresh = model_lib.init_params(model, rng, plan.data.image_size)
  params, taken, left = model_lib.transfer_params(fresh, trained, plan.model, source.model)
  layers = ', '.join(model_lib.hidden_layer_name(i) for i in range(len(plan.model.hidden_units)))
  logging.info('Starting from %s (%s, %s): the backbone and %s from it; outputs from it: %s; '
               'fresh outputs: %s.', source_dir, source.data.name,
               f'checkpoint {number}' if number is not None else 'its newest checkpoint',
               layers, ', '.join(taken) or 'none', ', '.join(left) or 'none')
  return jax.tree_util.tree_map(jnp.asarray, params)
