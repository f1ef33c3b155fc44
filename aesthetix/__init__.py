"""aesthetix: multi-task CNN for image aesthetic assessment in JAX/Flax.

`aesthetix.Scorer.from_workdir(W).score(photos)` scores photos with a trained
model (aesthetix/serving/scorer.py). It is imported on first use, so that the
command line's quick checks load no JAX.

The package is read from its wings; each `__init__` says what it owns and what
it may import (tests/imports_test.py keeps the arrows one way):

  runtime/   plumbing every wing may use: devices and processes, the workdir's
             files, errors, progress bars, the command line's path checks
  data/      what an example is: targets and their ranges, photos to pixels,
             the resize, the datasets' builders and the input pipeline
  model/     the networks: VGG16, the multi-task head, Keras' weights, Table 2
  training/  a run's plan, the parameter masks, the per-device steps, caches of
             frozen layers, checkpoints and the training loop
  results/   what a run shows: report, figures, statistics, the paper's numbers,
             evaluation, experiments and the reproduction
  serving/   using a trained model: the Scorer, predict, Grad-CAM, export
  cli/       run.py's modes, flags and checks
"""


def __getattr__(name):
  if name == 'Scorer':
    from aesthetix.serving.scorer import Scorer  # pylint: disable=g-import-not-at-top
    return Scorer
  raise AttributeError(f'module aesthetix has no attribute {name!r}')
