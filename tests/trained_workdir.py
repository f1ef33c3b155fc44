"""One tiny trained workdir, shared by the predict, Grad-CAM and figures tests.

Training takes tens of seconds, so it runs once per test process (each of
pytest-xdist's workers): the first module that asks trains it under pytest's
temp dir, later ones reuse it.
"""

from aesthetix.results import experiment
from tests import tiny

STAGE1_EPOCHS = 2
STAGE2_EPOCHS = 1

_TRAINED = {}


def _train(tmp_path_factory):
  if 'workdir' not in _TRAINED:
    config = tiny.config(tmp_path_factory.mktemp('trained_data'),
                         STAGE1_EPOCHS, STAGE2_EPOCHS)
    workdir = str(tmp_path_factory.mktemp('trained_run'))
    plan = experiment.run(config, workdir)
    _TRAINED['workdir'] = (config, plan, workdir)
  return _TRAINED['workdir']


def get(tmp_path_factory):
  """(plan, workdir) of a finished two-stage tiny run."""
  _, plan, workdir = _train(tmp_path_factory)
  return plan, workdir


def config(tmp_path_factory):
  """The config that trained `get`'s workdir (a ConfigDict, to train it again)."""
  return _train(tmp_path_factory)[0]
