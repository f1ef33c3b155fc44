"""aesthetix: multi-task CNN for image aesthetic assessment in JAX/Flax.

`aesthetix.Scorer.from_workdir(W).score(photos)` scores photos with a trained
model (aesthetix/scorer.py). It is imported on first use, so that the command
line's quick checks load no JAX.
"""


def __getattr__(name):
  if name == 'Scorer':
    from aesthetix.scorer import Scorer  # pylint: disable=g-import-not-at-top
    return Scorer
  raise AttributeError(f'module aesthetix has no attribute {name!r}')
