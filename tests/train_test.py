"""The two-stage run end to end on 2 CPU devices: outputs, resume, devices, failures."""

import json
import os

import jax
import numpy as np
import pytest

from aesthetix import checkpoint
from aesthetix import input_pipeline
from aesthetix import model as model_lib
from aesthetix import optim
from aesthetix import parallel
from aesthetix import train
from tests import fixtures_data
from tests import tiny

STAGE1_EPOCHS = 3
STAGE2_EPOCHS = 2


class Interrupted(Exception):
  """Stands in for a kill: raised in the middle of an epoch."""


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('data')


def make_config(data_dir):
  return tiny.config(data_dir, STAGE1_EPOCHS, STAGE2_EPOCHS)


@pytest.fixture(scope='module')
def finished_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  assert jax.local_device_count() == 2
  train.train_and_evaluate(make_config(data_dir), workdir)
  return workdir


def wrap_train_batches(monkeypatch, wrapper):
  """Wraps the training batches of every source: images and cached layers."""
  for name in ('train_batches', 'train_feature_batches'):
    monkeypatch.setattr(input_pipeline, name, wrapper(getattr(input_pipeline, name)))


def final_params(config, workdir):
  model = model_lib.build_model(config)
  like = model_lib.param_shapes(model, config.dataset.image_size)
  return checkpoint.restore_params(workdir, like)


def test_run_leaves_checkpoints_results_and_report(finished_run, data_dir):
  files = set(os.listdir(finished_run))
  assert {'checkpoints', 'config.json', 'metrics.jsonl', 'results.json', 'report.md',
          'splits'} <= files
  with open(os.path.join(finished_run, 'splits', 'test.txt')) as f:
    assert f.read().split() == input_pipeline.split_ids(make_config(data_dir), 'test')
  mngr = checkpoint.manager(finished_run, read_only=True)
  assert mngr.latest_step() == STAGE1_EPOCHS + STAGE2_EPOCHS
  with open(os.path.join(finished_run, 'results.json')) as f:
    results = json.load(f)
  assert set(results['stages']) == {'stage1', 'stage2'}
  assert results['outputs'][0] == 'score' and len(results['outputs']) == 12
  assert results['stages']['stage2']['score']['n'] == tiny.SPLIT_SIZES['test']
  assert [(h['stage'], h['epoch']) for h in results['history']] == (
      [('stage1', e) for e in range(1, STAGE1_EPOCHS + 1)] +
      [('stage2', e) for e in range(1, STAGE2_EPOCHS + 1)])
  stage1_losses = [h['train_loss'] for h in results['history'] if h['stage'] == 'stage1']
  assert stage1_losses[-1] < stage1_losses[0]
  report = open(os.path.join(finished_run, 'report.md')).read()
  for heading in ('Table 5 / Table 10', 'Table 3 / Table 9', 'Fig. 9 / Fig. 14',
                  '| score |', 'Fine-tuning'):
    assert heading in report


def test_resume_after_a_kill_mid_stage_gives_identical_params(finished_run, data_dir,
                                                              tmp_path, monkeypatch):
  config = make_config(data_dir)
  workdir = str(tmp_path / 'resumed')
  kill_epoch = STAGE1_EPOCHS  # The first epoch of stage 2 (0-based global epoch).

  def then_kill(batches):
    def batches_then_kill(*args, epoch, **kwargs):
      for i, batch in enumerate(batches(*args, epoch=epoch, **kwargs)):
        if epoch == kill_epoch and i == 1:
          raise Interrupted()
        yield batch
    return batches_then_kill

  with monkeypatch.context() as patch:
    wrap_train_batches(patch, then_kill)
    with pytest.raises(Interrupted):
      train.train_and_evaluate(config, workdir)
  assert checkpoint.manager(workdir, read_only=True).latest_step() == STAGE1_EPOCHS
  train.train_and_evaluate(config, workdir)

  resumed, uninterrupted = final_params(config, workdir), final_params(config, finished_run)
  for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(uninterrupted)):
    np.testing.assert_array_equal(a, b)
  with open(os.path.join(workdir, 'results.json')) as f, \
       open(os.path.join(finished_run, 'results.json')) as g:
    assert json.load(f)['stages'] == json.load(g)['stages']


def test_workdir_of_another_config_is_refused(finished_run, data_dir):
  config = make_config(data_dir)
  config.model.dropout = 0.5
  before = sorted(os.listdir(os.path.join(finished_run, 'checkpoints')))
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match='model.dropout'):
    train.train_and_evaluate(config, finished_run)
  assert sorted(os.listdir(os.path.join(finished_run, 'checkpoints'))) == before


def test_nan_loss_stops_with_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
  config = make_config(data_dir)

  def poison(batches):
    def poisoned(*args, epoch, **kwargs):
      for batch in batches(*args, epoch=epoch, **kwargs):
        if epoch == 1:
          batch = dict(batch, target=np.full_like(batch['target'], np.nan))
        yield batch
    return poisoned

  wrap_train_batches(monkeypatch, poison)
  with pytest.raises(train.NonFiniteLossError, match='stage1, epoch 2'):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.manager(str(tmp_path), read_only=True).latest_step() == 1


def test_two_devices_match_one_device(data_dir):
  config = make_config(data_dir)
  config.model.dropout = 0.0  # Dropout masks depend on how a batch is split.
  stage = config.stage2
  model = model_lib.build_model(config)
  state = train.initial_state(config, model, jax.random.PRNGKey(0))
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  batches = list(input_pipeline.train_batches(config, 'train', batch_size=tiny.BATCH_SIZE,
                                              epoch=0, seed=0))
  batches[-1]['mask'][-3:] = False  # A padded batch: the loss must ignore masked rows.
  results = {}
  for n in (1, 2):
    step = train.make_train_step(model, optimizer, labels, num_devices=n)
    s = parallel.replicate(train.stage_state(state, optimizer), num_devices=n)
    for batch in batches:
      s, m = step(s, parallel.put_batch(batch, num_devices=n))
    results[n] = parallel.unreplicate(s)['params']
    assert float(parallel.unreplicate(m)['count']) == tiny.BATCH_SIZE - 3
  for a, b in zip(jax.tree_util.tree_leaves(results[1]), jax.tree_util.tree_leaves(results[2])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_on_caches_matches_training_on_images(finished_run, data_dir, tmp_path):
  """The default run reads stage 1's features and stage 2's block4_conv1 prefix
  from caches; decoding every image every epoch must give the same model."""
  config = make_config(data_dir)
  config.feature_cache = config.prefix_cache = False
  workdir = str(tmp_path / 'images')
  train.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'feature_cache'))
  cached = os.listdir(os.path.join(finished_run, 'feature_cache'))
  assert {name.split('-')[:2][1] for name in cached} == {'features', 'prefix'}
  # Same examples, flips, order and dropout: only float rounding differs.
  for a, b in zip(jax.tree_util.tree_leaves(final_params(config, workdir)),
                  jax.tree_util.tree_leaves(final_params(config, finished_run))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_evaluate_mode_repeats_the_test_and_crosses_datasets(finished_run, tmp_path):
  again, path = train.evaluate_workdir(finished_run)
  with open(os.path.join(finished_run, 'results.json')) as f:
    assert again['metrics'] == json.load(f)['stages']['stage2']
  assert os.path.exists(path)

  # Table 11: the synthetic (AADB-layout) model on EVA's overall score.
  votes = fixtures_data.make_eva(tmp_path / 'manual', n_images=12, n_unvoted=2, parts=3)
  cross, path = train.evaluate_workdir(
      finished_run, 'eva', data_dir=str(tmp_path / 'data'),
      manual_dir=str(tmp_path / 'manual'),
      builder_kwargs=dict(num_test=4, num_validation=2))
  assert (cross['trained_on'], cross['evaluated_on']) == ('synthetic_aesthetics', 'eva')
  assert list(cross['metrics']) == ['score']
  assert cross['metrics']['score']['n'] == 4 and len(votes) == 12
  # In EVA's own 0..10 scale: the squared error of a [0, 1] model mapped there.
  assert 0 <= cross['metrics']['score']['mse'] <= 100
  assert path.endswith('evaluation_eva_test.json')
