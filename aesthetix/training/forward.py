"""The model's forward pass as a per-device program, and what its batches hold:
the predict step of validation, tests, evaluation and every scoring path.

A batch holds 'image' (uint8 [b, S, S, 3]), or the cached output of frozen
layers: FEATURES (the pooled backbone, for a head-only stage) or PREFIX (the
output of `prefix_layer`, for a stage that trains layers above it). No
optimizer here (steps.py has the train step): scoring imports no Optax.
"""

from aesthetix.runtime import parallel
from aesthetix.training import plan as plan_lib

FEATURES = plan_lib.FEATURES
PREFIX = plan_lib.PREFIX


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


def make_predict_step(model, prefix_layer=None):
  """Data-parallel (params, batch) -> predictions [B, n] in [0, 1]; kept whole
  in the persistent cache (a scoring process's start skips tracing)."""
  def predict(params, batch):
    inputs, method, kwargs = model_inputs(model, batch, prefix_layer)
    return model.apply({'params': params}, inputs, train=False, method=method, **kwargs)
  return parallel.per_device(predict, in_specs=(parallel.REPLICATED, parallel.SHARDED),
                             out_specs=parallel.SHARDED,
                             name=f'predict {model!r} from {prefix_layer}')
