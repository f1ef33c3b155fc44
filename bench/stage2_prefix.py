"""Would caching stage 2's frozen prefix pay? FLOPs and disk, counted, not assumed.

  python -m bench.stage2_prefix [--image_size=224] [--train_images=8458] [--epochs=3]

Layers block1_conv1 .. block4_conv1 stay frozen through both stages, so their
output is a pure function of the image and its flip, like stage 1's features.
This prints, from XLA's own FLOP counts of the compiled programs: a stage-2
step from images and from a cached block4_conv1 output, the cost of filling
the cache (2 prefix passes per image), the schedule's totals, and the disk the
cache would take (float32 and bfloat16).
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from aesthetix.model import multitask as model_lib
from aesthetix.model import vgg16
from aesthetix.training import optim
from aesthetix.training import plan as plan_lib
from configs import aadb

_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Square input size.')
_TRAIN_IMAGES = flags.DEFINE_integer('train_images', 8458, 'Training images (AADB: 8,458).')
_EPOCHS = flags.DEFINE_integer('epochs', 3, 'Stage 2 epochs (paper: 3).')
PREFIX_END = 'block4_conv1'
BATCH = 1


def flops(fn, *args):
  """XLA's FLOP count of fn(*args), compiled."""
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def stage2_loss(model, labels, from_prefix):
  """MSE of the stage-2 model on images, or on cached prefix activations."""
  def loss(params, x, target):
    params = optim.stop_frozen_gradients(params, labels)
    if from_prefix:
      features = model.apply({'params': params}, x, start_after=PREFIX_END,
                             method=model.features_from)
    else:
      features = model.apply({'params': params}, x, method=model.features)
    pred = model.apply({'params': params}, features, False, method=model.head_only)
    return jnp.mean((pred - target) ** 2)
  return jax.grad(loss)


def main(argv):
  del argv
  size = _IMAGE_SIZE.value
  config = aadb.get_config()
  config.dataset.image_size = size
  plan = plan_lib.resolve(config, backend='cpu')
  model = model_lib.build_model(plan.model)
  params = model_lib.init_params(model, jax.random.key(0), size)
  labels = optim.stage_labels(params, plan.stage('stage2').trainable_layers)
  images = jnp.zeros((BATCH, size, size, 3), jnp.uint8)
  prefix_shape = vgg16.layer_output_shape(size, PREFIX_END)
  prefix = jnp.zeros((BATCH,) + prefix_shape, jnp.float32)
  target = jnp.zeros((BATCH, 12), jnp.float32)

  step_images = flops(stage2_loss(model, labels, False), params, images, target)
  step_prefix = flops(stage2_loss(model, labels, True), params, prefix, target)
  fill = flops(lambda p, x: model.apply({'params': p}, x, stop_after=PREFIX_END,
                                        method=model.backbone_prefix), params, images)
  n, epochs = _TRAIN_IMAGES.value, _EPOCHS.value
  without = epochs * n * step_images
  with_cache = 2 * n * fill + epochs * n * step_prefix
  values = int(np.prod(prefix_shape))
  print(f'Stage 2 prefix cache at {size}x{size} ({n} training images, {epochs} epochs; '
        'GFLOP per image from XLA cost analysis)\n')
  print('| | GFLOP / image | Schedule TFLOP |')
  print('|---|---:|---:|')
  print(f'| stage 2 step from images | {step_images / 1e9:.2f} | {without / 1e12:.1f} |')
  print(f'| stage 2 step from cached {PREFIX_END} | {step_prefix / 1e9:.2f} | '
        f'{epochs * n * step_prefix / 1e12:.1f} |')
  print(f'| filling the cache (2 prefix passes) | {2 * fill / 1e9:.2f} | '
        f'{2 * n * fill / 1e12:.1f} |')
  print(f'| with the cache, in all | | {with_cache / 1e12:.1f} |')
  print(f'\nSaving on one stage-2 run: {100 * (1 - with_cache / without):.0f}% of its FLOPs; '
        f'on each further run that reuses the cache: '
        f'{100 * (1 - step_prefix / step_images):.0f}%.')
  print(f'Disk: {prefix_shape} per view = {values * 4 / 2**20:.2f} MiB float32 '
        f'({values * 2 / 2**20:.2f} MiB bfloat16); both flips of {n} images: '
        f'{2 * n * values * 4 / 2**30:.1f} GiB float32, '
        f'{2 * n * values * 2 / 2**30:.1f} GiB bfloat16.')


if __name__ == '__main__':
  app.run(main)
