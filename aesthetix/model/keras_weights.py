"""Keras weight files -> Flax params, matched by Keras layer name.

Reads both layouts a user may hold:
- the legacy HDF5 layout of Keras' own ImageNet file
  (`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`: root attribute
  `layer_names`, one group per layer with attribute `weight_names`), also
  inside a `model_weights` group of a whole-model `.h5`;
- Keras 3's `model.save_weights('x.weights.h5')` layout
  (`layers/<auto name>/vars/{0,1}`, the layer name in the `vars` group's
  `name` attribute, nested for sub-models; a compiled model's optimizer
  state beside it is left out).

Converted params are written as one msgpack file (`flax.serialization`) holding
{layer name: {'kernel', 'bias'}}; Keras and Flax share the HWIO conv and
(in, out) dense layouts, so values are copied as they are.
"""

import os
import tempfile

import flax
import h5py
import numpy as np

from aesthetix.model import vgg16
from aesthetix.runtime import errors

VGG16_NOTOP_FILE = 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'
# Keras' download location of that file (keras.applications.vgg16).
VGG16_NOTOP_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/'
                   'vgg16/' + VGG16_NOTOP_FILE)
VARIABLE_NAMES = ('kernel', 'bias')
KERAS3_LAYERS = 'layers'  # The model's group in a Keras 3 .weights.h5.


class WeightsError(errors.UserError, ValueError):
  """A weights file is missing, unreadable or does not fit the model."""


def _decode(name):
  return name.decode('utf8') if isinstance(name, bytes) else str(name)


def _legacy_layers(group):
  """{layer: [arrays]} from a group with a `layer_names` attribute."""
  layers = {}
  for layer in map(_decode, group.attrs['layer_names']):
    weight_names = [_decode(w) for w in group[layer].attrs.get('weight_names', [])]
    if weight_names:
      layers[layer] = [np.asarray(group[layer][w]) for w in weight_names]
  return layers


def _keras3_layers(root):
  """{layer: [arrays]} from Keras 3 `vars` groups anywhere below `root`.

  A compiled model's file also holds its optimizer's state (`optimizer/vars`,
  named after the optimizer) beside `layers`: only `layers` is read.
  """
  root = root[KERAS3_LAYERS] if KERAS3_LAYERS in root else root
  layers = {}

  def visit(path, obj):
    if isinstance(obj, h5py.Group) and path.endswith('vars') and len(obj):
      name = _decode(obj.attrs.get('name', path.split('/')[-2]))
      layers[name] = [np.asarray(obj[str(i)]) for i in range(len(obj))]

  root.visititems(visit)
  return layers


def read_keras_h5(path):
  """{Keras layer name: [kernel, bias]} from a Keras weights file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise WeightsError(f'Keras weights file not found: {path}')
  try:
    with h5py.File(path, 'r') as f:
      if 'layer_names' in f.attrs:
        return _legacy_layers(f)
      if 'model_weights' in f and 'layer_names' in f['model_weights'].attrs:
        return _legacy_layers(f['model_weights'])
      return _keras3_layers(f)
  except OSError as e:
    raise WeightsError(f'{path} is not a readable HDF5 weights file: {e}') from e


def to_flax_layers(keras_layers, path):
  """{layer: {'kernel', 'bias'}} from {layer: [kernel, bias]}."""
  flax_layers = {}
  for name, arrays in keras_layers.items():
    if len(arrays) != len(VARIABLE_NAMES):
      raise WeightsError(
          f'{path}: layer {name!r} holds {len(arrays)} arrays, expected a '
          'kernel and a bias.')
    flax_layers[name] = dict(zip(VARIABLE_NAMES, arrays))
  return flax_layers


def check_vgg16_layers(layers, path):
  """Raises unless `layers` holds all 13 VGG16 conv layers with Keras shapes."""
  missing = [n for n in vgg16.CONV_LAYER_NAMES if n not in layers]
  if missing:
    raise WeightsError(
        f'{path} does not hold VGG16 conv layers {missing}; found layers '
        f'{sorted(layers) or "none"}. Expected a Keras VGG16 weights file such '
        f'as {VGG16_NOTOP_FILE}.')
  in_channels = 3
  for name, filters in vgg16.LAYERS:
    if filters is None:
      continue
    expected = {'kernel': vgg16.KERNEL_SIZE + (in_channels, filters),
                'bias': (filters,)}
    for var, shape in expected.items():
      found = tuple(np.shape(layers[name][var]))
      if found != shape:
        raise WeightsError(f'{path}: layer {name!r} {var} has shape {found}, '
                           f'expected {shape}.')
    in_channels = filters


def assign_layers(params, layers, path='weights'):
  """Copies {layer: {'kernel', 'bias'}} into the modules of the same name.

  Every given layer must exist in `params` with the same shapes; the result
  is a new tree, `params` is left as it was.
  """
  params = flax.core.unfreeze(params)
  placed = set()

  def place(tree):
    for key, sub in tree.items():
      if key in layers and isinstance(sub, dict) and 'kernel' in sub:
        for var in VARIABLE_NAMES:
          if np.shape(layers[key][var]) != np.shape(sub[var]):
            raise WeightsError(
                f'{path}: layer {key!r} {var} has shape '
                f'{np.shape(layers[key][var])}, the model expects '
                f'{np.shape(sub[var])}.')
          sub[var] = np.asarray(layers[key][var], np.float32)
        placed.add(key)
      elif isinstance(sub, dict):
        place(sub)

  place(params)
  unused = sorted(set(layers) - placed)
  if unused:
    raise WeightsError(f'{path}: layers {unused} have no counterpart in the model.')
  return params


def convert(keras_h5, out_path, require_vgg16=True):
  """Converts a Keras weights file to a Flax msgpack file; returns the layers.

  Writes to a temporary file beside `out_path` and renames it, so that a
  failed conversion leaves no partial output and keeps any earlier file.
  """
  layers = to_flax_layers(read_keras_h5(keras_h5), keras_h5)
  if require_vgg16:
    check_vgg16_layers(layers, keras_h5)
  write_layers(layers, out_path)
  return layers


def write_layers(layers, out_path):
  """Writes {layer: {'kernel', 'bias'}} as the msgpack file `read_layers` reads.

  Through a temporary file beside `out_path`, renamed when whole, so that a
  failure leaves no partial output and keeps any earlier file.
  """
  out_path = os.fspath(out_path)
  out_dir = os.path.dirname(os.path.abspath(out_path))
  os.makedirs(out_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=out_dir, prefix='.converting-')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(flax.serialization.msgpack_serialize(layers))
    os.replace(tmp, out_path)
  except BaseException:
    os.unlink(tmp)
    raise


def read_layers(path):
  """{layer: {'kernel', 'bias'}} from a converted .msgpack or a Keras .h5 file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise WeightsError(f'Weights file not found: {path}')
  if path.endswith('.msgpack'):
    with open(path, 'rb') as f:
      try:
        return flax.serialization.msgpack_restore(f.read())
      except Exception as e:
        raise WeightsError(f'{path} is not a converted msgpack weights file: {e}') from e
  return to_flax_layers(read_keras_h5(path), path)


def keras_cache_dir():
  """Keras' model cache: $KERAS_HOME/models, default ~/.keras/models."""
  home = os.environ.get('KERAS_HOME', os.path.join(os.path.expanduser('~'), '.keras'))
  return os.path.join(home, 'models')


# What a run can do instead of ImageNet's weights, as a training command says it.
TRAINING_ALTERNATIVES = (
    'pass a file with --config.model.backbone_weights=PATH (a Keras .h5 or a converted '
    '.msgpack), or train from scratch with --config.model.backbone_weights=random')


def imagenet_weights_path(download=True, alternatives=TRAINING_ALTERNATIVES):
  """Path of Keras' VGG16 ImageNet file: the Keras cache, else Keras' download.

  Offline, raises with the file name, the place to put it and `alternatives`
  (the flags of the command that needs it).
  """
  cached = os.path.join(keras_cache_dir(), VGG16_NOTOP_FILE)
  if os.path.isfile(cached):
    return cached
  reason = "not in Keras' cache"
  if download:
    try:
      import keras  # Only for its downloader; imported on demand.
      return keras.utils.get_file(VGG16_NOTOP_FILE, VGG16_NOTOP_URL,
                                  cache_subdir='models')
    except Exception as e:  # Offline, proxy, partial download: all end here.
      reason = f'download failed: {e}'
  raise WeightsError(
      f'VGG16 ImageNet weights not found ({reason}). Download {VGG16_NOTOP_URL} '
      f'and place it at {cached}, or {alternatives}.')
