"""A trained workdir read back from its files alone: `load_trained(workdir)`,
the one way the Scorer, evaluation, Grad-CAM and export get a trained model.

Its config.json gives the plan and the model; the params come from
W/params.npz when that is the newest checkpoint's copy (params_file.py: no
Orbax imported), else from the newest checkpoint that restores.
"""

from absl import logging

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import params_file
from aesthetix.training import plan as plan_lib


def load_trained(workdir):
  """(plan, model, params) of a trained workdir."""
  plan = plan_lib.resolve(workdir_lib.trained_config(workdir))
  model = model_lib.build_model(plan.model)
  return plan, model, trained_params(workdir, plan, model)


def trained_params(workdir, plan, model):
  """The params of the newest checkpoint: its copy in W/params.npz when that
  serves, else read from the checkpoint (saying why once, a warning when the
  file is damaged)."""
  reading = params_file.read(workdir)
  if reading.params is not None:
    return reading.params
  log = logging.warning if reading.damaged else logging.info
  log('%s: reading the newest checkpoint instead (the train command writes the file '
      'anew).', reading.why)
  # Orbax only when the params file cannot serve: its import and restore are
  # most of a warm scoring process's start otherwise.
  from aesthetix.training import checkpoint  # pylint: disable=g-import-not-at-top
  return checkpoint.restore_params(workdir, model_lib.param_shapes(model, plan.data.image_size))
