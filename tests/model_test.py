"""The whole multi-task model against Keras, and its parameter counts against Table 2."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from aesthetix.model import audit
from aesthetix.model import keras_weights
from aesthetix.model import multitask as model_lib
from aesthetix.training import plan as plan_lib
from aesthetix.training import steps
from bench import keras_reference
from configs import aadb
from configs import eva

IMAGE_SIZE = 32
RTOL = 1e-4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(factory=aadb.get_config, variant=None):
  config = factory(variant)
  config.dataset.image_size = IMAGE_SIZE
  config.model.backbone_weights = 'random'
  return config


@pytest.mark.parametrize('variant', [None, 'separate_outputs'])
def test_whole_model_matches_keras(tmp_path, variant):
  config = tiny_config(variant=variant)
  model = model_lib.build_model(plan_lib.resolve(config).model)
  keras_model = keras_reference.keras_multitask(
      IMAGE_SIZE, model.groups, dropout=config.model.dropout)
  path = tmp_path / 'multitask.weights.h5'
  keras_model.save_weights(path)
  keras_weights.convert(path, tmp_path / 'multitask.msgpack')
  layers = keras_weights.read_layers(tmp_path / 'multitask.msgpack')
  assert {'fc1', 'fc2'} <= set(layers)

  params = model_lib.init_params(model, jax.random.key(0), IMAGE_SIZE)
  params = keras_weights.assign_layers(params, layers, str(path))
  images = keras_reference.random_images(np.random.default_rng(2), 4, IMAGE_SIZE)
  ours = model.apply({'params': params}, images, train=False)
  theirs = keras_model.predict(keras_reference.keras_preprocess(images), verbose=0)
  assert ours.shape == theirs.shape == (4, 12)
  err = np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
  assert err < RTOL


def test_random_init_follows_keras_initialisers():
  config = tiny_config()
  params = model_lib.init_params(model_lib.build_model(plan_lib.resolve(config).model), jax.random.key(0),
                                 IMAGE_SIZE)
  fc1 = params['head']['fc1']
  limit = np.sqrt(6 / (512 + 128))  # Glorot uniform.
  assert np.all(np.abs(fc1['kernel']) <= limit)
  assert np.abs(fc1['kernel']).max() > 0.9 * limit
  assert np.all(fc1['bias'] == 0)


def test_init_compiled_without_backend_optimisation_gives_the_same_params():
  model = model_lib.build_model(plan_lib.resolve(tiny_config()).model)
  images = jax.numpy.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), jax.numpy.uint8)
  optimised = jax.jit(lambda r: model.init(r, images, train=False))(jax.random.key(3))
  fast = model_lib.init_params(model, jax.random.key(3), IMAGE_SIZE)
  same = jax.tree_util.tree_map(np.array_equal, fast, optimised['params'])
  assert all(jax.tree_util.tree_leaves(same))


def test_dropout_only_in_training():
  config = tiny_config()
  model = model_lib.build_model(plan_lib.resolve(config).model)
  params = model_lib.init_params(model, jax.random.key(0), IMAGE_SIZE)
  features = np.random.default_rng(0).normal(size=(8, 512)).astype(np.float32) * 50
  run = lambda train, rng: model.apply({'params': params}, features, train,
                                       method=model.head_only, rngs={'dropout': rng})
  np.testing.assert_array_equal(run(False, jax.random.key(1)), run(False, jax.random.key(2)))
  assert not np.allclose(run(True, jax.random.key(1)), run(True, jax.random.key(2)))


def run_audit(config):
  plan = plan_lib.resolve(config)
  return audit.run_audit(plan.model, plan.data.image_size, plan.table2, plan.table2_pan)


@pytest.mark.parametrize('factory, variant, expected', [
    (aadb.get_config, None, dict(pretrained=14_714_688, fully_connected=73_920, output=780)),
    (eva.get_config, None, dict(pretrained=14_714_688, fully_connected=73_920, output=325)),
    (aadb.get_config, 'separate_outputs',
     dict(pretrained=14_714_688, fully_connected=73_920, output=65 + 715)),
    (aadb.get_config, 'single_task', dict(pretrained=14_714_688, fully_connected=73_920, output=65)),
    (eva.get_config, 'single_task', dict(pretrained=14_714_688, fully_connected=73_920, output=65)),
])
def test_table2_counts(factory, variant, expected):
  config = factory(variant)
  counts, table, mismatches, summary = run_audit(config)
  assert counts == expected
  assert mismatches == []
  assert '14,714,688' in table and '23,587,712' in table and '1,548' in table
  if config.model.tasks == 'overall':  # Table 2 has no output row for a single task.
    assert '| Output layer (1 / Pan et al.) | - | 65 | not in Table 2 |' in table
    assert '| Total | - |' in table and 'no output layer or total' in summary
  else:
    assert 'all match' in summary


def test_audit_flags_a_head_that_differs_from_the_paper():
  config = aadb.get_config()
  config.model.hidden_units = (256, 64)
  counts, _, mismatches, _ = run_audit(config)
  assert counts['fully_connected'] == 512 * 256 + 256 + 256 * 64 + 64
  assert mismatches == ['fully_connected']


def run_cli(*args):
  return subprocess.run([sys.executable, 'run.py', *args], capture_output=True,
                        text=True, cwd=REPO)


def test_audit_cli_exit_codes():
  ok = run_cli('--config=configs/eva.py', '--mode=audit')
  assert ok.returncode == 0, ok.stderr
  assert '| Output layer (5 / Pan et al.) | 325 | 325 | yes | 1,548 | 4.76x |' in ok.stdout
  bad = run_cli('--config=configs/aadb.py', '--mode=audit', '--config.model.dropout=0.3',
                '--config.model.hidden_units=(128, 32)')
  assert bad.returncode == 3  # A finding, not a usage error (2) or a bug (1).
  assert 'MISMATCH with the paper: fully_connected' in bad.stdout


def test_loss_gradients_match_keras(tmp_path):
  """The training loss and its gradients for stage 2's trainable layers, dropout off."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  config.model.dropout = 0.0
  model = model_lib.build_model(plan_lib.resolve(config).model)
  keras_model = keras_reference.keras_multitask(IMAGE_SIZE, model.groups, dropout=0.0)
  path = tmp_path / 'multitask.weights.h5'
  keras_model.save_weights(path)
  config.model.backbone_weights = str(path)
  plan = plan_lib.resolve(config)
  params = model_lib.initial_params(plan.model, model, jax.random.key(0), IMAGE_SIZE)
  rng = np.random.default_rng(3)
  images = keras_reference.random_images(rng, 8, IMAGE_SIZE)
  targets = rng.uniform(size=(8, 12)).astype(np.float32)

  with tf.GradientTape() as tape:
    pred = keras_model(keras_reference.keras_preprocess(images), training=True)
    keras_loss = tf.reduce_mean(tf.square(pred - targets))
  variables = {v.path: v for v in keras_model.trainable_variables}
  keras_grads = dict(zip(variables, tape.gradient(keras_loss, list(variables.values()))))

  def loss(p):
    pred = model.apply({'params': p}, images, train=True, rngs={'dropout': jax.random.key(1)})
    return jax.numpy.mean(steps.squared_error(pred, targets))
  # Compiled, as training runs it: op by op, the backward pass took 5x longer.
  ours, grads = jax.jit(jax.value_and_grad(loss))(params)
  assert float(ours) == pytest.approx(float(keras_loss), rel=1e-5)
  head = grads[model_lib.HEAD]
  layers = config.stage2.trainable_layers + tuple(head)
  checked = 0
  for name, g in keras_grads.items():
    layer, var = name.split('/')[-2:]
    if layer not in layers:
      continue
    group = head if layer in head else grads[model_lib.BACKBONE]
    g = g.numpy()
    np.testing.assert_allclose(group[layer][var], g, rtol=1e-3, atol=1e-4 * np.abs(g).max())
    checked += 1
  assert checked == 2 * len(layers)
