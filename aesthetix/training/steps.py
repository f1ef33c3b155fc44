"""The per-device programs of training and prediction, and what their batches hold.

A batch holds 'image' (uint8 [b, S, S, 3]), or the cached output of frozen
layers: FEATURES (the pooled backbone, for a head-only stage) or PREFIX (the
output of `prefix_layer`, for a stage that trains layers above it). No
TensorFlow here: these programs run wherever JAX does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import parallel
from aesthetix.training import optim
from aesthetix.training import plan as plan_lib

FEATURES = plan_lib.FEATURES
PREFIX = plan_lib.PREFIX


def initial_state(plan, model, rng):
  """{'params', 'step', 'rng'} before training: the initial weights of `plan.model`."""
  init_rng, train_rng = jax.random.split(rng)
  params = model_lib.initial_params(plan.model, model, init_rng, plan.data.image_size)
  return {'params': params, 'step': np.int64(0), 'rng': train_rng}


def stage_state(state, optimizer):
  """The state with a fresh optimizer (each stage starts its own Adam)."""
  return dict(state, opt_state=optimizer.init(state['params']))


def squared_error(pred, target):
  """Per-example MSE over the outputs. pred [B, n], target [B, >=n] -> [B]."""
  return jnp.mean((pred - target[:, :pred.shape[-1]]) ** 2, axis=-1)


def model_inputs(model, batch, prefix_layer=None):
  """(input, apply method, its keyword arguments) for a batch.

  Cached 'features' feed the head, a cached 'prefix' (the output of
  `prefix_layer`) the rest of the network, 'image' the whole model.
  """
  if FEATURES in batch:
    return batch[FEATURES], model.head_only, {}
  if PREFIX in batch:
    return (batch[PREFIX], model.from_activations,
            {'start_after': prefix_layer})
  return batch['image'], model.__call__, {}


def make_train_step(model, optimizer, labels, prefix_layer=None):
  """Data-parallel (state, batch) -> (state, {'loss_sum', 'count'}); state is donated.

  The loss is the mean over the real (mask True) examples of the global batch,
  so a step on any number of devices computes the same update. A batch holds
  'image', or the cached output of frozen layers (see `model_inputs`).
  """
  def step(state, batch):
    rng = jax.random.fold_in(jax.random.fold_in(state['rng'], state['step']),
                             parallel.device_index())
    mask = batch['mask'].astype(jnp.float32)
    count = parallel.psum(jnp.sum(mask))

    def loss_fn(params):
      params = optim.stop_frozen_gradients(params, labels)
      inputs, method, kwargs = model_inputs(model, batch, prefix_layer)
      pred = model.apply({'params': params}, inputs, train=True, rngs={'dropout': rng},
                         method=method, **kwargs)
      return jnp.sum(squared_error(pred, batch['target']) * mask) / jnp.maximum(count, 1)

    loss, grads = jax.value_and_grad(loss_fn)(state['params'])
    # Only trainable gradients cross devices; frozen ones are zero everywhere.
    grads = jax.tree_util.tree_map(
        lambda g, label: parallel.psum(g) if label == optim.TRAIN else g, grads, labels)
    updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
    new_state = dict(state, params=optax.apply_updates(state['params'], updates),
                     opt_state=opt_state, step=state['step'] + 1)
    return new_state, {'loss_sum': parallel.psum(loss) * count, 'count': count}

  return parallel.per_device(step, in_specs=(parallel.REPLICATED, parallel.SHARDED),
                             out_specs=(parallel.REPLICATED, parallel.REPLICATED),
                             donate_argnums=(0,))


def make_predict_step(model, prefix_layer=None):
  """Data-parallel (params, batch) -> predictions [B, n] in [0, 1]."""
  def predict(params, batch):
    inputs, method, kwargs = model_inputs(model, batch, prefix_layer)
    return model.apply({'params': params}, inputs, train=False, method=method, **kwargs)
  return parallel.per_device(predict, in_specs=(parallel.REPLICATED, parallel.SHARDED),
                             out_specs=parallel.SHARDED)
