"""The Flax VGG16 against Keras': preprocessing, layer names, counts, outputs."""

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetix.model import keras_weights
from aesthetix.model import multitask as model_lib
from aesthetix.model import vgg16
from bench import keras_reference

IMAGE_SIZE = 32  # Passes through all five blocks (1x1 after block5_pool).
VGG16_PARAMS = 14_714_688  # Table 2 of the paper; also Keras' own summary.
RTOL = 1e-4


def relative_error(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


@pytest.fixture(scope='module')
def keras_base(tmp_path_factory):
  model = keras_reference.keras_vgg16(IMAGE_SIZE)
  path = tmp_path_factory.mktemp('keras') / 'vgg16.weights.h5'
  model.save_weights(path)
  return model, path


def test_preprocess_matches_keras():
  images = keras_reference.random_images(np.random.default_rng(0), 4, 8)
  np.testing.assert_allclose(vgg16.preprocess_input(images),
                             keras_reference.keras_preprocess(images), rtol=0, atol=1e-5)


def test_layer_names_and_count_match_keras(keras_base):
  keras_model, _ = keras_base
  keras_convs = [l.name for l in keras_model.layers if l.get_weights()]
  assert list(vgg16.CONV_LAYER_NAMES) == keras_convs
  assert [l.name for l in keras_model.layers[1:]] == list(vgg16.LAYER_NAMES)
  params = vgg16.VGG16().init(jax.random.key(0),
                              jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3)))['params']
  assert model_lib.count_params(params) == VGG16_PARAMS
  assert keras_model.count_params() == VGG16_PARAMS


@pytest.mark.parametrize('layout', ['keras3', 'legacy_notop'])
def test_converted_backbone_matches_keras(keras_base, tmp_path, layout):
  keras_model, keras3_path = keras_base
  path = keras3_path
  if layout == 'legacy_notop':
    path = tmp_path / keras_weights.VGG16_NOTOP_FILE
    keras_reference.write_legacy_notop_h5(keras_model, path)
  out = tmp_path / 'vgg16.msgpack'
  keras_weights.convert(path, out)
  params = keras_weights.read_layers(out)

  images = keras_reference.random_images(np.random.default_rng(1), 3, IMAGE_SIZE)
  ours = vgg16.VGG16().apply({'params': params}, vgg16.preprocess_input(images))
  theirs = keras_model.predict(keras_reference.keras_preprocess(images), verbose=0)
  assert ours.shape == theirs.shape == (3, 1, 1, 512)
  assert relative_error(ours, theirs) < RTOL


def test_slices_compose_to_the_whole_network():
  model = vgg16.VGG16()
  x = jax.random.normal(jax.random.key(0), (2, IMAGE_SIZE, IMAGE_SIZE, 3))
  params = model.init(jax.random.key(1), x)['params']
  whole = model.apply({'params': params}, x)
  prefix = model.apply({'params': params}, x, stop_after='block4_conv1')
  assert prefix.shape[1:] == vgg16.layer_output_shape(IMAGE_SIZE, 'block4_conv1')
  rest = model.apply({'params': params}, prefix, start_after='block4_conv1')
  np.testing.assert_allclose(rest, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape', [(3, 8, 8, 5), (2, 7, 9, 4)])
def test_max_pool_values_and_gradients_equal_flax_including_ties(shape):
  rng = np.random.default_rng(0)
  # Rounded ReLU outputs: many exact ties, at zero and above it.
  x = jnp.asarray(np.round(np.maximum(rng.normal(size=shape), 0) * 2) / 2, jnp.float32)
  flax_pool = lambda a: flax.linen.max_pool(a, vgg16.POOL_SIZE, strides=vgg16.POOL_SIZE)
  y, pull = jax.vjp(vgg16.max_pool, x)
  y_ref, pull_ref = jax.vjp(flax_pool, x)
  np.testing.assert_array_equal(y, y_ref)
  g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  np.testing.assert_array_equal(pull(g)[0], pull_ref(g)[0])
