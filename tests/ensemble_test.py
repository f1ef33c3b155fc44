"""Ensembles of trained workdirs: the Scorer, --mode=predict and --mode=export.

An ensemble of one is its member to the bit (sd 0); a larger one is the
members' mean in unit scale with their standard deviation beside it, computed
here again from each member alone; members of other outputs or input sizes
are refused before any checkpoint loads.
"""

import csv
import json
import os
import shutil

from absl import flags
import numpy as np
import pytest

from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import export
from aesthetix.serving import predict
from aesthetix.serving import scorer as scorer_lib
from aesthetix.training import quantiles
from aesthetix.training import trained as trained_lib
from tests import export_test
from tests import trained_workdir

N_PHOTOS = 6


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture(scope='module')
def second(trained, tmp_path_factory):
  """A second member: the same run stopped at the end of stage 1 (its newest
  checkpoint), so that its scores differ from the first's."""
  _, workdir = trained
  path = str(tmp_path_factory.mktemp('member') / 'stage1')
  trained_workdir.copy(workdir, path, ignore=shutil.ignore_patterns('feature_cache'))
  for n in workdir_lib.checkpoint_numbers(path):
    if n > trained_workdir.STAGE1_EPOCHS:
      shutil.rmtree(os.path.join(workdir_lib.checkpoint_dir(path), str(n)))
  # Its saved training predictions: the first member's shifted, as another model's would be.
  plan, _ = trained
  train = workdir_lib.load_predictions(path, plan.last_stage.name, plan.data.train_split)
  train['pred'] = np.clip(train['pred'] + 0.05, -1, 1).astype(np.float32)
  workdir_lib.save_npz(workdir_lib.prediction_path(path, plan.last_stage.name,
                                                   plan.data.train_split), train)
  return path


@pytest.fixture(scope='module')
def pixels(trained):
  plan, _ = trained
  size = plan.data.image_size
  return list(np.random.default_rng(0).integers(0, 256, (N_PHOTOS, size, size, 3), np.uint8))


def test_an_ensemble_of_one_is_its_member_to_the_bit(trained, pixels):
  _, workdir = trained
  single = scorer_lib.Scorer.from_workdir(workdir)
  one = scorer_lib.Scorer.from_workdirs([workdir])
  n = len(single.names)
  assert one.columns == single.names + one.sd_names + single.percentile_names
  a, b = single.score_table(pixels), one.score_table(pixels)
  np.testing.assert_array_equal(b[:, :n], a[:, :n])
  assert np.all(b[:, n:2 * n] == 0)
  np.testing.assert_array_equal(b[:, 2 * n:], a[:, n:])


def test_an_ensemble_is_the_members_mean_in_unit_scale_with_their_sd(trained, second,
                                                                     pixels):
  plan, workdir = trained
  members = [scorer_lib.Scorer.from_workdir(w).score_array(pixels) for w in (workdir, second)]
  assert np.abs(members[0] - members[1]).max() > 1e-3  # Two different models.
  spec = plan.data.targets
  mean = spec.from_unit(np.mean([spec.to_unit(m) for m in members], axis=0))
  sd = np.std(np.stack(members), axis=0)
  ensemble = scorer_lib.Scorer.from_workdirs([workdir, second])
  got = ensemble.score_table(pixels)
  n = len(plan.output_names)
  np.testing.assert_allclose(got[:, :n], mean, atol=1e-6)
  np.testing.assert_allclose(got[:, n:2 * n], sd, atol=1e-6)
  # Percentiles among the mean of the members' predictions on their training photos.
  saved = [workdir_lib.load_predictions(w, plan.last_stage.name, plan.data.train_split)
           for w in (workdir, second)]
  values = np.quantile(np.mean([s['pred'] for s in saved], axis=0).astype(np.float64),
                       np.linspace(0, 1, quantiles.NUM_QUANTILES), axis=0)
  expected = np.stack([100 * np.interp(got[:, i], values[:, i],
                                       np.linspace(0, 1, quantiles.NUM_QUANTILES))
                       for i in range(n)], axis=-1)
  np.testing.assert_allclose(got[:, 2 * n:], expected, atol=1e-9)
  assert ensemble.score(pixels[0])[0]['score_sd'] == pytest.approx(sd[0, 0], abs=1e-6)


def other_workdir(trained, path, field, value):
  """A copy of the trained workdir's config.json (and an empty checkpoint) with one
  field changed: enough for the checks, nothing to load."""
  _, workdir = trained
  os.makedirs(os.path.join(path, workdir_lib.CHECKPOINT_DIR, '1'))
  stored = json.load(open(os.path.join(workdir, workdir_lib.CONFIG_FILE)))
  section, name = field.split('.')
  stored[section][name] = value
  json.dump(stored, open(os.path.join(path, workdir_lib.CONFIG_FILE), 'w'))
  return path


@pytest.mark.parametrize('field, value, message', [
    ('dataset.image_size', 64, 'takes 64x64 pixels'),
    ('model.tasks', 'overall', 'predicts score but'),
])
def test_members_of_other_outputs_or_sizes_are_refused_before_any_loads(
    trained, tmp_path, monkeypatch, field, value, message):
  _, workdir = trained
  other = other_workdir(trained, str(tmp_path / 'other'), field, value)
  loaded = []
  monkeypatch.setattr(trained_lib, 'load_trained', lambda w: loaded.append(w))
  with pytest.raises(scorer_lib.EnsembleError, match=message):
    scorer_lib.Scorer.from_workdirs([workdir, other])
  assert not loaded


def run_py(capsys, *args):
  """(exit code, stderr) of run.py's main with `args`, in this process."""
  import run  # pylint: disable=g-import-not-at-top
  argv = flags.FLAGS(['run.py', *args])
  try:
    code = run.main(argv)
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr().err


def test_run_py_predicts_with_an_ensemble_and_writes_its_columns(trained, second, tmp_path,
                                                                 capsys):
  plan, workdir = trained
  photos = tmp_path / 'photos'
  photos.mkdir()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pixels = np.random.default_rng(1).integers(0, 256, (3, 40, 48, 3), np.uint8)
  for i, p in enumerate(pixels):
    Image.fromarray(p).save(photos / f'{i}.png')
  output = str(tmp_path / 'scores.csv')
  code, stderr = run_py(capsys, '--mode=predict', f'--workdir={workdir},{second}',
                        f'--images={photos}', f'--output={output}')
  assert code == 0, stderr
  rows = list(csv.DictReader(open(output)))
  names = list(plan.output_names)
  assert list(rows[0]) == (['path'] + names + [f'{n}_sd' for n in names]
                           + [f'{n}_percentile' for n in names] + ['error'])
  expected = scorer_lib.Scorer.from_workdirs([workdir, second]).score(
      [r['path'] for r in rows])
  for row, want in zip(rows, expected):
    for column, value in want.items():
      assert float(row[column]) == pytest.approx(value, abs=10 ** -predict.DECIMALS)
  # A member of another input size: one line, exit 2, nothing written.
  other = other_workdir(trained, str(tmp_path / 'other'), 'dataset.image_size', 64)
  os.remove(output)
  code, stderr = run_py(capsys, '--mode=predict', f'--workdir={workdir},{other}',
                        f'--images={photos}', f'--output={output}')
  assert code == 2 and 'cannot score as one ensemble' in stderr and not os.path.exists(output)
  code, stderr = run_py(capsys, '--mode=predict', f'--workdir={workdir},{tmp_path}/none',
                        f'--images={photos}', f'--output={output}')
  assert code == 2 and f'--workdir={tmp_path}/none does not exist' in stderr


@pytest.mark.parametrize('fmt', ['saved_model', 'stablehlo'])
def test_an_exported_ensemble_gives_the_means_and_sds_in_its_own_runtime(
    trained, second, pixels, tmp_path, fmt):
  plan, workdir = trained
  folder = str(tmp_path / fmt)
  info = export.export([workdir, second], folder, fmt)
  ensemble = scorer_lib.Scorer.from_workdirs([workdir, second])
  n = len(plan.output_names)
  assert info['columns'] == list(ensemble.names + ensemble.sd_names)
  assert info['members'] == [workdir, second]
  assert info['score_quantiles'] == ensemble.score_quantiles
  scores, _ = export_test.run_fresh(fmt, folder, np.stack(pixels), tmp_path)
  reference = ensemble.score_table(pixels)[:, :2 * n]
  lo, hi = plan.data.targets.bounds(n)
  width = np.concatenate([hi - lo, hi - lo])
  assert np.max(np.abs(scores - reference) / width) <= export_test.FLOAT32_BOUND
