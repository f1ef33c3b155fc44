"""VGG16 convolutional base, as Keras' `VGG16(include_top=False)`, in Flax Linen.

Layer names match Keras (`block1_conv1` ... `block5_pool`) so that Keras weight
files convert by name, and so that training stages can select layers by name.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

# (filters, convolutions) of the five blocks.
BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# Keras' 'caffe' preprocessing: ImageNet channel means in BGR order.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
KERNEL_SIZE = (3, 3)
POOL_SIZE = (2, 2)


def layer_sequence():
  """All layers in order as (name, filters); filters is None for a max pool."""
  layers = []
  for block, (filters, convs) in enumerate(BLOCKS, start=1):
    layers += [(f'block{block}_conv{i}', filters) for i in range(1, convs + 1)]
    layers.append((f'block{block}_pool', None))
  return tuple(layers)


LAYERS = layer_sequence()
LAYER_NAMES = tuple(name for name, _ in LAYERS)
CONV_LAYER_NAMES = tuple(name for name, filters in LAYERS if filters)
OUTPUT_FEATURES = BLOCKS[-1][0]


def preprocess_input(images):
  """uint8 RGB [..., H, W, 3] -> float32 BGR minus the ImageNet mean, unscaled.

  The same numbers as `keras.applications.vgg16.preprocess_input`.
  """
  # lax.rev, not x[..., ::-1]: the same values, but one StableHLO reverse that
  # exporters (TFLite's converter) take, where a negative-step slice of a
  # batch of unknown size becomes a dynamic gather they do not.
  x = jax.lax.rev(jnp.asarray(images, jnp.float32), (jnp.ndim(images) - 1,))
  return x - jnp.asarray(IMAGENET_MEAN_BGR, jnp.float32)


@jax.custom_vjp
def max_pool(x):
  """Keras' MaxPooling2D((2, 2)) ('valid': an odd last row or column is dropped).

  The same values and gradients as `nn.max_pool` (a tie sends the gradient
  to the first maximum in row-major order, as XLA's select-and-scatter does),
  but the gradient is one elementwise pass: XLA:CPU's select-and-scatter took
  6.7 ms for a 32x8x8x512 batch, this takes 0.35 ms.
  """
  return _windows(x).max(axis=(2, 4))


def _windows(x):
  """[B, H, W, C] -> [B, H/2, 2, W/2, 2, C], odd edges cropped."""
  b, h, w, c = x.shape
  ph, pw = POOL_SIZE
  x = x[:, :h // ph * ph, :w // pw * pw]
  return x.reshape(b, h // ph, ph, w // pw, pw, c)


def _max_pool_fwd(x):
  y = max_pool(x)
  return y, (x, y)


def _max_pool_bwd(residuals, g):
  x, y = residuals
  is_max = _windows(x) == y[:, :, None, :, None, :]
  taken = jnp.zeros_like(is_max[:, :, 0, :, 0])
  first = [[None] * POOL_SIZE[1] for _ in range(POOL_SIZE[0])]
  for i in range(POOL_SIZE[0]):  # Row-major: the first maximum takes the gradient.
    for j in range(POOL_SIZE[1]):
      first[i][j] = is_max[:, :, i, :, j] & ~taken
      taken = taken | is_max[:, :, i, :, j]
  mask = jnp.stack([jnp.stack(row, axis=3) for row in first], axis=2)
  dx = jnp.where(mask, g[:, :, None, :, None, :], 0).astype(x.dtype)
  b, h, w, c = x.shape
  dx = dx.reshape(b, dx.shape[1] * POOL_SIZE[0], dx.shape[3] * POOL_SIZE[1], c)
  return (jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def _layer_range(start_after, stop_after):
  """Indices [begin, end) of LAYERS to run between two layer names."""
  begin = 0 if start_after is None else LAYER_NAMES.index(start_after) + 1
  end = len(LAYERS) if stop_after is None else LAYER_NAMES.index(stop_after) + 1
  if begin > end:
    raise ValueError(f'Layer {start_after!r} comes after {stop_after!r}.')
  return begin, end


class VGG16(nn.Module):
  """The five conv blocks; input is preprocessed float [B, H, W, 3].

  `start_after`/`stop_after` run a contiguous slice of the network: the input
  is then the output of layer `start_after`, and the result is the output of
  `stop_after` (default: `block5_pool`). Parameters of layers outside the
  slice are neither used nor needed.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, start_after: Optional[str] = None,
               stop_after: Optional[str] = None):
    begin, end = _layer_range(start_after, stop_after)
    x = x.astype(self.dtype)
    for name, filters in LAYERS[begin:end]:
      if filters is None:
        x = max_pool(x)
      else:
        x = nn.Conv(filters, KERNEL_SIZE, padding='SAME', dtype=self.dtype,
                    param_dtype=jnp.float32, name=name,
                    kernel_init=nn.initializers.glorot_uniform(),
                    bias_init=nn.initializers.zeros)(x)
        x = nn.relu(x)
    return x


def layer_output_shape(image_size, layer):
  """Spatial size and channels of `layer`'s output for a square input."""
  size = image_size
  channels = 3
  for name, filters in LAYERS[:LAYER_NAMES.index(layer) + 1]:
    if filters is None:
      size //= POOL_SIZE[0]
    else:
      channels = filters
  return (size, size, channels)

