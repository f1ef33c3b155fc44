"""Which parameters train in each stage, and the stage's optimizer.

Freezing is an optimizer concern: labels computed from parameter paths feed
`optax.multi_transform`; frozen parameters get zero updates (and, in the loss,
a stop_gradient so that no backward pass runs through them).
"""

import jax
import jax.numpy as jnp
import optax

from aesthetix.model import multitask as model_lib

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


def learning_rate_at(stage, update):
  """The learning rate of the stage's update number `update` (0: its first),
  as its optimizer applies it (a float, for the logs)."""
  rate = learning_rate(stage)
  return float(rate(update)) if callable(rate) else float(rate)


def scale_by_keras_adam(b1, b2, eps):
  """Adam's direction as Keras computes it, before the learning rate.

  Keras (as TensorFlow before it) adds `eps` to sqrt(v_t) before the bias
  corrections: sqrt(1 - b2^t) / (1 - b1^t) * m_t / (sqrt(v_t) + eps).
  optax.scale_by_adam adds it after them, m_hat / (sqrt(v_hat) + eps): an
  epsilon smaller by sqrt(1 - b2^t), about 32x at the first step. Gradients
  near eps then take different steps: 31% of block4_conv2's kernel gradients
  were under 1e-6 on a benchmark batch at random init (optax issue #571;
  optax has no option for Keras' placement). The state is optax's own
  ScaleByAdamState, so checkpoints keep their layout.
  """
  def init_fn(params):
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32),
                                  mu=optax.tree_utils.tree_zeros_like(params),
                                  nu=optax.tree_utils.tree_zeros_like(params))

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
    nu = optax.tree_utils.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    alpha = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    updates = jax.tree_util.tree_map(lambda m, v: alpha * m / (jnp.sqrt(v) + eps), mu, nu)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def keras_adam(stage):
  """Keras' Adam with the stage's learning rate (schedule), betas and epsilon."""
  return optax.chain(scale_by_keras_adam(stage.b1, stage.b2, stage.eps),
                     optax.scale_by_learning_rate(learning_rate(stage)))


def stage_optimizer(stage, params):
  """Keras' Adam on the stage's trainable parameters; frozen ones never move."""
  adam = keras_adam(stage)
  return optax.multi_transform({TRAIN: adam, FREEZE: optax.set_to_zero()},
                               stage_labels(params, stage.trainable_layers))


def stop_frozen_gradients(params, labels):
  """Params with frozen leaves wrapped in stop_gradient (no backward through them)."""
  return jax.tree_util.tree_map(
      lambda p, label: p if label == TRAIN else jax.lax.stop_gradient(p),
      params, labels)
