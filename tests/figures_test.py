"""The figures of a run: each one written, non-empty, and linked from report.md."""

import os
import shutil

from absl import flags
import numpy as np
from PIL import Image
import pytest

from aesthetix import figures
from aesthetix import report
from aesthetix import workdir as workdir_lib
from tests import trained_workdir

ALL_FIGURES = (figures.SCATTER_OVERALL, figures.SCATTER_OUTPUTS, figures.RANK_CORRELATIONS,
               figures.BEST, figures.WORST, figures.TRAINING_CURVES)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


def test_best_and_worst_pick_the_smallest_and_largest_errors():
  true = np.array([0.1, 0.5, 0.9, 0.3])
  pred = np.array([0.1, 0.9, 0.8, 0.35])
  best, worst = figures.best_and_worst(true, pred, count=2)
  assert best.tolist() == [0, 3] and worst.tolist() == [1, 2]


def test_run_py_report_mode_writes_every_figure_and_links_it(trained):
  import run  # pylint: disable=g-import-not-at-top
  _, workdir = trained
  argv = flags.FLAGS(['run.py', '--mode=report', f'--workdir={workdir}'])
  try:
    assert run.main(argv) == 0
  finally:
    flags.FLAGS.unparse_flags()
  text = open(os.path.join(workdir, workdir_lib.REPORT_FILE)).read()
  assert text.count(report.FIGURES_HEADING) == 1
  for name in ALL_FIGURES:
    path = os.path.join(workdir, name)
    assert os.path.getsize(path) > 0
    with Image.open(path) as image:
      assert image.format == 'PNG' and min(image.size) > 100
      # Not a blank canvas: a drawn figure has many colours.
      assert len(image.convert('RGB').getcolors(maxcolors=1 << 20)) > 10
    assert f']({name})' in text


def test_write_all_returns_what_it_wrote(trained):
  config, workdir = trained
  paths = figures.write_all(config, workdir)
  assert sorted(os.path.basename(p) for p in paths) == sorted(ALL_FIGURES)
  assert all(os.path.dirname(p) == workdir for p in paths)


@pytest.mark.parametrize('constant', [[3], [0, 4, 7], list(range(12))])
def test_constant_outputs_reach_every_table_and_figure_as_undefined(trained, tmp_path,
                                                                    constant):
  """A saturated output, or an attribute constant on the test split, must not
  stop the report: undefined correlations are n/a."""
  config, source = trained
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir)
  for stage in ('stage1', 'stage2'):
    path = workdir_lib.prediction_path(workdir, stage, 'test')
    saved = dict(np.load(path, allow_pickle=True))
    for key in ('true', 'pred'):
      saved[key][:, constant] = saved[key][0, constant]
    workdir_lib.save_npz(path, saved)
  results = report.write(config, workdir)
  names = results['outputs']
  for stage in ('stage1', 'stage2'):
    assert all(np.isnan(results['stages'][stage][names[i]]['spearman']) for i in constant)
  assert np.isnan(np.array(results['rank_correlation_prediction'], float)[constant]).all()
  text = open(os.path.join(workdir, workdir_lib.REPORT_FILE)).read()
  assert f'| {names[constant[0]]} | n/a | n/a |' in text
  paths = figures.write_all(config, workdir)
  assert {os.path.basename(p) for p in paths} >= {figures.SCATTER_OUTPUTS,
                                                   figures.RANK_CORRELATIONS}
