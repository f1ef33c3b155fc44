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

from aesthetix.runtime import errors


class UnknownDatasetError(errors.UserError, ValueError):
  """A config names a dataset aesthetix has no spec (and no builder) for."""


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

  def bounds(self, n=None):
    """(lo, hi) float32 arrays [n] for the first `n` outputs (n: 1 or K+1)."""
    names = self.output_names
    n = len(names) if n is None else n
    if n not in (1, len(names)):
      raise ValueError(
          f'{self.name}: expected 1 (overall only) or {len(names)} outputs '
          f'{names}, got {n}.')
    lo = np.array([self.ranges[k][0] for k in names[:n]], np.float32)
    hi = np.array([self.ranges[k][1] for k in names[:n]], np.float32)
    return lo, hi

  def to_unit(self, values):
    """Dataset scale -> [0, 1]. values: [..., n], n = 1 or K+1 (output order)."""
    lo, hi = self.bounds(values.shape[-1])
    return (values - lo) / (hi - lo)

  def from_unit(self, values):
    """[0, 1] -> dataset scale; the inverse of `to_unit`. values: [..., n]."""
    lo, hi = self.bounds(values.shape[-1])
    return values * (hi - lo) + lo


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


# Datasets whose outputs their data declares (data_builders/rated_photos): their
# spec is made from the outputs a config holds (`declared_spec`), read from the
# data's dataset.json when a run starts and kept in each workdir's config.json.
DECLARED = ('rated_photos',)


def declared_spec(name, outputs):
  """The `DatasetSpec` of ((name, lo, hi), ...), the overall score first."""
  outputs = tuple((str(n), float(lo), float(hi)) for n, lo, hi in outputs)
  return DatasetSpec(name, outputs[0][0], tuple(n for n, _, _ in outputs[1:]),
                     {n: (lo, hi) for n, lo, hi in outputs})


def known():
  """The names of every dataset aesthetix reads."""
  return tuple(sorted((*SPECS, *DECLARED)))


def spec(name):
  """The `DatasetSpec` of dataset `name`, one of SPECS (the declared datasets'
  specs come from their outputs: `declared_spec`)."""
  if name in DECLARED:
    raise ValueError(f'{name}: its outputs come from its dataset.json; make its spec '
                     'with declared_spec(name, outputs).')
  if name not in SPECS:
    raise UnknownDatasetError(
        f'Unknown dataset {name!r}; known: {", ".join(known())}. '
        'Add its DatasetSpec to aesthetix/data/targets.py.')
  return SPECS[name]
