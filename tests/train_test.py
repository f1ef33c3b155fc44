"""The two-stage run end to end on 2 CPU devices: outputs, resume, devices, failures."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.stats
import tensorflow_datasets as tfds

from aesthetix.data import datasets
from aesthetix.data import input_pipeline
from aesthetix.data import targets
from aesthetix.model import multitask as model_lib
from aesthetix.results import evaluate
from aesthetix.results import experiment
from aesthetix.runtime import parallel
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import checkpoint
from aesthetix.training import optim
from aesthetix.training import steps
from aesthetix.training import train
from data_builders.eva import eva_split
from tests import fixtures_data
from tests import tiny
from tests import trained_workdir

# The session's shared run (tests/trained_workdir.py) has this module's schedule.
STAGE1_EPOCHS = trained_workdir.STAGE1_EPOCHS
STAGE2_EPOCHS = trained_workdir.STAGE2_EPOCHS
assert STAGE2_EPOCHS >= 2  # killed_in_stage2 stops in stage 2's second epoch.


class Interrupted(Exception):
  """Stands in for a kill: raised in the middle of an epoch."""


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """The shared run's dataset: this module's runs compare with that run."""
  return trained_workdir.data_dir(tmp_path_factory)


def make_config(data_dir):
  return tiny.config(data_dir, STAGE1_EPOCHS, STAGE2_EPOCHS)


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """The shared run (trained on 2 devices): tests that write to it copy it first."""
  assert jax.local_device_count() == 2
  return trained_workdir.get(tmp_path_factory)[1]


def wrap_train_batches(monkeypatch, wrapper):
  """Wraps the training batches of every source: images and cached layers."""
  for name in ('train_batches', 'train_feature_batches'):
    monkeypatch.setattr(input_pipeline, name, wrapper(getattr(input_pipeline, name)))


def final_params(config, workdir):
  plan = tiny.plan(config)
  model = model_lib.build_model(plan.model)
  like = model_lib.param_shapes(model, plan.data.image_size)
  return checkpoint.restore_params(workdir, like)


def test_run_leaves_checkpoints_results_and_report(finished_run, data_dir):
  files = set(os.listdir(finished_run))
  assert {'checkpoints', 'config.json', 'metrics.jsonl', 'results.json', 'report.md',
          'splits'} <= files
  with open(os.path.join(finished_run, 'splits', 'test.txt')) as f:
    assert f.read().split() == input_pipeline.split_ids(tiny.plan(make_config(data_dir)).data,
                                                        'test')
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


def test_resume_after_a_kill_mid_stage_gives_identical_params(killed_in_stage2, finished_run,
                                                              data_dir, tmp_path):
  """A kill in the middle of stage 2's second epoch (killed_in_stage2): the resume
  restores checkpoint 4 with its Adam state and redoes that epoch alone. (A
  resume at stage 2's start, from stage 1's last checkpoint, is the collapsed and
  the truncated-checkpoint tests' below.)"""
  config = make_config(data_dir)
  workdir = str(tmp_path / 'resumed')
  shutil.copytree(killed_in_stage2, workdir)
  assert checkpoint.manager(workdir, read_only=True).latest_step() == STAGE1_EPOCHS + 1
  experiment.run(config, workdir)

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
  with pytest.raises(workdir_lib.IncompatibleWorkdirError, match='model.dropout'):
    experiment.run(config, finished_run)
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
    experiment.run(config, str(tmp_path))
  assert checkpoint.manager(str(tmp_path), read_only=True).latest_step() == 1


# One device's training steps, in a process of its own (a device count is
# fixed when JAX starts): the same batches as `two_device_params`.
ONE_DEVICE_STEPS = """
import os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
sys.path.insert(0, {repo!r})
import numpy as np
from tests import train_test
np.savez({out!r}, *train_test.stage2_params({data!r}))
"""


def stage2_params(data_dir):
  """Host params after stage 2's steps over one epoch (one padded batch), dropout
  off, on every device of this process; and the count of the last step."""
  config = make_config(data_dir)
  config.model.dropout = 0.0  # Dropout masks depend on how a batch is split.
  plan = tiny.plan(config)
  stage = plan.stage('stage2')
  model = model_lib.build_model(plan.model)
  state = steps.initial_state(plan, model, jax.random.PRNGKey(0))
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  batches = list(input_pipeline.train_batches(plan.data, 'train', batch_size=tiny.BATCH_SIZE,
                                              epoch=0, seed=0))
  batches[-1]['mask'][-3:] = False  # A padded batch: the loss must ignore masked rows.
  step = steps.make_train_step(model, optimizer, labels)
  s = parallel.replicate(steps.stage_state(state, optimizer))
  for batch in batches:
    s, m = step(s, parallel.put_batch(batch))
  leaves = jax.tree_util.tree_leaves(parallel.unreplicate(s)['params'])
  return leaves + [np.asarray(parallel.unreplicate(m)['count'])]


def test_two_devices_match_one_device(data_dir, tmp_path):
  assert jax.device_count() == 2
  two = stage2_params(data_dir)
  out = str(tmp_path / 'one_device.npz')
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-c', ONE_DEVICE_STEPS.format(repo=repo, out=out,
                                                                data=str(data_dir))],
                 check=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  with np.load(out) as f:
    one = [f[f'arr_{i}'] for i in range(len(f.files))]
  assert len(one) == len(two)
  assert float(one[-1]) == float(two[-1]) == tiny.BATCH_SIZE - 3
  for a, b in zip(one[:-1], two[:-1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_on_caches_matches_training_on_images(finished_run, data_dir, tmp_path):
  """The default run reads stage 1's features and stage 2's block4_conv1 prefix
  from caches; decoding every image every epoch must give the same model."""
  config = make_config(data_dir)
  config.feature_cache = config.prefix_cache = False
  workdir = str(tmp_path / 'images')
  experiment.run(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'feature_cache'))
  cached = os.listdir(os.path.join(finished_run, 'feature_cache'))
  assert {name.split('-')[:2][1] for name in cached} == {'features', 'prefix'}
  # Same examples, flips, order and dropout: only float rounding differs.
  for a, b in zip(jax.tree_util.tree_leaves(final_params(config, workdir)),
                  jax.tree_util.tree_leaves(final_params(config, finished_run))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def eva_test_images(plan, data_dir, manual_dir, builder_kwargs):
  """(ids, stored JPEG bytes) of the test split of the EVA build in `data_dir`."""
  spec = evaluate.evaluation_data(plan.data, 'eva', data_dir, manual_dir, builder_kwargs)
  ds = datasets.builder(spec).as_dataset(split=spec.test_split, shuffle_files=False,
                                         decoders={'image': tfds.decode.SkipDecoding()})
  examples = list(tfds.as_numpy(ds))
  return [ex['id'].decode() for ex in examples], [ex['image'] for ex in examples]


def test_evaluate_mode_repeats_the_test_and_crosses_datasets(finished_run, tmp_path):
  # A copy of what scoring needs (README: config.json and checkpoints/): the
  # evaluations it writes stay out of the shared run.
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  shutil.copy(os.path.join(finished_run, workdir_lib.CONFIG_FILE), workdir)
  shutil.copytree(os.path.join(finished_run, workdir_lib.CHECKPOINT_DIR),
                  os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  again, path = evaluate.evaluate_workdir(workdir)
  with open(os.path.join(finished_run, 'results.json')) as f:
    assert again['metrics'] == json.load(f)['stages']['stage2']
  assert path == workdir_lib.evaluation_path(workdir, 'synthetic_aesthetics', 'test')
  with open(path) as f:
    assert json.load(f) == again

  # Table 11: the synthetic (AADB-layout) model on EVA's overall score.
  builder_kwargs = dict(num_test=4, num_validation=2)
  votes = fixtures_data.make_eva(tmp_path / 'manual', n_images=12, n_unvoted=2, parts=3)
  cross, path = evaluate.evaluate_workdir(
      workdir, 'eva', data_dir=str(tmp_path / 'data'), manual_dir=str(tmp_path / 'manual'),
      builder_kwargs=builder_kwargs)
  assert (cross['trained_on'], cross['evaluated_on']) == ('synthetic_aesthetics', 'eva')
  assert list(cross['metrics']) == ['score']
  assert path == workdir_lib.evaluation_path(workdir, 'eva', 'test')
  with open(path) as f:
    assert json.load(f) == cross
  # The same numbers from the fixture's votes and the model applied here to the
  # stored test images: the truth is each image's mean vote (0..10), the
  # prediction the overall output mapped from [0, 1] to EVA's 0..10.
  config = make_config('')  # The model's shapes; the data is EVA's, read below.
  plan = tiny.plan(config)
  ids, jpegs = eva_test_images(plan, str(tmp_path / 'data'), str(tmp_path / 'manual'),
                               builder_kwargs)
  assert sorted(ids, key=int) == eva_split.split_ids(list(votes), **builder_kwargs)['test']
  truth = np.array([np.mean([vote[0] for vote in votes[i]]) for i in ids])
  pixels = np.stack([np.asarray(input_pipeline.decode_and_resize(
      jpeg, False, plan.data.image_size, plan.data.resize_method)) for jpeg in jpegs])
  model = model_lib.build_model(plan.model)
  unit = np.asarray(model.apply({'params': final_params(config, workdir)}, pixels,
                                train=False))[:, 0]
  predicted = targets.spec('eva').from_unit(unit[:, None])[:, 0]
  score = cross['metrics']['score']
  assert score['n'] == len(ids) == builder_kwargs['num_test']
  assert score['mse'] == pytest.approx(np.mean((predicted - truth) ** 2), rel=1e-5)
  ranks = np.corrcoef(scipy.stats.rankdata(truth), scipy.stats.rankdata(predicted))[0, 1]
  assert score['spearman'] == pytest.approx(ranks, abs=1e-6)


def test_collapsed_predictions_stop_the_run_and_a_stage2_change_resumes_from_stage1(
    finished_run, data_dir, tmp_path):
  """A stage 2 that diverges stops before saving; the same workdir, with a lower
  stage-2 learning rate, starts stage 2 again from the end of stage 1."""
  workdir = str(tmp_path / 'diverged')
  config = make_config(data_dir)
  config.stage2.learning_rate = 10.0  # Saturates every sigmoid within an epoch.
  with pytest.raises(train.CollapsedPredictionsError,
                     match=r'stage2, epoch 1/2: 12 of 12 outputs .* checkpoint 3 is kept'):
    experiment.run(config, workdir)
  assert workdir_lib.checkpoint_numbers(workdir)[-1] == STAGE1_EPOCHS

  experiment.run(make_config(data_dir), workdir)  # The paper's rate again.
  for a, b in zip(jax.tree_util.tree_leaves(final_params(config, workdir)),
                  jax.tree_util.tree_leaves(final_params(config, finished_run))):
    np.testing.assert_array_equal(a, b)
  change, = workdir_lib.stored_changes(workdir)
  assert change['fields'] == {'stage2.learning_rate': [10.0, 1e-4]}
  report = open(os.path.join(workdir, 'report.md')).read()
  assert '## Config changes' in report and '`stage2.learning_rate` 10.0 -> 0.0001' in report
  # Only the new stage 2's epochs are in the history.
  results = json.load(open(os.path.join(workdir, 'results.json')))
  assert [(h['stage'], h['epoch']) for h in results['history']][-STAGE2_EPOCHS:] == [
      ('stage2', e) for e in range(1, STAGE2_EPOCHS + 1)]


def damage_checkpoint(workdir, number, how):
  """Damages checkpoint `number` as a crash or a bad disk would."""
  root = os.path.join(workdir, 'checkpoints', str(number))
  if how == 'truncated':  # Each data file of the params loses its second half.
    data = os.path.join(root, 'params', 'ocdbt.process_0', 'd')
    for name in os.listdir(data):
      with open(os.path.join(data, name), 'r+b') as f:
        f.truncate(os.path.getsize(os.path.join(data, name)) // 2)
  elif how == 'no_metadata':
    os.remove(os.path.join(root, 'params', '_METADATA'))
  elif how == 'no_meta':
    os.remove(os.path.join(root, 'meta', 'metadata'))


@pytest.fixture(scope='module')
def killed_in_stage2(data_dir, tmp_path_factory):
  """A workdir whose run stopped in stage 2's second epoch (checkpoint 4 is the newest)."""
  workdir = str(tmp_path_factory.mktemp('killed') / 'run')

  def kill_in_stage2(batches):
    def batches_then_kill(*args, epoch, **kwargs):
      for i, batch in enumerate(batches(*args, epoch=epoch, **kwargs)):
        if epoch == STAGE1_EPOCHS + 1 and i == 1:
          raise Interrupted()
        yield batch
    return batches_then_kill

  with pytest.MonkeyPatch.context() as patch:
    wrap_train_batches(patch, kill_in_stage2)
    with pytest.raises(Interrupted):
      experiment.run(make_config(data_dir), workdir)
  assert workdir_lib.checkpoint_numbers(workdir)[-1] == STAGE1_EPOCHS + 1
  return workdir


@pytest.mark.parametrize('how', ['truncated', 'no_metadata', 'no_meta'])
def test_a_damaged_newest_checkpoint_is_skipped_kept_and_resumed_before(
    killed_in_stage2, finished_run, data_dir, tmp_path, how):
  workdir = str(tmp_path / 'run')
  shutil.copytree(killed_in_stage2, workdir)
  newest = STAGE1_EPOCHS + 1
  damage_checkpoint(workdir, newest, how)
  config = make_config(data_dir)
  plan = tiny.plan(config)
  # predict's path: the newest whole checkpoint's params, without moving anything
  # (one without its meta item has no digests to check its params by: not whole).
  model = model_lib.build_model(plan.model)
  like = model_lib.param_shapes(model, plan.data.image_size)
  params = checkpoint.restore_params(workdir, like)
  expected = checkpoint.restore_params(workdir, like, number=newest - 1)
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_array_equal(a, b)
  if how != 'truncated':  # One resume to the end suffices; the others stop at the choice.
    fresh = steps.initial_state(plan, model, jax.random.PRNGKey(plan.seed))
    mngr = checkpoint.manager(workdir, max_to_keep=plan.checkpoint_max_to_keep)
    assert train.restore_latest(plan, workdir, mngr, fresh)[:2] == (0, STAGE1_EPOCHS)
    assert os.listdir(os.path.join(workdir, 'damaged'))[0].startswith(f'checkpoint-{newest}.')
    return
  experiment.run(config, workdir)
  assert os.listdir(os.path.join(workdir, 'damaged'))[0].startswith(f'checkpoint-{newest}.')
  for a, b in zip(jax.tree_util.tree_leaves(final_params(config, workdir)),
                  jax.tree_util.tree_leaves(final_params(config, finished_run))):
    np.testing.assert_array_equal(a, b)


def test_a_second_trainer_is_refused_at_once_and_changes_nothing(finished_run, data_dir):
  with workdir_lib.Lock(finished_run):  # A run in progress.
    before = {p: os.path.getmtime(os.path.join(finished_run, p))
              for p in os.listdir(finished_run)}
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    result = subprocess.run(
        [sys.executable, 'run.py', '--config=tests/tiny_config.py',
         f'--config.dataset.data_dir={data_dir}', f'--workdir={finished_run}'],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
        capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  assert f'is in use by another training run (process {os.getpid()} on ' in result.stderr
  assert {p: os.path.getmtime(os.path.join(finished_run, p))
          for p in os.listdir(finished_run)} == before


def test_a_damaged_predictions_file_is_moved_aside_and_predicted_again(finished_run,
                                                                      data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  trained_workdir.copy(finished_run, workdir)
  path = workdir_lib.prediction_path(workdir, 'stage2', 'test')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:100])
  experiment.run(make_config(data_dir), workdir)
  assert any(n.startswith('stage2_test.npz.') for n in os.listdir(
      os.path.join(workdir, 'damaged')))
  with open(os.path.join(workdir, 'results.json')) as f, \
       open(os.path.join(finished_run, 'results.json')) as g:
    assert json.load(f)['stages'] == json.load(g)['stages']
