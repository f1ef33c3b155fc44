"""Reports carry the paper's numbers beside the run's, per dataset and variant.

The workdirs here are written by hand (predictions with known values), so the
tables can be checked number by number without training anything.
"""

import os

import numpy as np
import pytest
import scipy.stats

from aesthetix.results import paper
from aesthetix.results import report
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import metrics
from aesthetix.training import plan as plan_lib
from configs import aadb
from configs import demo
from configs import eva
from configs import paper_numbers


def fake_workdir(path, config, true_overall, seed=0):
  """Test predictions of both stages; the overall truth is `true_overall`."""
  plan = plan_lib.resolve(config)
  names = plan.output_names
  lo, hi = plan.data.targets.bounds(len(names))
  rng = np.random.default_rng(seed)
  n = len(true_overall)
  true = (lo + (hi - lo) * rng.random((n, len(names)))).astype(np.float32)
  true[:, 0] = true_overall
  for stage in ('stage1', 'stage2'):
    pred = (true + rng.normal(0, 0.05, true.shape) * (hi - lo)).clip(lo, hi)
    workdir_lib.save_npz(workdir_lib.prediction_path(str(path), stage, 'test'),
                         dict(ids=np.arange(n).astype(str), true=true,
                              pred=pred.astype(np.float32)))
  return str(path)


def truth_with_the_papers_counts(table):
  """Overall scores with exactly the counts of Table 3 or 9, float32 as Keras holds them."""
  return np.concatenate([np.linspace(low, high, count + 2)[1:-1]
                         for _, low, high, count, _ in table]).astype(np.float32)


def intervals_report(config, path, table):
  """(results, report text) of a fake workdir whose truth has `table`'s counts."""
  results = report.build_results(
      plan_lib.resolve(config), fake_workdir(path, config, truth_with_the_papers_counts(table)))
  assert [r['count'] for r in results['score_intervals']] == [row[3] for row in table]
  return results, report.markdown(results)


def aadb_table3_truth():
  return truth_with_the_papers_counts(paper_numbers.TABLE3)


def section(text, heading):
  """The lines of the report's section under `heading` (up to the next heading)."""
  lines = text.splitlines()
  start = lines.index(heading) + 1
  end = next((i for i in range(start, len(lines)) if lines[i].startswith('#')), len(lines))
  return lines[start:end]


def row_cells(lines, name):
  """The cells of the one table row of `name` among `lines`."""
  [row] = [l for l in lines if l.startswith(f'| {name} |')]
  return [c.strip() for c in row.strip('|').split('|')]


def test_aadb_report_has_every_paper_column(tmp_path):
  _, text = intervals_report(aadb.get_config(), tmp_path, paper_numbers.TABLE3)
  assert '| 0.05-0.10 | 4 | 0.004 | 4 | 0.004 |' in text
  assert '| 0.90-1.00 | 15 | 0.015 | 15 | 0.015 |' in text
  assert '| The paper (multi-task) | 0.7067 |' in text
  assert '| Table 1: Pan et al. 2019, with adversarial learning | 0.7041 |' in text
  assert 'human consistency, raters with [200, inf) images (42) | 0.7112 |' in text
  # Table 5 beside each stage's rho: Training, paper; Fine-tuning, paper.
  [content] = [l for l in text.splitlines() if l.startswith('| Content |')][:1]
  cells = [c.strip() for c in content.strip('|').split('|')]
  assert cells[2] == '0.546' and cells[4] == '0.593'
  # Fig. 9: each output's rho with the overall score on this split (truth and
  # predictions, from the stored test predictions) beside the paper's quotes.
  saved = np.load(workdir_lib.prediction_path(str(tmp_path), 'stage2', 'test'))
  names = list(plan_lib.resolve(aadb.get_config()).output_names)
  quoted = section(text, '### With the overall score, beside the numbers the paper quotes')
  for name, truth, prediction in (('Content', '0.70', '0.95'), ('Light', '0.58', '0.96')):
    here = [scipy.stats.spearmanr(saved[key][:, 0], saved[key][:, names.index(name)])[0]
            for key in ('true', 'pred')]
    assert row_cells(quoted, name) == [name, f'{here[0]:.2f}', truth, f'{here[1]:.2f}',
                                       prediction]
  assert "predictions range over 0.26-0.90 (39 images below, about 95% inside)" in text
  assert '## What the paper leaves open (section 4.2)' in text
  assert "| how the EVA split was drawn | does not apply to aadb |" in text


def test_eva_report_uses_tables_8_9_and_10(tmp_path):
  _, text = intervals_report(eva.get_config(), tmp_path, paper_numbers.TABLE9)
  assert '| 1.70-2.00 | 0 | 0.000 | 0 | 0.000 |' in text
  assert '| The paper (multi-task) | 0.6950 |' in text
  [visual] = [l for l in text.splitlines() if l.startswith('| visual |')][:1]
  assert '0.610' in visual and '0.709' in visual
  assert '| Table 1:' not in text and 'Table 4:' not in text  # AADB's only on AADB.


def test_single_task_and_separate_outputs_get_their_own_numbers(tmp_path):
  single = aadb.get_config('single_task')
  workdir = fake_workdir(tmp_path / 'single', single, aadb_table3_truth())
  text = report.markdown(report.build_results(plan_lib.resolve(single), workdir))
  assert '| The paper (single task) | 0.6890 |' in text and 'paper |' not in text.split(
      'Spearman rho per output')[1].splitlines()[2]
  separate = aadb.get_config('separate_outputs')
  workdir = fake_workdir(tmp_path / 'separate', separate, aadb_table3_truth())
  text = report.markdown(report.build_results(plan_lib.resolve(separate), workdir))
  assert 'The paper reports no separate output layers model on aadb.' in text
  assert paper.variant(plan_lib.resolve(separate).model) == paper.SEPARATE


def test_the_synthetic_set_has_no_paper_column(tmp_path):
  config = demo.get_config()
  workdir = fake_workdir(tmp_path, config, np.linspace(0, 1, 50, dtype=np.float32))
  results = report.build_results(plan_lib.resolve(config), workdir)
  text = report.markdown(results)
  assert 'has no paper column' in text and 'The paper (' not in text
  assert [r['lo'] for r in results['score_intervals']] == pytest.approx(
      list(metrics.equal_edges(0, 1)[:-1]))


def test_a_cross_dataset_evaluation_sits_beside_table_11(tmp_path):
  config = aadb.get_config()
  workdir = fake_workdir(tmp_path, config, aadb_table3_truth())
  workdir_lib.write_json(os.path.join(workdir, 'evaluation_eva_test.json'), dict(
      trained_on='aadb', evaluated_on='eva', split='test',
      metrics={'score': dict(spearman=0.3, n=570)}))
  text = report.markdown(report.build_results(plan_lib.resolve(config), workdir))
  assert '| eva | 0.3000 | 570 | 0.321 |' in text
