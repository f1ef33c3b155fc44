"""What a score means: the quantiles a trained workdir keeps of its predictions on
its training photos, and each score's percentile among them."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from aesthetix.data import input_pipeline
from aesthetix.results import experiment
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import predict
from aesthetix.serving import scorer as scorer_lib
from aesthetix.training import params_file
from aesthetix.training import quantiles
from tests import trained_workdir

# A percentile read off NUM_QUANTILES quantiles is exact to one step of their levels.
RESOLUTION = 100.0 / (quantiles.NUM_QUANTILES - 1)


def ranks_percent(values):
  """100 k / (N - 1) for the k-th smallest of `values` [N]: their exact percentiles."""
  order = np.argsort(values, kind='stable')
  ranks = np.empty(len(values))
  ranks[order] = np.arange(len(values))
  return 100.0 * ranks / (len(values) - 1)


def test_percentiles_of_the_values_themselves_are_their_ranks_within_the_resolution():
  predictions = np.random.default_rng(0).normal(size=(1000, 3)) * [1, 5, 0.01]
  record = quantiles.record(['a', 'b', 'c'], predictions, 'train', 'stage2')
  at, values = quantiles.table(record, ['a', 'b', 'c'])
  for i in range(3):
    got = quantiles.percentile(predictions[:, i], values[:, i], at)
    assert np.max(np.abs(got - ranks_percent(predictions[:, i]))) <= RESOLUTION + 1e-9
  # Fewer values than quantiles: the same bound.
  few = np.array([3.0, 1.0, 2.0, 5.0])
  got = quantiles.percentile(few, quantiles.quantiles(few[:, None])[:, 0])
  assert np.max(np.abs(got - [100 * 2 / 3, 0, 100 / 3, 100])) <= RESOLUTION


def test_a_percentile_is_monotone_bounded_and_ties_take_their_middle():
  values, at = np.array([0.0, 0.0, 0.0, 1.0, 2.0]), np.linspace(0, 1, 5)
  got = quantiles.percentile([-1.0, 0.0, 0.5, 1.0, 1.5, 3.0, np.nan], values, at)
  np.testing.assert_allclose(got[:-1], [0, 25, 50, 75, 87.5, 100])
  assert np.isnan(got[-1])
  scores = np.sort(np.random.default_rng(1).normal(size=500))
  q = quantiles.quantiles(np.random.default_rng(2).normal(size=(300, 1)))[:, 0]
  assert np.all(np.diff(quantiles.percentile(scores, q)) >= 0)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


def test_training_keeps_the_quantiles_of_its_predictions_on_its_training_photos(trained):
  plan, workdir = trained
  record = workdir_lib.read_score_quantiles(workdir)
  saved = workdir_lib.load_predictions(workdir, plan.last_stage.name, plan.data.train_split)
  n_train = input_pipeline.num_examples(plan.data, plan.data.train_split)
  assert record['examples'] == len(saved['pred']) == n_train
  assert list(saved['ids']) == input_pipeline.split_ids(plan.data, plan.data.train_split)
  for i, name in enumerate(plan.output_names):
    np.testing.assert_array_equal(record['outputs'][name],
                                  np.quantile(saved['pred'][:, i].astype(np.float64),
                                              np.linspace(0, 1, quantiles.NUM_QUANTILES)))


def training_pixels(plan):
  """The training photos as the model saw them (decoded, resized, not flipped)."""
  batches = input_pipeline.eval_batches(plan.data, plan.data.train_split, batch_size=8)
  return [image for b in batches for image, real in zip(b['image'], b['mask']) if real]


def test_the_scorers_percentiles_of_the_training_photos_are_uniform(trained):
  plan, workdir = trained
  scorer = scorer_lib.Scorer.from_workdir(workdir)
  n = len(plan.output_names)
  assert scorer.columns == plan.output_names + tuple(f'{x}_percentile'
                                                     for x in plan.output_names)
  table = scorer.score_table(training_pixels(plan))
  for i in range(n):
    # The Scorer's scores rank the photos as training's own predictions did.
    gap = np.abs(table[:, n + i] - ranks_percent(table[:, i]))
    assert gap.max() <= RESOLUTION + 1e-3, plan.output_names[i]


def test_a_workdir_without_quantiles_scores_without_the_column_and_says_so_once(
    trained, tmp_path, caplog):
  plan, workdir = trained
  old = str(tmp_path / 'old')
  trained_workdir.copy(workdir, old, ignore=shutil.ignore_patterns('feature_cache'))
  os.remove(workdir_lib.score_quantiles_path(old))
  photo = str(tmp_path / 'photo.png')
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(photo)
  with caplog.at_level(logging.WARNING):
    summary = predict.predict_workdir(old, photo, str(tmp_path / 's.csv'), progress=False)
  assert summary['columns'] == list(plan.output_names)
  warned = [r for r in caplog.records if workdir_lib.SCORE_QUANTILES_FILE in r.getMessage()]
  assert len(warned) == 1 and 'no percentile column' in warned[0].getMessage()


def test_the_train_command_adds_the_quantiles_to_a_workdir_trained_before(
    trained, tmp_path_factory):
  _, workdir = trained
  old = str(tmp_path_factory.mktemp('before') / 'W')
  trained_workdir.copy(workdir, old)
  os.remove(workdir_lib.score_quantiles_path(old))
  plan = trained[0]
  os.remove(workdir_lib.prediction_path(old, plan.last_stage.name, plan.data.train_split))
  os.remove(workdir_lib.params_file_path(old))  # Nor had it its params file.
  checkpoints = workdir_lib.checkpoint_numbers(old)
  experiment.run(trained_workdir.config(tmp_path_factory), old)
  assert workdir_lib.checkpoint_numbers(old) == checkpoints  # Nothing trained again.
  assert (json.load(open(workdir_lib.score_quantiles_path(old)))
          == json.load(open(workdir_lib.score_quantiles_path(workdir))))
  with np.load(workdir_lib.params_file_path(old)) as mine, np.load(
      workdir_lib.params_file_path(workdir)) as theirs:
    assert sorted(mine.files) == sorted(theirs.files)
    for name in mine.files:
      np.testing.assert_array_equal(mine[name], theirs[name])
  assert params_file.read(old).why is None
  # A damaged file: named with the fix by the Scorer, moved aside and written anew.
  path = workdir_lib.score_quantiles_path(old)
  open(path, 'w').write('{"levels": [0.0, 0.5')
  with pytest.raises(workdir_lib.WorkdirError, match='run the train command on this workdir'):
    scorer_lib.Scorer.from_workdir(old)
  experiment.run(trained_workdir.config(tmp_path_factory), old)
  assert json.load(open(path)) == json.load(open(workdir_lib.score_quantiles_path(workdir)))
  assert any(n.startswith(workdir_lib.SCORE_QUANTILES_FILE) for n in
             os.listdir(os.path.join(old, workdir_lib.DAMAGED_DIR)))
