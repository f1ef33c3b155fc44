"""The paper's multi-task regressor: VGG16, global average pooling, and the head.

Outputs are sigmoids in [0, 1], in `ModelSpec.output_names` order (overall
score first, then the attributes); `targets.DatasetSpec.from_unit` maps them to
a dataset's scale.
"""

import dataclasses
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aesthetix.model import vgg16

BACKBONE = 'vgg16'
HEAD = 'head'
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
TASKS = ('multi', 'overall')
OUTPUT_LAYERS = ('shared', 'separate')


def hidden_layer_name(i):
  """Keras-style name of the i-th hidden Dense layer (fc1, fc2, ...)."""
  return f'fc{i + 1}'


def output_layer_names(groups):
  """Names of the output Dense layers, one per group of outputs."""
  if len(groups) == 1:
    return ('output',)
  return ('output_overall', 'output_attributes')


def output_groups(tasks, output_layers, num_attributes):
  """Sizes of the output layers: (K+1,), (1, K) or, single-task, (1,)."""
  if tasks not in TASKS:
    raise ValueError(f'model.tasks must be one of {TASKS}, got {tasks!r}.')
  if output_layers not in OUTPUT_LAYERS:
    raise ValueError(
        f'model.output_layers must be one of {OUTPUT_LAYERS}, got {output_layers!r}.')
  if tasks == 'overall':
    return (1,)
  if output_layers == 'separate':
    return (1, num_attributes)
  return (num_attributes + 1,)


class MultiTaskHead(nn.Module):
  """Dense+ReLU layers, dropout on the last one, sigmoid output layer(s).

  features: [B, F] pooled backbone features -> [B, sum(groups)] in [0, 1].
  """
  hidden_units: Sequence[int]
  dropout: float
  groups: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, train: bool):
    dense = lambda n, name: nn.Dense(
        n, dtype=self.dtype, param_dtype=jnp.float32, name=name,
        kernel_init=nn.initializers.glorot_uniform(),
        bias_init=nn.initializers.zeros)
    x = features
    for i, units in enumerate(self.hidden_units):
      x = nn.relu(dense(units, hidden_layer_name(i))(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    names = output_layer_names(self.groups)
    logits = [dense(n, name)(x) for n, name in zip(self.groups, names)]
    return nn.sigmoid(jnp.concatenate(logits, axis=-1).astype(jnp.float32))


def global_average_pool(x):
  """[B, H, W, C] -> [B, C], averaged in float32."""
  return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class AestheticsModel(nn.Module):
  """uint8 RGB images [B, H, W, 3] -> scores [B, n] in [0, 1]."""
  hidden_units: Sequence[int]
  dropout: float
  groups: Sequence[int]
  dtype: Any = jnp.float32

  def setup(self):
    self.vgg16 = vgg16.VGG16(dtype=self.dtype, name=BACKBONE)
    self.head = MultiTaskHead(self.hidden_units, self.dropout, self.groups,
                              dtype=self.dtype, name=HEAD)

  def __call__(self, images, train: bool = False):
    return self.head(self.features(images), train)

  def features(self, images):
    """The pooled 512 backbone features [B, 512] of uint8 images."""
    return global_average_pool(self.vgg16(vgg16.preprocess_input(images)))

  def features_from(self, activations, start_after):
    """Pooled features from the output of backbone layer `start_after`."""
    return global_average_pool(self.vgg16(activations, start_after=start_after))

  def backbone_prefix(self, images, stop_after):
    """Output of backbone layer `stop_after` for uint8 images."""
    return self.vgg16(vgg16.preprocess_input(images), stop_after=stop_after)

  def head_only(self, features, train: bool = False):
    """The head on pooled features [B, 512]."""
    return self.head(features, train)

  def from_activations(self, activations, train: bool = False, *, start_after):
    """Scores from the output of backbone layer `start_after` (a cached prefix)."""
    return self.head(self.features_from(activations, start_after), train)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """The model a run trains (resolved from `config.model` and the dataset's outputs).

  Attributes:
    output_names: what the model predicts, in output order: the dataset's K+1
      outputs, or the overall score alone (tasks 'overall').
    groups: the sizes of the output layers (`output_groups`).
    backbone_weights: 'imagenet', 'imagenet_if_present', 'random' or a path.
    tasks, output_layers, hidden_units, dropout, dtype: as in configs/common.py.
  """
  output_names: tuple
  groups: tuple
  backbone_weights: str = 'imagenet'
  tasks: str = 'multi'
  output_layers: str = 'shared'
  hidden_units: tuple = (128, 64)
  dropout: float = 0.0
  dtype: str = 'float32'

  def __post_init__(self):
    if self.dtype not in DTYPES:
      raise ValueError(f'model.dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}.')


def build_model(spec):
  """The Flax model that `spec` (a ModelSpec) describes."""
  return AestheticsModel(hidden_units=tuple(spec.hidden_units), dropout=spec.dropout,
                         groups=tuple(spec.groups), dtype=DTYPES[spec.dtype])


# init runs once and its forward pass is dead code: XLA's backend optimisations
# only cost compile time there (1.4 s instead of 3.3 s on a 2-core CPU; the
# values are bit-identical).
INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0}


def init_params(model, rng, image_size):
  """Randomly initialised params (Keras initialisers) for square images."""
  images = jnp.zeros((1, image_size, image_size, 3), jnp.uint8)
  init = jax.jit(lambda r: model.init(r, images, train=False),
                 compiler_options=INIT_COMPILER_OPTIONS)
  return init(rng)['params']


def count_params(tree):
  """Number of scalars in a pytree of arrays."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def param_shapes(model, image_size):
  """The params tree as ShapeDtypeStructs, without computing anything."""
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.uint8)
  variables = jax.eval_shape(
      lambda r, x: model.init(r, x, train=False), jax.random.key(0), images)
  return variables['params']


def pretrained_layers(backbone_weights):
  """Backbone layers for `backbone_weights` (`ModelSpec`), or None for random.

  'imagenet': Keras' file (cache or download, else a clear error);
  'imagenet_if_present': Keras' cached file if there, else None (random), logged;
  'random': None; anything else: a path to a Keras .h5 or converted .msgpack.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  from aesthetix.model import keras_weights  # pylint: disable=g-import-not-at-top
  if backbone_weights == 'random':
    return None
  if backbone_weights == 'imagenet_if_present':
    try:
      path = keras_weights.imagenet_weights_path(download=False)
    except keras_weights.WeightsError:
      logging.warning('No ImageNet VGG16 weights in %s: the backbone starts '
                      'from random weights.', keras_weights.keras_cache_dir())
      return None
  elif backbone_weights == 'imagenet':
    path = keras_weights.imagenet_weights_path()
  else:
    path = backbone_weights
  layers = keras_weights.read_layers(path)
  keras_weights.check_vgg16_layers(layers, path)
  logging.info('Backbone weights from %s', path)
  return layers


def weights_problem(backbone_weights, download=True, alternatives=None):
  """Why the configured backbone weights cannot be had, or None.

  'imagenet' is looked up in Keras' cache and, when `download`, fetched by
  Keras (what a run would do); a path must be a file. `alternatives`: what the
  message offers instead of ImageNet's file (default: a training command's flags).
  """
  from aesthetix.model import keras_weights  # pylint: disable=g-import-not-at-top
  if backbone_weights in ('random', 'imagenet_if_present'):
    return None
  if backbone_weights == 'imagenet':
    try:
      keras_weights.imagenet_weights_path(
          download=download, alternatives=alternatives or keras_weights.TRAINING_ALTERNATIVES)
    except keras_weights.WeightsError as e:
      return str(e).rstrip('.')
    return None
  if not os.path.isfile(backbone_weights):
    return (f'--config.model.backbone_weights={backbone_weights}: no such file (a Keras '
            '.h5 or a converted .msgpack; or imagenet, or random)')
  return None


def initial_params(spec, model, rng, image_size):
  """Initial params: Keras-style random init, backbone from `spec.backbone_weights`."""
  from aesthetix.model import keras_weights  # pylint: disable=g-import-not-at-top
  params = init_params(model, rng, image_size)
  layers = pretrained_layers(spec.backbone_weights)
  if layers is not None:
    params = keras_weights.assign_layers(params, layers, spec.backbone_weights)
    params = jax.tree_util.tree_map(jnp.asarray, params)
  return params
