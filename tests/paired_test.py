"""Paired-by-seed statistics of the seed sweeps, against scipy."""

import numpy as np
import pytest
import scipy.stats

from bench import paired


def test_paired_summary_matches_scipy():
  a = np.array([0.59, 0.63, 0.52, 0.57, 0.14])
  b = np.array([0.60, 0.67, 0.51, 0.61, 0.32])
  s = paired.paired_summary(a, b)
  d = b - a
  low, high = scipy.stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy.stats.sem(d))
  assert s['diff'] == pytest.approx(d.mean())
  assert (s['ci_low'], s['ci_high']) == pytest.approx((low, high))
  assert s['p'] == pytest.approx(scipy.stats.ttest_rel(b, a).pvalue)
  assert s['sd_a'] == pytest.approx(np.std(a, ddof=1))
  assert s['mean_b'] == pytest.approx(b.mean())


def test_paired_summary_of_one_pair_has_no_spread():
  s = paired.paired_summary([0.5], [0.6])
  assert s['diff'] == pytest.approx(0.1)
  assert all(np.isnan(s[k]) for k in ('sd_a', 'sd_b', 'ci_low', 'ci_high', 'p'))


def test_rho_pair_is_overall_and_mean_of_attributes():
  metrics = {'score': {'spearman': 0.5}, 'a': {'spearman': 0.1}, 'b': {'spearman': 0.4}}
  assert paired.rho_pair(['score', 'a', 'b'], metrics) == pytest.approx((0.5, 0.25))
  overall, mean = paired.rho_pair(['score'], metrics)
  assert overall == 0.5 and np.isnan(mean)
