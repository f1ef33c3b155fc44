"""Evaluation metrics in the dataset's own scale (scipy for the correlations)."""

import numpy as np
from scipy import stats

# Table 3/9 style: the overall score's range split into this many equal intervals.
NUM_SCORE_INTERVALS = 10


def output_metrics(names, y_true, y_pred):
  """Per output: Spearman's rho and p-value, Pearson's r and p-value, MSE.

  y_true, y_pred: [N, n] in the dataset's scale, columns in `names` order.
  Where the correlations do not exist (NaN here, null in the JSON files), the
  output's `undefined` says why.
  """
  y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
  results = {}
  for i, name in enumerate(names):
    t, p = y_true[:, i], y_pred[:, i]
    rho, rho_p = _correlation(stats.spearmanr, t, p)
    r, r_p = _correlation(stats.pearsonr, t, p)
    results[name] = dict(spearman=rho, spearman_p=rho_p, pearson=r, pearson_p=r_p,
                         mse=float(np.mean((t - p) ** 2)), n=int(len(t)))
    why = undefined_reason(t, p)
    if why:
      results[name]['undefined'] = why
  return results


def undefined_reason(true, pred):
  """Why no correlation of `true` with `pred` (each [N]) exists, or None."""
  if len(true) < 2:
    return 'correlations need two examples or more'
  if np.ptp(true) == 0:
    return 'every true value is the same: correlations are undefined'
  if np.ptp(pred) == 0:
    return 'every prediction is the same: correlations are undefined'
  return None


def _correlation(fn, a, b):
  """(statistic, p-value), NaN when either side is constant (undefined)."""
  if undefined_reason(a, b):
    return float('nan'), float('nan')
  result = fn(a, b)
  return float(result[0]), float(result[1])


def rank_correlation_matrix(values):
  """Spearman's rho between every pair of columns of [N, n] (Fig. 9/14).

  Pearson's r of the columns' ranks (average ranks for ties), as
  scipy.stats.spearmanr computes it; rows and columns of a constant column
  are NaN (undefined), its diagonal included. scipy's own matrix form cannot
  serve: with a constant column, or two columns, it returns a scalar.
  """
  values = np.asarray(values, np.float64)
  n = values.shape[1]
  matrix = np.full((n, n), np.nan)
  varying = np.flatnonzero(np.ptp(values, axis=0) > 0) if len(values) > 1 else []
  if len(varying):
    ranks = stats.rankdata(values[:, varying], axis=0)
    matrix[np.ix_(varying, varying)] = np.atleast_2d(np.corrcoef(ranks, rowvar=False))
  return matrix


def constant_columns(names, values):
  """The names of the columns of [N, n] `values` that hold one value (their rank
  correlations are undefined)."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return list(names)
  return [name for name, spread in zip(names, np.ptp(values, axis=0)) if spread == 0]


def equal_edges(lo, hi, num=NUM_SCORE_INTERVALS):
  """Edges of `num` equal intervals of [lo, hi]."""
  return np.linspace(lo, hi, num + 1)


def score_intervals(y_true, y_pred, edges):
  """Table 3/9: ground-truth frequency per interval, and coverage.

  edges: increasing [m + 1]; interval i is [edges[i], edges[i + 1]), the last
  one closed (so the maximum score is counted). Returns (rows, summary): one
  row per interval with its bounds, the number of test images whose true
  score falls in it, and how many of those lie inside the model's prediction
  range [min prediction, max prediction]; the summary gives that range, the
  share of all test images inside it, and how many true scores lie outside
  the intervals. Scores are compared in their own dtype (float32 targets, as
  Keras holds them: float32 0.7 lies just below 0.7).
  """
  y_true, y_pred = np.asarray(y_true), np.asarray(y_pred, np.float64)
  edges = np.asarray(edges, np.float64)
  num = len(edges) - 1
  bins = np.searchsorted(edges, y_true.astype(np.float64), side='right') - 1
  bins[y_true.astype(np.float64) == edges[-1]] = num - 1
  pred_lo, pred_hi = float(y_pred.min()), float(y_pred.max())
  true64 = y_true.astype(np.float64)
  inside = (true64 >= pred_lo) & (true64 <= pred_hi)
  rows = [dict(lo=float(edges[i]), hi=float(edges[i + 1]),
               count=int(np.sum(bins == i)),
               inside_prediction_range=int(np.sum(inside & (bins == i))))
          for i in range(num)]
  summary = dict(prediction_min=pred_lo, prediction_max=pred_hi,
                 share_inside_prediction_range=float(np.mean(inside)),
                 below_prediction_range=int(np.sum(true64 < pred_lo)),
                 above_prediction_range=int(np.sum(true64 > pred_hi)),
                 outside_intervals=int(np.sum((bins < 0) | (bins >= num))),
                 n=int(len(y_true)))
  return rows, summary
