"""The per-device programs of training: the initial state, a stage's optimizer
state and the train step (batches as forward.py describes them; the predict
step is forward.py's). No TensorFlow here: these programs run wherever JAX does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import parallel
from aesthetix.training import forward
from aesthetix.training import optim
from aesthetix.training import transfer

def initial_state(plan, model, rng):
  """{'params', 'step', 'rng'} before training: the initial weights of `plan.model`,
  or those of the trained model `plan.init_from` names (training/transfer.py)."""
  init_rng, train_rng = jax.random.split(rng)
  if plan.init_from:
    params = transfer.start_params(plan, model, init_rng)
  else:
    params = model_lib.initial_params(plan.model, model, init_rng, plan.data.image_size)
  return {'params': params, 'step': np.int64(0), 'rng': train_rng}


def stage_state(state, optimizer):
  """The state with a fresh optimizer (each stage starts its own Adam)."""
  return dict(state, opt_state=optimizer.init(state['params']))


def squared_error(pred, target):
  """Per-example MSE over the outputs. pred [B, n], target [B, >=n] -> [B]."""
  return jnp.mean((pred - target[:, :pred.shape[-1]]) ** 2, axis=-1)


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
      inputs, method, kwargs = forward.model_inputs(model, batch, prefix_layer)
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
