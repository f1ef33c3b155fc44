"""Targets of each dataset and their mapping to the model's [0, 1] outputs.

The model ends in sigmoids, so every target is mapped to [0, 1] by the range its
dataset defines: `unit = (value - lo) / (hi - lo)`. This module is the one place
that knows the names, order and ranges; predictions and tables shown to users
are mapped back with `from_unit` to the dataset's own scale.

Arrays have the outputs on the last axis, ordered as `output_names(name)`:
the overall score first, then the attributes. A last axis of length 1 means the
overall score alone (the single-task model).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Names and value ranges of one dataset's targets.

  Attributes:
    name: dataset name, as in `config.dataset.name`.
    overall: name of the overall aesthetic score.
    attributes: names of the attribute scores, in output order.
    ranges: name -> (lo, hi), the range the dataset defines for that target.
  """
  name: str
  overall: str
  attributes: tuple[str, ...]
  ranges: dict[str, tuple[float, float]]

  def __post_init__(self):
    missing = [n for n in (self.overall, *self.attributes) if n not in self.ranges]
    if missing:
      raise ValueError(f'{self.name}: no range for {missing}.')
    empty = [n for n, (lo, hi) in self.ranges.items() if not hi > lo]
    if empty:
      raise ValueError(f'{self.name}: empty range for {empty}.')

  @property
  def output_names(self):
    return (self.overall, *self.attributes)


# AADB (Kong et al. 2016): the official label files' attribute names, including
# their spelling 'BalacingElements'. Overall score in [0, 1]; Repetition and
# Symmetry in [0, 1]; the other attributes in [-1, 1].
_AADB_ATTRIBUTES = (
    'BalacingElements', 'ColorHarmony', 'Content', 'DoF', 'Light',
    'MotionBlur', 'Object', 'Repetition', 'RuleOfThirds', 'Symmetry',
    'VividColor')
_AADB_UNIPOLAR = ('Repetition', 'Symmetry')
_AADB_RANGES = {
    'score': (0.0, 1.0),
    **{a: ((0.0, 1.0) if a in _AADB_UNIPOLAR else (-1.0, 1.0))
       for a in _AADB_ATTRIBUTES},
}

# EVA (Kang et al. 2020): votes of 0..10 for the score and of 1..4 (very bad ..
# very good) for each attribute; targets are means over an image's votes.
_EVA_ATTRIBUTES = ('visual', 'composition', 'quality', 'semantic')
_EVA_RANGES = {'score': (0.0, 10.0), **{a: (1.0, 4.0) for a in _EVA_ATTRIBUTES}}

SPECS = {
    'aadb': DatasetSpec('aadb', 'score', _AADB_ATTRIBUTES, dict(_AADB_RANGES)),
    'eva': DatasetSpec('eva', 'score', _EVA_ATTRIBUTES, dict(_EVA_RANGES)),
    # The demo dataset mirrors AADB's layout so that every tool treats both alike.
    'synthetic_aesthetics': DatasetSpec(
        'synthetic_aesthetics', 'score', _AADB_ATTRIBUTES, dict(_AADB_RANGES)),
}


# Datasets whose outputs their data declares (data_builders/rated_photos): the
# spec comes from the config (config.dataset.outputs, filled from the data's
# dataset.json and stored in each workdir's config.json), registered here.
DECLARED = ('rated_photos',)
_DECLARED_SPECS = {}


def declared_spec(name, outputs):
  """The `DatasetSpec` of ((name, lo, hi), ...), the overall score first."""
  outputs = tuple((str(n), float(lo), float(hi)) for n, lo, hi in outputs)
  return DatasetSpec(name, outputs[0][0], tuple(n for n, _, _ in outputs[1:]),
                     {n: (lo, hi) for n, lo, hi in outputs})


def use_config(config):
  """Makes `config`'s declared outputs the spec of its dataset; returns the spec.

  A no-op for the datasets of SPECS. For a DECLARED dataset, the outputs are
  `config.dataset.outputs`; when that is empty they are read from the
  dataset.json of `config.dataset.manual_dir` into it (so config.json keeps
  them, and a copied workdir scores without the data).
  """
  d = config.dataset
  if d.name not in DECLARED:
    return spec(d.name)
  if not d.get('outputs'):
    if not d.get('manual_dir'):
      raise ValueError(f'{d.name}: give the folder of the photos, their ratings and '
                       'dataset.json with --config.dataset.manual_dir=DIR.')
    from data_builders.rated_photos import ratings  # pylint: disable=g-import-not-at-top
    d.outputs = tuple(list(o) for o in ratings.read_spec(d.manual_dir).outputs)
  _DECLARED_SPECS[d.name] = declared_spec(d.name, d.outputs)
  return _DECLARED_SPECS[d.name]


def spec(name):
  """The `DatasetSpec` of dataset `name`."""
  if name in _DECLARED_SPECS:
    return _DECLARED_SPECS[name]
  if name in DECLARED:
    raise ValueError(f'{name}: its outputs come from its dataset.json and are not known '
                     'yet (targets.use_config(config) first).')
  if name not in SPECS:
    raise ValueError(
        f'Unknown dataset {name!r}; known: {", ".join(sorted((*SPECS, *DECLARED)))}. '
        'Add its DatasetSpec to aesthetix/targets.py.')
  return SPECS[name]


def output_names(name):
  """(overall, *attributes): the order of the model's outputs for `name`."""
  return spec(name).output_names


def ranges(name, n=None):
  """(lo, hi) float32 arrays [n] for the first `n` outputs (n: 1 or K+1)."""
  names = output_names(name)
  n = len(names) if n is None else n
  if n not in (1, len(names)):
    raise ValueError(
        f'{name}: expected 1 (overall only) or {len(names)} outputs '
        f'{names}, got {n}.')
  r = spec(name).ranges
  lo = np.array([r[k][0] for k in names[:n]], np.float32)
  hi = np.array([r[k][1] for k in names[:n]], np.float32)
  return lo, hi


def to_unit(name, values):
  """Dataset scale -> [0, 1]. values: [..., n], n = 1 or K+1 (output order)."""
  lo, hi = ranges(name, values.shape[-1])
  return (values - lo) / (hi - lo)


def from_unit(name, values):
  """[0, 1] -> dataset scale; the inverse of `to_unit`. values: [..., n]."""
  lo, hi = ranges(name, values.shape[-1])
  return values * (hi - lo) + lo


def model_output_names(config):
  """Names of the model's outputs for `config`: all K+1 of its dataset, or the
  overall score alone (config.model.tasks 'overall')."""
  names = output_names(config.dataset.name)
  return names if config.model.tasks == 'multi' else names[:1]
