"""Strict JSON (RFC 8259) in every file aesthetix writes (issue 24, item 6).

`JSON.parse`, serde_json and many dashboards refuse a bare NaN, which Python's
json writes by default: a value that does not exist is written as null, with
the reason beside it where a reader needs one, and our own older files (with
NaN) still read. readme_commands_test checks every JSON file the documented
commands leave; these tests check the writers and readers one by one.
"""

import json
import math

import numpy as np
import pytest

from aesthetix.results import figures
from aesthetix.results import report
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import predict
from aesthetix.training import metrics
from aesthetix.training import plan as plan_lib


def strict(text):
  """`text` parsed as RFC 8259 allows: NaN and infinities are errors."""
  def refuse(constant):
    raise ValueError(f'{constant} is not JSON')
  return json.loads(text, parse_constant=refuse)


def test_strict_parse_refuses_what_python_writes_by_default():
  with pytest.raises(ValueError, match='NaN is not JSON'):
    strict(json.dumps({'rho': float('nan')}))


VALUES = {'rho': float('nan'), 'p': [float('inf'), -float('inf'), np.float32(1.5)],
          'matrix': np.array([[1.0, np.nan], [np.nan, 1.0]]), 'count': np.int64(3),
          'pair': (1, 2), 'nested': {'ok': True, 'none': None}}
EXPECTED = {'rho': None, 'p': [None, None, 1.5], 'matrix': [[1.0, None], [None, 1.0]],
            'count': 3, 'pair': [1, 2], 'nested': {'ok': True, 'none': None}}


def test_dumps_writes_null_for_what_does_not_exist():
  assert strict(workdir_lib.dumps(VALUES)) == EXPECTED


def test_the_workdir_writers_write_strict_json(tmp_path):
  workdir_lib.write_json(str(tmp_path / 'r.json'), VALUES, indent=2)
  assert strict((tmp_path / 'r.json').read_text()) == EXPECTED
  workdir_lib.append_jsonl(str(tmp_path / 'm.jsonl'), VALUES)
  workdir_lib.append_jsonl(str(tmp_path / 'm.jsonl'), {'epoch': 2})
  lines = (tmp_path / 'm.jsonl').read_text().splitlines()
  assert [strict(line) for line in lines] == [EXPECTED, {'epoch': 2}]


def test_a_value_json_cannot_hold_leaves_no_file(tmp_path):
  with pytest.raises(TypeError):
    workdir_lib.write_json(str(tmp_path / 'r.json'), {'a': object()})
  assert list(tmp_path.iterdir()) == []


def test_older_files_with_nan_still_read(tmp_path):
  """Files that earlier versions wrote, with bare NaN: the readers stay lenient."""
  path = tmp_path / 'evaluation_eva_test.json'
  path.write_text('{"trained_on": "aadb", "evaluated_on": "eva", "split": "test", '
                  '"metrics": {"score": {"spearman": NaN, "n": 4}}}')
  assert math.isnan(workdir_lib.read_json(str(path))['metrics']['score']['spearman'])
  evaluations = report.read_evaluations(str(tmp_path), 'aadb')
  assert math.isnan(evaluations['eva']['rho'])
  (tmp_path / 'metrics.jsonl').write_text('{"stage": "stage1", "epoch": 1, "validation": '
                                          '{"score": {"spearman": NaN}}}\n')
  assert math.isnan(workdir_lib.read_jsonl(str(tmp_path / 'metrics.jsonl'))[0][
      'validation']['score']['spearman'])


def test_an_undefined_correlation_says_why_and_reads_back_as_n_a():
  true = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
  pred = np.array([[1.5, 1.0], [1.5, 2.0], [1.5, 3.0]])
  m = metrics.output_metrics(('a', 'b'), true, pred)
  assert m['a']['undefined'] == 'every prediction is the same: correlations are undefined'
  assert m['b']['undefined'] == 'every true value is the same: correlations are undefined'
  fine = metrics.output_metrics(('a',), true[:, :1], true[:, :1] * 2)['a']
  assert 'undefined' not in fine and fine['spearman'] == pytest.approx(1.0)
  back = strict(workdir_lib.dumps(m))  # As a report rebuilt from results.json sees it.
  assert back['a']['spearman'] is None and back['a']['spearman_p'] is None
  table = report.metrics_table(back)
  assert '| a | n/a | n/a | n/a | 0.' in table  # rho, p, r: n/a; MSE a number.
  assert report.fmt_metric(None) == 'n/a' and report.fmt_p(None) == 'n/a'
  assert report.fmt_p(0.00123) == '1.23e-03'


def test_predictions_json_is_strict(tmp_path):
  rows = [{predict.PATH_COLUMN: 'a.jpg', 'score': float('nan'), 'Light': 0.25,
           predict.ERROR_COLUMN: None},
          {predict.PATH_COLUMN: 'b.jpg', 'score': None, 'Light': None,
           predict.ERROR_COLUMN: 'cannot read'}]
  predict.write_scores(rows, ['score', 'Light'], str(tmp_path / 'scores.json'))
  records = strict((tmp_path / 'scores.json').read_text())
  assert [r['score'] for r in records] == [None, None]
  assert records[0]['Light'] == pytest.approx(0.25)
  assert records[1][predict.ERROR_COLUMN] == 'cannot read'


def test_training_curves_draw_a_null_rho_of_a_metrics_file(tmp_path):
  """metrics.jsonl now holds null where an epoch's rho did not exist."""
  stages = (plan_lib.Stage('stage1', 'Training', 0, 0, 2, 8, 1e-3, 0, 1.0, False, 0.9,
                           0.999, 1e-7, ()),)
  history = [dict(stage='stage1', epoch=e, train_loss=0.1 / e,
                  validation={'score': {'spearman': rho}}) for e, rho in ((1, None), (2, 0.3))]
  path = figures.training_curves(str(tmp_path / 'curves.png'), history, 'score', stages)
  assert (tmp_path / 'curves.png').stat().st_size > 0 and path.endswith('curves.png')
