"""What a score means: its percentile among the model's predictions on its training photos.

A trained workdir keeps, per output, NUM_QUANTILES quantiles of its final
predictions on its own training split, in the dataset's scale
(W/score_quantiles.json, written at the end of training); a score's
percentile is read off them by linear interpolation ("better than 83% of the
photos it learned from"). Pure NumPy: serving reads them without the
training stack.
"""

import numpy as np

# Levels 0, 0.5%, ..., 100%: a percentile is exact to half a percentage point,
# whatever the size of the training split.
NUM_QUANTILES = 201


def levels(num=NUM_QUANTILES):
  """The quantile levels [num], 0 to 1."""
  return np.linspace(0.0, 1.0, num)


def quantiles(predictions, num=NUM_QUANTILES):
  """predictions [N, n] -> their quantiles [num, n] at `levels(num)` (linear
  interpolation between order statistics, float64)."""
  return np.quantile(np.asarray(predictions, np.float64), levels(num), axis=0)


def percentile(scores, values, at=None):
  """scores [N] -> their percentiles [N], 0 to 100, among quantiles `values` [Q]
  (at levels `at`, default evenly spaced).

  The inverse of the piecewise-linear quantile function: non-decreasing in the
  score, 0 below the smallest prediction, 100 above the largest; a run of
  equal quantiles (tied predictions) maps to its middle level. NaN stays NaN.
  """
  values = np.asarray(values, np.float64)
  at = levels(len(values)) if at is None else np.asarray(at, np.float64)
  unique, run = np.unique(values, return_inverse=True)
  middle = np.bincount(run, weights=at) / np.bincount(run)
  return 100.0 * np.interp(np.asarray(scores, np.float64), unique, middle, left=0.0,
                           right=1.0)


def record(names, predictions, split, stage, num=NUM_QUANTILES):
  """The JSON record of score_quantiles.json for predictions [N, n] (dataset scale)."""
  q = quantiles(predictions, num)
  return dict(levels=levels(num).tolist(), outputs={n: q[:, i].tolist() for i, n in
                                                    enumerate(names)},
              split=split, stage=stage, examples=int(len(predictions)),
              scale="the dataset's own scale, as the scores")


def table(quantile_record, names):
  """(levels [Q], values [Q, n]) of a quantile record for outputs `names`, or
  None when it lacks one of them."""
  outputs = quantile_record['outputs']
  if any(n not in outputs for n in names):
    return None
  return (np.asarray(quantile_record['levels'], np.float64),
          np.stack([np.asarray(outputs[n], np.float64) for n in names], axis=-1))
