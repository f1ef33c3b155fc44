"""Converter errors: each names the file and layer, and leaves no partial output."""

import os
import subprocess
import sys

import numpy as np
import pytest

from aesthetix.model import keras_weights
from bench import keras_reference

IMAGE_SIZE = 32


@pytest.fixture(scope='module')
def keras_base():
  return keras_reference.keras_vgg16(IMAGE_SIZE)


def _outputs(directory):
  return sorted(os.listdir(directory))


def test_missing_file(tmp_path):
  out = tmp_path / 'out' / 'vgg16.msgpack'
  with pytest.raises(keras_weights.WeightsError, match='not found: .*nowhere.h5'):
    keras_weights.convert(tmp_path / 'nowhere.h5', out)
  assert not out.exists()


def test_not_hdf5(tmp_path):
  bad = tmp_path / 'bad.h5'
  bad.write_text('not an hdf5 file')
  with pytest.raises(keras_weights.WeightsError, match='bad.h5 is not a readable HDF5'):
    keras_weights.convert(bad, tmp_path / 'vgg16.msgpack')
  assert _outputs(tmp_path) == ['bad.h5']


def test_missing_layers_are_named(keras_base, tmp_path):
  path = tmp_path / 'partial.h5'
  keras_reference.write_legacy_notop_h5(keras_base, path,
                                        drop_layers=('block3_conv2', 'block5_conv3'))
  with pytest.raises(keras_weights.WeightsError,
                     match=r"partial.h5 does not hold VGG16 conv layers "
                           r"\['block3_conv2', 'block5_conv3'\]"):
    keras_weights.convert(path, tmp_path / 'vgg16.msgpack')
  assert _outputs(tmp_path) == ['partial.h5']


def test_shape_mismatch_names_layer_and_keeps_earlier_output(keras_base, tmp_path):
  good, bad = tmp_path / 'good.h5', tmp_path / 'bad.h5'
  keras_reference.write_legacy_notop_h5(keras_base, good)
  keras_reference.write_legacy_notop_h5(keras_base, bad, reshape_layer='block4_conv2')
  out = tmp_path / 'vgg16.msgpack'
  keras_weights.convert(good, out)
  before = out.read_bytes()
  with pytest.raises(keras_weights.WeightsError,
                     match=r"bad.h5: layer 'block4_conv2' kernel has shape "
                           r"\(3, 3, 512, 256\), expected \(3, 3, 512, 512\)"):
    keras_weights.convert(bad, out)
  assert out.read_bytes() == before  # The user's earlier file is untouched.
  assert _outputs(tmp_path) == ['bad.h5', 'good.h5', 'vgg16.msgpack']


def test_assign_rejects_unknown_and_misshaped_layers():
  params = {'vgg16': {'block1_conv1': {'kernel': np.zeros((3, 3, 3, 64)),
                                       'bias': np.zeros(64)}}}
  extra = {'fc9': {'kernel': np.zeros((2, 2)), 'bias': np.zeros(2)}}
  with pytest.raises(keras_weights.WeightsError, match=r"\['fc9'\] have no counterpart"):
    keras_weights.assign_layers(params, extra)
  wrong = {'block1_conv1': {'kernel': np.zeros((3, 3, 3, 32)), 'bias': np.zeros(64)}}
  with pytest.raises(keras_weights.WeightsError, match="'block1_conv1' kernel"):
    keras_weights.assign_layers(params, wrong)
  ones = {'block1_conv1': {'kernel': np.ones((3, 3, 3, 64)), 'bias': np.ones(64)}}
  assigned = keras_weights.assign_layers(params, ones)
  assert assigned['vgg16']['block1_conv1']['kernel'].sum() == 3 * 3 * 3 * 64
  assert params['vgg16']['block1_conv1']['kernel'].sum() == 0  # Input untouched.


def test_offline_imagenet_message_says_what_to_place_where(tmp_path, monkeypatch):
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'keras_home'))
  with pytest.raises(keras_weights.WeightsError) as e:
    keras_weights.imagenet_weights_path(download=False)
  expected = os.path.join(str(tmp_path), 'keras_home', 'models',
                          keras_weights.VGG16_NOTOP_FILE)
  assert expected in str(e.value)
  assert keras_weights.VGG16_NOTOP_URL in str(e.value)


def test_imagenet_weights_found_in_keras_cache(keras_base, tmp_path, monkeypatch):
  monkeypatch.setenv('KERAS_HOME', str(tmp_path))
  cached = tmp_path / 'models' / keras_weights.VGG16_NOTOP_FILE
  cached.parent.mkdir()
  keras_reference.write_legacy_notop_h5(keras_base, cached)
  assert keras_weights.imagenet_weights_path(download=False) == str(cached)


def test_cli_convert_reports_error_and_exit_code(tmp_path):
  out = tmp_path / 'vgg16.msgpack'
  result = subprocess.run(
      [sys.executable, 'run.py', '--mode=convert_weights',
       f'--keras_h5={tmp_path / "missing.h5"}', f'--out={out}'],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 2
  assert 'missing.h5' in result.stderr
  assert not out.exists()


def test_trained_keras_model_file_reads_layers_not_optimizer_state(tmp_path):
  """A compiled model's save_weights holds its Adam state beside the layers."""
  model = keras_reference.keras_multitask(IMAGE_SIZE, groups=(1, 11))
  model.compile(optimizer='adam', loss='mse')
  images = keras_reference.random_images(np.random.default_rng(0), 2, IMAGE_SIZE)
  model.fit(keras_reference.keras_preprocess(images), np.full((2, 12), 0.5, np.float32),
            epochs=1, verbose=0)
  path = tmp_path / 'trained.weights.h5'
  model.save_weights(path)
  layers = keras_weights.read_layers(path)
  expected = {l.name: l.get_weights() for l in model.layers if l.get_weights()}
  assert set(layers) == set(expected)  # No 'adam'.
  for name, (kernel, bias) in expected.items():
    np.testing.assert_array_equal(layers[name]['kernel'], kernel)
    np.testing.assert_array_equal(layers[name]['bias'], bias)
