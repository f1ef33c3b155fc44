"""Keras reference models and weight files written the way users get them."""

import h5py
import keras
import numpy as np

from aesthetix.model import vgg16

DROPOUT = 0.35


def keras_vgg16(image_size):
  """Keras' VGG16 conv base with its own random (Glorot) weights."""
  return keras.applications.VGG16(weights=None, include_top=False,
                                  input_shape=(image_size, image_size, 3))


def keras_multitask(image_size, groups, hidden_units=(128, 64), dropout=DROPOUT):
  """The paper's model in Keras, layer names as in aesthetix.model."""
  base = keras_vgg16(image_size)
  x = keras.layers.GlobalAveragePooling2D()(base.output)
  for i, units in enumerate(hidden_units):
    x = keras.layers.Dense(units, activation='relu', name=f'fc{i + 1}')(x)
  x = keras.layers.Dropout(dropout)(x)
  names = ('output',) if len(groups) == 1 else ('output_overall', 'output_attributes')
  outs = [keras.layers.Dense(n, activation='sigmoid', name=name)(x)
          for n, name in zip(groups, names)]
  out = outs[0] if len(outs) == 1 else keras.layers.Concatenate()(outs)
  return keras.Model(base.input, out)


def keras_adam(stage):
  """Keras' Adam for one stage of a config, ExponentialDecay when the stage decays."""
  lr = stage.learning_rate
  if stage.decay_steps:
    lr = keras.optimizers.schedules.ExponentialDecay(
        stage.learning_rate, stage.decay_steps, stage.decay_rate, staircase=stage.staircase)
  return keras.optimizers.Adam(lr, beta_1=stage.b1, beta_2=stage.b2, epsilon=stage.eps)


def write_legacy_notop_h5(model, path, drop_layers=(), reshape_layer=None):
  """Writes `model`'s conv weights in the layout of Keras' ImageNet notop file.

  That file has root attribute `layer_names` and per layer `weight_names` like
  `block1_conv1_W_1:0`. `drop_layers` leaves layers out and `reshape_layer`
  truncates one kernel, to make broken files.
  """
  names = [l.name for l in model.layers]
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = np.array([n.encode() for n in names if n not in drop_layers])
    f.attrs['backend'] = b'tensorflow'
    f.attrs['keras_version'] = b'2.0.8'
    for layer in model.layers:
      if layer.name in drop_layers:
        continue
      g = f.create_group(layer.name)
      weights = layer.get_weights()
      weight_names = [f'{layer.name}_{s}_1:0'.encode() for s in ('W', 'b')[:len(weights)]]
      g.attrs['weight_names'] = np.array(weight_names)
      for wn, w in zip(weight_names, weights):
        if layer.name == reshape_layer and w.ndim == 4:
          w = w[..., : w.shape[-1] // 2]
        g.create_dataset(wn.decode(), data=w)


def random_images(rng, n, image_size):
  return rng.integers(0, 256, size=(n, image_size, image_size, 3), dtype=np.uint8)


def keras_preprocess(images):
  return keras.applications.vgg16.preprocess_input(images.astype(np.float32))


def conv_layer_names():
  return vgg16.CONV_LAYER_NAMES
