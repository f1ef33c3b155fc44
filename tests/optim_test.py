"""Stage masks: frozen parameters never move, trainable ones do; Keras' decay."""

import jax
import numpy as np
import optax
import pytest

from aesthetix.data import input_pipeline
from aesthetix.model import multitask as model_lib
from aesthetix.runtime import parallel
from aesthetix.training import optim
from aesthetix.training import steps
from bench import keras_reference
from configs import aadb
from tests import tiny


def test_stage_labels_follow_the_paper():
  config = aadb.get_config()
  params = model_lib.param_shapes(model_lib.build_model(tiny.plan(config).model), 32)
  for stage, trainable in (('stage1', set()), ('stage2', {'block4_conv2', 'block4_conv3'})):
    labels = optim.stage_labels(params, config[stage].trainable_layers)
    assert {k for k, v in labels['vgg16'].items() if v['kernel'] == optim.TRAIN} == trainable
    assert set(jax.tree_util.tree_leaves(labels['head'])) == {optim.TRAIN}


def test_unknown_trainable_layer_is_an_error():
  config = aadb.get_config()
  params = model_lib.param_shapes(model_lib.build_model(tiny.plan(config).model), 32)
  with pytest.raises(ValueError, match='block4_conv9'):
    optim.stage_labels(params, ('block4_conv9',))


def test_learning_rate_matches_keras_exponential_decay():
  stage = aadb.get_config().stage2
  schedule = optim.learning_rate(stage)
  for step in (0, 1, 124, 125, 250, 377):
    assert np.isclose(schedule(step), 1e-4 * 0.5 ** (step / 125), rtol=1e-6)
  stage.staircase = True
  assert np.isclose(optim.learning_rate(stage)(250), 1e-4 * 0.25)
  assert np.isclose(optim.learning_rate(stage)(249), 1e-4 * 0.5)


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
  return tiny.config(tmp_path_factory.mktemp('data'))


@pytest.mark.parametrize('stage_name', ['stage1', 'stage2'])
def test_frozen_parameters_are_bit_identical_after_steps(tiny_config, stage_name):
  plan = tiny.plan(tiny_config)
  stage = plan.stage(stage_name)
  model = model_lib.build_model(plan.model)
  state = steps.initial_state(plan, model, jax.random.PRNGKey(0))
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  before = jax.device_get(state['params'])
  step = steps.make_train_step(model, optimizer, labels)
  replicated = parallel.replicate(steps.stage_state(state, optimizer))
  batches = input_pipeline.train_batches(plan.data, 'train', batch_size=tiny.BATCH_SIZE,
                                         epoch=0, seed=0)
  for batch, _ in parallel.prefetch(batches):
    replicated, _ = step(replicated, batch)
  after = parallel.unreplicate(replicated)['params']

  changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), before, after)
  for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]:
    moved = optim._path_names(path)  # pylint: disable=protected-access
    was_changed = _get(changed, moved)
    assert was_changed == (label == optim.TRAIN), (moved, label)


def _get(tree, names):
  for n in names:
    tree = tree[n]
  return tree


def count_convolutions(config, stage_name):
  """Convolutions in the compiled train step of a stage (forward and backward)."""
  plan = tiny.plan(config)
  stage = plan.stage(stage_name)
  model = model_lib.build_model(plan.model)
  state = steps.initial_state(plan, model, jax.random.PRNGKey(0))
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  step = steps.make_train_step(model, optimizer, labels)
  replicated = parallel.replicate(steps.stage_state(state, optimizer))
  batch = next(input_pipeline.train_batches(plan.data, 'train', batch_size=2, epoch=0, seed=0))
  # The per-device program: every device runs these convolutions on its rows.
  hlo = step.compile(replicated, parallel.put_batch(batch)).as_text()
  return hlo.count(' convolution(')


def test_stage2_has_no_backward_pass_below_block4_conv2(tiny_config):
  # Forward: 13 convolutions. Backward: weight gradients of block4_conv2/3 (2),
  # input gradients from block5_conv3 down to block4_conv3 (4); none below.
  assert count_convolutions(tiny_config, 'stage2') == 13 + 2 + 4
  config = tiny_config.copy_and_resolve_references()
  config.stage2.trainable_layers = tuple(n for n in config.stage2.trainable_layers) + (
      'block1_conv1',)
  # Training block1_conv1 as well pulls the backward pass all the way down.
  assert count_convolutions(config, 'stage2') > 13 + 2 + 4 + 8


@pytest.mark.parametrize('stage_name', ['stage1', 'stage2'])
def test_adam_matches_keras_adam_step_by_step(stage_name):
  """Six steps on gradients from 1e-9 to 1e-1, where optax.adam's epsilon differs."""
  import keras  # pylint: disable=g-import-not-at-top
  stage = aadb.get_config()[stage_name]
  stage.decay_steps = stage.decay_steps and 2  # Decay within the steps when it decays.
  rng = np.random.default_rng(0)
  scales = 10.0 ** np.arange(-9, 0)
  start = rng.normal(size=(9, 4)).astype(np.float32)
  grads = [(rng.normal(size=(9, 4)) * scales[:, None]).astype(np.float32) for _ in range(6)]

  variable = keras.Variable(start)
  theirs = keras_reference.keras_adam(stage)
  optimizer = optim.keras_adam(stage)
  params = {'w': jax.numpy.asarray(start)}
  opt_state = optimizer.init(params)
  for g in grads:
    theirs.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    updates, opt_state = optimizer.update({'w': jax.numpy.asarray(g)}, opt_state, params)
    params = optax.apply_updates(params, updates)
    moved_theirs = np.asarray(variable.numpy()) - start
    moved_ours = np.asarray(params['w']) - start
    np.testing.assert_allclose(moved_ours, moved_theirs, rtol=1e-5, atol=1e-12)
  # optax.adam, with the same numbers, steps differently on the small gradients.
  plain = optax.adam(optim.learning_rate(stage), b1=stage.b1, b2=stage.b2, eps=stage.eps)
  p = {'w': jax.numpy.asarray(start)}
  s = plain.init(p)
  for g in grads:
    u, s = plain.update({'w': jax.numpy.asarray(g)}, s, p)
    p = optax.apply_updates(p, u)
  assert not np.allclose(np.asarray(p['w']) - start, moved_theirs, rtol=0.1, atol=0)
