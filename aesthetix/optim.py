"""Which parameters train in each stage, and the stage's optimizer.

Freezing is an optimizer concern: labels computed from parameter paths feed
`optax.multi_transform`; frozen parameters get zero updates (and, in the loss,
a stop_gradient so that no backward pass runs through them).
"""

import jax
import optax

from aesthetix import model as model_lib

TRAIN = 'train'
FREEZE = 'freeze'


def _path_names(path):
  return tuple(getattr(k, 'key', getattr(k, 'name', str(k))) for k in path)


def is_trainable(names, trainable_layers):
  """The head always trains; a backbone layer trains when it is listed."""
  if names[0] == model_lib.HEAD:
    return True
  return names[0] == model_lib.BACKBONE and names[1] in trainable_layers


def stage_labels(params, trainable_layers):
  """A tree like `params` of TRAIN / FREEZE labels for one stage."""
  unknown = set(trainable_layers) - set(params[model_lib.BACKBONE])
  if unknown:
    raise ValueError(f'Trainable layers {sorted(unknown)} are not backbone layers; '
                     f'known: {sorted(params[model_lib.BACKBONE])}.')
  return jax.tree_util.tree_map_with_path(
      lambda path, _: TRAIN if is_trainable(_path_names(path), trainable_layers)
      else FREEZE, params)


def learning_rate(stage):
  """Constant, or Keras' ExponentialDecay(lr, decay_steps, decay_rate, staircase)."""
  if not stage.decay_steps:
    return stage.learning_rate
  return optax.exponential_decay(stage.learning_rate, stage.decay_steps,
                                 stage.decay_rate, staircase=stage.staircase)


def stage_optimizer(stage, params):
  """Adam on the stage's trainable parameters; frozen ones never move."""
  adam = optax.adam(learning_rate(stage), b1=stage.b1, b2=stage.b2, eps=stage.eps)
  return optax.multi_transform({TRAIN: adam, FREEZE: optax.set_to_zero()},
                               stage_labels(params, stage.trainable_layers))


def stop_frozen_gradients(params, labels):
  """Params with frozen leaves wrapped in stop_gradient (no backward through them)."""
  return jax.tree_util.tree_map(
      lambda p, label: p if label == TRAIN else jax.lax.stop_gradient(p),
      params, labels)
