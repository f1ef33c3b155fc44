"""One tiny trained workdir, shared by the predict, Grad-CAM and figures tests.

Training takes tens of seconds, so it runs once per test process (each of
pytest-xdist's workers): the first module that asks trains it under pytest's
temp dir, later ones reuse it.
"""

from aesthetix import train
from tests import tiny

STAGE1_EPOCHS = 2
STAGE2_EPOCHS = 1

_TRAINED = {}


def get(tmp_path_factory):
  """(config, workdir) of a finished two-stage tiny run."""
  if 'workdir' not in _TRAINED:
    config = tiny.config(tmp_path_factory.mktemp('trained_data'),
                         STAGE1_EPOCHS, STAGE2_EPOCHS)
    workdir = str(tmp_path_factory.mktemp('trained_run'))
    train.train_and_evaluate(config, workdir)
    _TRAINED['workdir'] = (config, workdir)
  return _TRAINED['workdir']
