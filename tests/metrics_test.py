"""Metrics against scipy and hand-computed values."""

import numpy as np
from scipy import stats

from aesthetix.training import metrics


def test_output_metrics_known_values():
  true = np.array([[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]], float)
  pred = np.array([[2, 50], [1, 40], [4, 30], [3, 20], [5, 10]], float)
  m = metrics.output_metrics(('a', 'b'), true, pred)
  # Ranks differ by two swaps: rho = 1 - 6 * 4 / (5 * 24) = 0.8.
  assert np.isclose(m['a']['spearman'], 0.8)
  assert np.isclose(m['b']['spearman'], -1.0)
  assert np.isclose(m['a']['mse'], 4 / 5)
  assert np.isclose(m['a']['pearson'], stats.pearsonr(true[:, 0], pred[:, 0])[0])
  assert np.isclose(m['a']['spearman_p'], stats.spearmanr(true[:, 0], pred[:, 0])[1])
  assert m['a']['n'] == 5


def test_output_metrics_match_scipy_on_random_data():
  rng = np.random.default_rng(0)
  true = rng.normal(size=(200, 3))
  pred = true + rng.normal(size=(200, 3))
  m = metrics.output_metrics(('x', 'y', 'z'), true, pred)
  for i, name in enumerate('xyz'):
    rho, p = stats.spearmanr(true[:, i], pred[:, i])
    assert np.isclose(m[name]['spearman'], rho) and np.isclose(m[name]['spearman_p'], p)


def test_constant_predictions_give_nan_not_a_crash():
  m = metrics.output_metrics(('a',), np.arange(5.0)[:, None], np.ones((5, 1)))
  assert np.isnan(m['a']['spearman']) and np.isclose(m['a']['mse'], np.mean((np.arange(5) - 1) ** 2))


def test_rank_correlation_matrix():
  rng = np.random.default_rng(1)
  values = rng.normal(size=(50, 3))
  values[:, 2] = -values[:, 0]
  matrix = metrics.rank_correlation_matrix(values)
  assert matrix.shape == (3, 3)
  np.testing.assert_allclose(np.diag(matrix), 1)
  assert np.isclose(matrix[0, 2], -1)
  assert np.isclose(matrix[0, 1], stats.spearmanr(values[:, 0], values[:, 1])[0])


def test_score_intervals():
  true = np.array([0.0, 0.05, 0.15, 0.5, 0.95, 1.0])
  pred = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
  rows, summary = metrics.score_intervals(true, pred, metrics.equal_edges(0.0, 1.0, 10))
  assert [r['count'] for r in rows] == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
  # Prediction range [0.1, 0.6] holds the true scores 0.15 and 0.5.
  assert [r['inside_prediction_range'] for r in rows] == [0, 1, 0, 0, 0, 1, 0, 0, 0, 0]
  assert summary['prediction_min'] == 0.1 and summary['prediction_max'] == 0.6
  assert np.isclose(summary['share_inside_prediction_range'], 2 / 6)


def test_rank_correlation_matrix_with_constant_columns_matches_scipy_elsewhere():
  rng = np.random.default_rng(2)
  values = rng.integers(0, 5, size=(200, 12)).astype(float)  # Ties, as scores have.
  for constant in ([3], [0, 5, 11], list(range(12))):
    v = values.copy()
    v[:, constant] = 0.5
    matrix = metrics.rank_correlation_matrix(v)
    assert matrix.shape == (12, 12)
    for i in range(12):
      for j in range(12):
        if i in constant or j in constant:
          assert np.isnan(matrix[i, j])
        else:
          assert np.isclose(matrix[i, j], stats.spearmanr(v[:, i], v[:, j])[0])
  two = metrics.rank_correlation_matrix(values[:, :2])  # scipy gives a scalar here.
  assert two.shape == (2, 2) and np.isclose(two[0, 1], stats.spearmanr(values[:, 0],
                                                                        values[:, 1])[0])
  assert np.isnan(metrics.rank_correlation_matrix(np.full((200, 12), 0.5))).all()


def test_table3_intervals_count_float32_scores_as_keras_holds_them():
  """float32 0.7 and 0.9 lie just below 0.7 and 0.9: into 0.60-0.70 and 0.80-0.90."""
  edges = [0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 1.00]
  values = [0.05, 0.099, 0.1, 0.7, 0.9, 1.0, 0.01]
  true = np.array(values, np.float32)
  rows, summary = metrics.score_intervals(true, true, edges)
  counts = [r['count'] for r in rows]
  assert counts == [2, 1, 0, 0, 0, 0, 1, 0, 1, 1]
  assert summary['outside_intervals'] == 1  # 0.01 lies below 0.05.
  rows64, _ = metrics.score_intervals(np.array(values, np.float64), true, edges)
  assert [r['count'] for r in rows64][6:] == [0, 1, 0, 2]  # In float64, 0.7 is 0.7.
