"""Tests for aesthetix/targets.py: names, ranges, the [0, 1] mapping and its inverse."""

import jax.numpy as jnp
import numpy as np
import pytest

from aesthetix.data import targets

AADB_NAMES = ('score', 'BalacingElements', 'ColorHarmony', 'Content', 'DoF',
              'Light', 'MotionBlur', 'Object', 'Repetition', 'RuleOfThirds',
              'Symmetry', 'VividColor')


def test_output_names():
  assert targets.spec('aadb').output_names == AADB_NAMES
  assert targets.spec('eva').output_names == ('score', 'visual', 'composition',
                                         'quality', 'semantic')
  assert targets.spec('synthetic_aesthetics').output_names == AADB_NAMES
  assert targets.spec('synthetic_aesthetics').ranges == targets.spec('aadb').ranges


def test_unknown_dataset_names_the_known_ones():
  with pytest.raises(ValueError, match='Unknown dataset .*aadb, eva'):
    targets.spec('ava')


def test_aadb_mapping():
  raw = np.full((1, 12), -1.0, np.float32)
  raw[0, 0] = 0.25  # score in [0, 1]
  raw[0, AADB_NAMES.index('Repetition')] = 0.5  # in [0, 1]
  raw[0, AADB_NAMES.index('Symmetry')] = 1.0
  unit = targets.spec('aadb').to_unit(raw)
  expected = np.zeros((1, 12), np.float32)
  expected[0, 0] = 0.25
  expected[0, AADB_NAMES.index('Repetition')] = 0.5
  expected[0, AADB_NAMES.index('Symmetry')] = 1.0
  np.testing.assert_allclose(unit, expected)
  # (a + 1) / 2 for the bipolar attributes.
  np.testing.assert_allclose(targets.spec('aadb').to_unit(np.full(12, 0.4))[1], 0.7)


def test_eva_mapping():
  raw = np.array([[10.0, 1.0, 4.0, 2.5, 3.0], [0.0, 4.0, 1.0, 1.0, 1.0]])
  np.testing.assert_allclose(
      targets.spec('eva').to_unit(raw),
      [[1.0, 0.0, 1.0, 0.5, 2 / 3], [0.0, 1.0, 0.0, 0.0, 0.0]], rtol=1e-6)


@pytest.mark.parametrize('name', sorted(targets.SPECS))
def test_inverse_round_trip(name):
  lo, hi = targets.spec(name).bounds()
  raw = np.random.default_rng(0).uniform(lo, hi, size=(3, 4, len(lo)))
  np.testing.assert_allclose(targets.spec(name).from_unit(targets.spec(name).to_unit(raw)), raw,
                             rtol=1e-6, atol=1e-6)


def test_overall_only():
  np.testing.assert_allclose(targets.spec('eva').to_unit(np.array([[5.0], [2.0]])), [[0.5], [0.2]])
  np.testing.assert_allclose(targets.spec('eva').from_unit(np.array([0.3])), [3.0], rtol=1e-6)


def test_wrong_output_count():
  with pytest.raises(ValueError, match='expected 1 .* or 5 outputs'):
    targets.spec('eva').to_unit(np.zeros((2, 3)))


def test_jnp_arrays_stay_jnp_float32():
  out = targets.spec('aadb').from_unit(jnp.full((2, 12), 0.5, jnp.float32))
  assert isinstance(out, jnp.ndarray) and out.dtype == jnp.float32
  np.testing.assert_allclose(out[0, 1], 0.0)


def test_spec_validation():
  with pytest.raises(ValueError, match='no range'):
    targets.DatasetSpec('x', 'score', ('a',), {'score': (0, 1)})
  with pytest.raises(ValueError, match='empty range'):
    targets.DatasetSpec('x', 'score', (), {'score': (1, 1)})
