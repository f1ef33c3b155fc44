"""Paired-by-seed statistics of the seed sweeps, against scipy."""

import numpy as np
import pytest
import scipy.stats

from aesthetix.results import report
from aesthetix.results import stats
from aesthetix.training import plan as plan_lib
from bench import paired


def seed_rho_cells(table, seed):
  """The rho cells (strings) of `seed`'s row of a paired.markdown_table: for
  each stage and measure (overall, attribute mean), the two variants."""
  [row] = [l for l in table.splitlines() if l.startswith(f'| {seed} |')][:1]
  cells = [c.strip() for c in row.strip('|').split('|')]
  return cells[1:1 + len(plan_lib.STAGES) * len(paired.MEASURE_LABELS) * 2]


def variant_cells(rhos):
  """One variant's rho cells of a seed's row, from its {stage: rho_pair}: each
  stage's overall and attribute mean, as report.fmt_metric prints them. The
  row holds them interleaved with the other variant's (a, b, a, b, ...)."""
  return [report.fmt_metric(rhos[stage][what]) for stage in plan_lib.STAGES
          for what in paired.MEASURE_LABELS]


def number(cell):
  """A table's cell as a float ('n/a': nan)."""
  return float('nan') if cell == 'n/a' else float(cell)


def paired_rows(table):
  """{'<stage title> <measure>': (difference, interval low, high, p)} of the
  paired section of a paired.markdown_table, as floats."""
  rows = {}
  for stage in plan_lib.STAGES:
    for label in paired.MEASURE_LABELS.values():
      name = f'{plan_lib.STAGE_TITLES[stage]} {label}'
      [line] = [l for l in table.splitlines() if l.startswith(f'| {name} |')]
      diff, interval, p = (c.strip() for c in line.strip('|').split('|')[1:])
      low, high = interval.strip('[]').split(', ')
      rows[name] = tuple(number(x) for x in (diff, low, high, p))
  return rows


def test_paired_summary_matches_scipy():
  a = np.array([0.59, 0.63, 0.52, 0.57, 0.14])
  b = np.array([0.60, 0.67, 0.51, 0.61, 0.32])
  s = stats.paired_summary(a, b)
  d = b - a
  low, high = scipy.stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy.stats.sem(d))
  assert s['diff'] == pytest.approx(d.mean())
  assert (s['ci_low'], s['ci_high']) == pytest.approx((low, high))
  assert s['p'] == pytest.approx(scipy.stats.ttest_rel(b, a).pvalue)
  assert s['sd_a'] == pytest.approx(np.std(a, ddof=1))
  assert s['mean_b'] == pytest.approx(b.mean())


def test_paired_summary_of_one_pair_has_no_spread():
  s = stats.paired_summary([0.5], [0.6])
  assert s['diff'] == pytest.approx(0.1)
  assert all(np.isnan(s[k]) for k in ('sd_a', 'sd_b', 'ci_low', 'ci_high', 'p'))


def test_rho_pair_is_overall_and_mean_of_attributes():
  metrics = {'score': {'spearman': 0.5}, 'a': {'spearman': 0.1}, 'b': {'spearman': 0.4}}
  assert paired.rho_pair(['score', 'a', 'b'], metrics) == pytest.approx((0.5, 0.25))
  overall, mean = paired.rho_pair(['score'], metrics)
  assert overall == 0.5 and np.isnan(mean)


def test_mean_interval_and_one_sample_test_match_scipy():
  values = np.array([0.70, 0.71, 0.69, 0.72, 0.705])
  m = stats.mean_interval(values)
  low, high = scipy.stats.t.interval(0.95, 4, loc=values.mean(), scale=scipy.stats.sem(values))
  assert (m['mean'], m['ci_low'], m['ci_high']) == pytest.approx((values.mean(), low, high))
  s = stats.against_constant(values, 0.7041)
  assert s['p'] == pytest.approx(scipy.stats.ttest_1samp(values, 0.7041).pvalue)
  assert s['diff'] == pytest.approx(values.mean() - 0.7041)


def test_verdicts():
  assert stats.greater_verdict(dict(ci_low=0.01, ci_high=0.05)) == stats.SUPPORTED
  assert stats.greater_verdict(dict(ci_low=-0.05, ci_high=-0.01)) == stats.NOT_SUPPORTED
  assert stats.greater_verdict(dict(ci_low=-0.01, ci_high=0.05)) == stats.INCONCLUSIVE
  assert stats.greater_verdict(dict(ci_low=np.nan, ci_high=np.nan)) == stats.INCONCLUSIVE
  assert stats.similar_verdict(dict(ci_low=-0.01, ci_high=0.01), 0.02) == stats.SUPPORTED
  assert stats.similar_verdict(dict(ci_low=0.03, ci_high=0.05), 0.02) == stats.NOT_SUPPORTED
  assert stats.within_verdict(dict(ci_low=0.68, ci_high=0.70), 0.6738, 0.7112) == stats.SUPPORTED
