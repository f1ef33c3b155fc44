"""The figures of a run: each one written, non-empty, and linked from report.md."""

import os

from absl import flags
import matplotlib.axes
import numpy as np
from PIL import Image
import pytest

from aesthetix.data import targets
from aesthetix.results import figures
from aesthetix.results import report
from aesthetix.runtime import workdir as workdir_lib
from tests import trained_workdir

ALL_FIGURES = (figures.SCATTER_OVERALL, figures.SCATTER_OUTPUTS, figures.RANK_CORRELATIONS,
               figures.BEST, figures.WORST, figures.TRAINING_CURVES)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture
def copy(trained, tmp_path):
  """(plan, a copy of the shared trained workdir): the figures are written there."""
  plan, source = trained
  workdir = str(tmp_path / 'run')
  trained_workdir.copy(source, workdir)
  return plan, workdir


def test_best_and_worst_pick_the_smallest_and_largest_errors():
  true = np.array([0.1, 0.5, 0.9, 0.3])
  pred = np.array([0.1, 0.9, 0.8, 0.35])
  best, worst = figures.best_and_worst(true, pred, count=2)
  assert best.tolist() == [0, 3] and worst.tolist() == [1, 2]


def test_run_py_report_mode_writes_every_figure_links_it_and_write_all_returns_them(
    copy, monkeypatch):
  import run  # pylint: disable=g-import-not-at-top
  _, workdir = copy
  returned, write_all = [], figures.write_all
  monkeypatch.setattr(figures, 'write_all',
                      lambda *args: returned.append(write_all(*args)) or returned[-1])
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
  # What write_all returned to the report mode: the paths it wrote, all in the workdir.
  paths, = returned
  assert sorted(os.path.basename(p) for p in paths) == sorted(ALL_FIGURES)
  assert all(os.path.dirname(p) == workdir for p in paths)


@pytest.mark.parametrize('constant', [[3], [0, 4, 7], list(range(12))])
def test_constant_outputs_reach_every_table_and_figure_as_undefined(trained, tmp_path,
                                                                    constant):
  """A saturated output, or an attribute constant on the test split, must not
  stop the report: undefined correlations are n/a."""
  plan, source = trained
  workdir = str(tmp_path / 'run')
  trained_workdir.copy(source, workdir)
  for stage in ('stage1', 'stage2'):
    path = workdir_lib.prediction_path(workdir, stage, 'test')
    saved = dict(np.load(path, allow_pickle=True))
    for key in ('true', 'pred'):
      saved[key][:, constant] = saved[key][0, constant]
    workdir_lib.save_npz(path, saved)
  results = report.write(plan, workdir)
  names = results['outputs']
  for stage in ('stage1', 'stage2'):
    assert all(np.isnan(results['stages'][stage][names[i]]['spearman']) for i in constant)
  assert np.isnan(np.array(results['rank_correlation_prediction'], float)[constant]).all()
  text = open(os.path.join(workdir, workdir_lib.REPORT_FILE)).read()
  assert f'| {names[constant[0]]} | n/a | n/a |' in text
  paths = figures.write_all(plan, workdir)
  assert {os.path.basename(p) for p in paths} >= {figures.SCATTER_OUTPUTS,
                                                   figures.RANK_CORRELATIONS}


def test_heatmap_values_are_legible_on_every_cell(tmp_path):
  names = ['score', 'a', 'b']
  truth = np.array([[1.0, -0.95, 0.05], [-0.95, 1.0, np.nan], [0.05, np.nan, 1.0]])
  path = figures.rank_correlations(str(tmp_path / 'rc.png'), names, truth, truth)
  assert os.path.getsize(path) > 0
  assert figures.text_color((0.05, 0.19, 0.38, 1)) == 'white'  # Dark blue (-1).
  assert figures.text_color((0.97, 0.97, 0.97, 1)) == 'black'  # Near white (0).
  assert figures.text_color((0.4, 0.0, 0.12, 1)) == 'white'  # Dark red (+1).
  assert [figures.cell_label(v) for v in (1.0, -0.95, 0.05, np.nan)] == [
      '1', '-.95', '.05', 'n/a']


def test_heatmap_text_follows_each_cell(monkeypatch, tmp_path):
  drawn = []
  real_text = matplotlib.axes.Axes.text

  def text(self, x, y, s, **kwargs):
    drawn.append((s, kwargs.get('color')))
    return real_text(self, x, y, s, **kwargs)

  monkeypatch.setattr(matplotlib.axes.Axes, 'text', text)
  matrix = np.array([[1.0, 0.0], [0.0, 1.0]])
  figures.rank_correlations(str(tmp_path / 'rc.png'), ['x', 'y'], matrix, matrix)
  assert ('1', 'white') in drawn and ('.00', 'black') in drawn


def test_a_rerun_of_the_train_command_keeps_the_figures_in_the_report(trained, tmp_path,
                                                                       tmp_path_factory):
  from aesthetix.results import experiment  # pylint: disable=g-import-not-at-top
  plan, source = trained
  workdir = str(tmp_path / 'run')
  trained_workdir.copy(source, workdir)
  figures.write_all(plan, workdir)
  # Finished: it rewrites the report only.
  experiment.run(trained_workdir.config(tmp_path_factory), workdir)
  text = open(os.path.join(workdir, workdir_lib.REPORT_FILE)).read()
  assert text.count(report.FIGURES_HEADING) == 1
  for name in ALL_FIGURES:
    assert f']({name})' in text


def test_scatter_axes_leave_room_for_points_at_the_limits(tmp_path, monkeypatch):
  captured = {}
  real = figures._scatter_panel  # pylint: disable=protected-access

  def panel(ax, *args):
    real(ax, *args)
    captured['x'], captured['y'] = ax.get_xlim(), ax.get_ylim()

  true = np.array([0.0, 0.5, 1.0])
  monkeypatch.setattr(figures, '_scatter_panel', panel)
  figures.scatter_overall(str(tmp_path / 's.png'), targets.spec('aadb'), 'score', true, true,
                          'title')
  assert captured['x'][0] < 0 and captured['x'][1] > 1 and captured['y'][0] < 0
