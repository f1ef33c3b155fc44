"""Statistics over seeds: means with confidence intervals, paired differences, verdicts.

The paper reports one run per setting; over several seeds a difference is
judged against the seed-to-seed spread. Used by the reproduction (PAPER.md)
and by the benchmarks' seed sweeps.
"""

import numpy as np
import scipy.stats

CONFIDENCE = 0.95
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = 'supported', 'not supported', 'inconclusive'


def _half_width(values):
  n = len(values)
  return scipy.stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * np.std(values, ddof=1) / np.sqrt(n)


def mean_interval(values):
  """dict(mean, ci_low, ci_high, n, values) of `values` (NaNs dropped); the
  interval is Student's t at CONFIDENCE, NaN with fewer than two values."""
  values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  out = dict(mean=float(values.mean()) if len(values) else np.nan, ci_low=np.nan,
             ci_high=np.nan, n=int(len(values)), values=values.tolist())
  if len(values) >= 2:
    half = _half_width(values)
    out.update(ci_low=out['mean'] - half, ci_high=out['mean'] + half)
  return out


def paired_summary(a, b):
  """Mean and sd of `a` and of `b`, and of b - a paired: CI and t-test p.

  Returns dict(mean_a, sd_a, mean_b, sd_b, diff, ci_low, ci_high, p); the
  spread and interval are nan with fewer than two pairs.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d = b - a
  out = dict(mean_a=a.mean(), mean_b=b.mean(), diff=d.mean(),
             sd_a=np.nan, sd_b=np.nan, ci_low=np.nan, ci_high=np.nan, p=np.nan)
  if len(d) >= 2:
    half = _half_width(d)
    out.update(sd_a=a.std(ddof=1), sd_b=b.std(ddof=1),
               ci_low=d.mean() - half, ci_high=d.mean() + half,
               p=scipy.stats.ttest_rel(b, a).pvalue)
  return out


def against_constant(values, constant):
  """values - constant: dict(diff, ci_low, ci_high, p) by a one-sample t-test."""
  values = np.asarray(values, np.float64)
  s = paired_summary(np.full(len(values), constant), values)
  if len(values) >= 2:
    s['p'] = scipy.stats.ttest_1samp(values, constant).pvalue
  return s


def greater_verdict(summary):
  """For a claim 'b > a' (summary of b - a): supported when the whole interval
  lies above 0, not supported when it lies below, else inconclusive."""
  if not np.isfinite(summary['ci_low']):
    return INCONCLUSIVE
  if summary['ci_low'] > 0:
    return SUPPORTED
  if summary['ci_high'] < 0:
    return NOT_SUPPORTED
  return INCONCLUSIVE


def _interval_verdict(lo, hi, low, high):
  """Supported when the interval [lo, hi] lies inside [low, high], not
  supported when it lies wholly outside, else (or undefined) inconclusive."""
  if not np.isfinite(lo):
    return INCONCLUSIVE
  if low <= lo and hi <= high:
    return SUPPORTED
  if hi < low or lo > high:
    return NOT_SUPPORTED
  return INCONCLUSIVE


def similar_verdict(summary, margin):
  """For a claim 'a and b are similar' (within ±margin): supported when the
  interval of b - a lies inside it, not supported when it lies wholly outside."""
  return _interval_verdict(summary['ci_low'], summary['ci_high'], -margin, margin)


def within_verdict(summary_interval, low, high):
  """For a claim 'the mean lies within [low, high]', from mean_interval."""
  return _interval_verdict(summary_interval['ci_low'], summary_interval['ci_high'], low, high)
