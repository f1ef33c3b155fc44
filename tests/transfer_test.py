"""Starting a run from a trained workdir (--config.init_from): exactly the named
tensors come from it, a user's run trains from it through run.py, and a workdir
of another image size or architecture is refused before anything loads."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from aesthetix.model import multitask as model_lib
from aesthetix.results import experiment
from aesthetix.runtime import preflight
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import checkpoint
from aesthetix.training import plan as plan_lib
from aesthetix.training import steps
from aesthetix.training import trained as trained_lib
from configs import demo
from configs import rated_photos
from tests import cli_test
from tests import tiny
from tests import trained_workdir

# The user's outputs (trained_workdir.USER_OUTPUTS): these two named as the
# synthetic set's, the others their own.
FROM_SOURCE, FRESH = ('score', 'Light'), ('sharpness', 'mood')
SEED = 3
TINY_FLAGS = trained_workdir.USER_TINY_FLAGS


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """The user's rated photos (those of the session's shared user run)."""
  return trained_workdir.user_run(tmp_path_factory)[0]


def user_plan(photos, init_from, **model):
  config = rated_photos.get_config()
  config.dataset.manual_dir = photos
  config.dataset.image_size = tiny.IMAGE_SIZE
  config.init_from = init_from
  config.seed = SEED
  for field, value in model.items():
    config.model[field] = value
  return plan_lib.resolve(config)


def leaves(tree):
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(x)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def expected_start(plan, source_plan, source, rng):
  """Every leaf of a start from `source`: its backbone and hidden layers, its units of
  the outputs named alike, the fresh init's elsewhere (written out column by column)."""
  model = model_lib.build_model(plan.model)
  fresh = leaves(model_lib.init_params(model, jax.random.split(rng)[0], plan.data.image_size))
  theirs = leaves(source)
  expected = {k: (theirs[k] if k.startswith(('vgg16/', 'head/fc')) else v.copy())
              for k, v in fresh.items()}
  their_layers = ['head/output'] if len(source_plan.model.groups) == 1 else [
      'head/output_overall', 'head/output_attributes']
  their_columns = [(their_layers[0], 0)] + [(their_layers[-1], i - len(their_layers) + 1)
                                            for i in range(1, len(source_plan.output_names))]
  my_layers = ['head/output'] if len(plan.model.groups) == 1 else [
      'head/output_overall', 'head/output_attributes']
  for j, name in enumerate(plan.output_names):
    layer, column = ((my_layers[0], j) if len(my_layers) == 1 or j == 0
                     else (my_layers[1], j - 1))
    if name in source_plan.output_names:
      their_layer, their_column = their_columns[source_plan.output_names.index(name)]
      expected[f'{layer}/kernel'][:, column] = theirs[f'{their_layer}/kernel'][:, their_column]
      expected[f'{layer}/bias'][column] = theirs[f'{their_layer}/bias'][their_column]
  return expected


def assert_start(plan, source_workdir):
  source_plan, _, source = trained_lib.load_trained(source_workdir)
  rng = jax.random.PRNGKey(plan.seed)
  got = leaves(steps.initial_state(plan, model_lib.build_model(plan.model), rng)['params'])
  expected = expected_start(plan, source_plan, source, rng)
  assert sorted(got) == sorted(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)
  return got, leaves(source)


@pytest.mark.parametrize('output_layers', ['shared', 'separate'])
def test_a_start_takes_exactly_the_named_tensors_and_nothing_else(trained, photos,
                                                                  output_layers):
  _, workdir = trained
  plan = user_plan(photos, workdir, output_layers=output_layers)
  got, source = assert_start(plan, workdir)
  # The fresh units are not W's: sharpness and mood sit where W has other outputs.
  layer = 'head/output' if output_layers == 'shared' else 'head/output_attributes'
  column = list(plan.output_names).index('mood') - (output_layers == 'separate')
  assert not np.array_equal(got[f'{layer}/kernel'][:, column],
                            source['head/output/kernel'][:, column])


def test_a_checkpoint_of_w_can_be_named(trained, photos):
  _, workdir = trained
  first = os.path.join(workdir_lib.checkpoint_dir(workdir), str(trained_workdir.STAGE1_EPOCHS))
  plan = user_plan(photos, first)
  got = leaves(steps.initial_state(plan, model_lib.build_model(plan.model),
                                   jax.random.PRNGKey(SEED))['params'])
  source_plan = plan_lib.resolve(workdir_lib.trained_config(workdir))
  like = model_lib.param_shapes(model_lib.build_model(source_plan.model), tiny.IMAGE_SIZE)
  stage1 = leaves(checkpoint.restore_params(workdir, like, trained_workdir.STAGE1_EPOCHS))
  final = leaves(trained_lib.load_trained(workdir)[2])
  key = 'vgg16/block4_conv2/kernel'  # Trained in stage 2: stage 1's differs from the final.
  np.testing.assert_array_equal(got[key], stage1[key])
  assert not np.array_equal(got[key], final[key])


def run_py(*args, timeout=trained_workdir.USER_RUN_TIMEOUT_S, **env):
  """run.py's exit code and stderr, run as a user runs it, in a fresh process."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', **env)
  result = subprocess.run([sys.executable, os.path.join(cli_test.REPO, 'run.py'), *args],
                          cwd=cli_test.REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
  return result.returncode, result.stderr


@pytest.fixture(scope='module')
def user_run(trained, tmp_path_factory):
  """A user's run through run.py, from W (no ImageNet file needed), 1 + 1 epochs: the
  session's shared one (trained_workdir.user_run, which run_timing_test reads too)."""
  del trained  # The user's run starts from it.
  _, user, stderr = trained_workdir.user_run(tmp_path_factory)
  # The log says which outputs start from W and which are fresh.
  assert (f'outputs from it: {", ".join(FROM_SOURCE)}; fresh outputs: {", ".join(FRESH)}.'
          in stderr), stderr[-3000:]
  return user


def test_a_users_run_trains_from_w_and_records_which_outputs_are_fresh(trained, user_run):
  _, workdir = trained
  [record] = [r['init_from'] for r in workdir_lib.read_jsonl(workdir_lib.metrics_path(user_run))
              if 'init_from' in r]
  assert record['from_source'] == list(FROM_SOURCE) and record['fresh'] == list(FRESH)
  assert record['dataset'] == 'synthetic_aesthetics' and record['checkpoint'] is None
  # The layers no stage trains are W's, to the bit, after both stages.
  mine, theirs = (leaves(trained_lib.load_trained(w)[2]) for w in (user_run, workdir))
  for layer in ('block1_conv1', 'block4_conv1', 'block5_conv3'):
    np.testing.assert_array_equal(mine[f'vgg16/{layer}/kernel'], theirs[f'vgg16/{layer}/kernel'])
  assert json.load(open(os.path.join(user_run, workdir_lib.CONFIG_FILE)))['init_from'] == workdir


def test_and_back_the_users_workdir_starts_a_synthetic_run(user_run, tmp_path):
  config = demo.get_config()
  config.dataset.image_size = tiny.IMAGE_SIZE
  config.dataset.data_dir = str(tmp_path)
  config.init_from = user_run
  config.seed = SEED
  got, _ = assert_start(plan_lib.resolve(config), user_run)
  assert len(got) == 2 * (13 + 2 + 1)  # Kernel and bias of 13 convs, fc1, fc2, the output.


def no_jax_path(folder):
  """A PYTHONPATH on which importing JAX or TensorFlow fails: a refusal made
  before they load still exits 2; one made after them is a traceback."""
  for name in ('jax', 'tensorflow'):
    os.makedirs(os.path.join(folder, name))
    with open(os.path.join(folder, name, '__init__.py'), 'w') as f:
      f.write(f'raise ImportError("{name} was imported")\n')
  return folder


@pytest.mark.parametrize('change, flag, message', [
    (('dataset', 'image_size', 64), (),
     "its image size 64, this run's 32 (--config.dataset.image_size)"),
    ((), ('--config.model.hidden_units=(256, 64)',),
     "its hidden layers [128, 64], this run's [256, 64] (--config.model.hidden_units)"),
])
def test_a_w_of_another_size_or_architecture_is_refused_before_jax_loads(
    trained, photos, tmp_path, change, flag, message):
  _, workdir = trained
  other = tmp_path / 'other'
  trained_workdir.copy(workdir, other, ignore=shutil.ignore_patterns('feature_cache'))
  if change:
    stored = json.load(open(other / workdir_lib.CONFIG_FILE))
    stored[change[0]][change[1]] = change[2]
    json.dump(stored, open(other / workdir_lib.CONFIG_FILE, 'w'))
  user = tmp_path / 'W'
  code, stderr = run_py('--config=configs/rated_photos.py', f'--workdir={user}',
                        f'--config.dataset.manual_dir={photos}',
                        f'--config.dataset.data_dir={tmp_path / "data"}',
                        f'--config.init_from={other}', *TINY_FLAGS, *flag,
                        PYTHONPATH=no_jax_path(str(tmp_path / 'no_jax')))
  error = cli_test.only_error_line(stderr)
  assert code == 2 and message in error and f'--config.init_from={other}' in error, stderr
  assert not user.exists() and not (tmp_path / 'data').exists()  # Nothing made.


def test_the_python_api_refuses_it_too_before_training_starts(trained, photos, tmp_path):
  _, workdir = trained
  other = tmp_path / 'other'
  trained_workdir.copy(workdir, other, ignore=shutil.ignore_patterns('feature_cache'))
  stored = json.load(open(other / workdir_lib.CONFIG_FILE))
  stored['dataset']['image_size'] = 64
  json.dump(stored, open(other / workdir_lib.CONFIG_FILE, 'w'))
  config = rated_photos.get_config()
  config.dataset.manual_dir, config.dataset.image_size = photos, tiny.IMAGE_SIZE
  config.dataset.data_dir, config.init_from = str(tmp_path / 'data'), str(other)
  with pytest.raises(preflight.PreflightError, match="its image size 64, this run's 32"):
    experiment.run(config, str(tmp_path / 'W'))
  assert not (tmp_path / 'W').exists()
