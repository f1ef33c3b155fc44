"""The project's one image resize: TensorFlow's, and the same bytes in NumPy.

`tf_resize(image, size, method)` is the resize of training and evaluation
(inside tf.data) and of the SavedModel's bytes signature: `tf.image.resize` v2
without antialiasing, rounded half to even, clipped, cast to uint8.
`resize(image, size, method)` gives exactly its pixels in NumPy, so that
scoring sees a photo as training saw its images without importing TensorFlow
(which `tf_resize` imports only when called).

It mirrors TensorFlow's CPU kernels (tensorflow/core/kernels/image/
resize_bilinear_op.cc and resize_nearest_neighbor_op.cc, with
half_pixel_centers=True and align_corners=False, as v2 calls them): every
float32 operation is done in float32, in the kernel's order, one NumPy ufunc
each, so nothing is promoted to float64 or fused into a multiply-add. The
x86-64 wheel of TensorFlow (2.21) computes with separate AVX multiplies and
adds, no FMA (its disassembly); a build that fuses `a + b * c` (aarch64
compilers may) would round differently in rare ties.

Only the output pixels' neighbours are read: they are gathered as uint8 with
indices computed once per axis, and no float copy of the input is made (an
input that is a strided view, such as a crop, is first copied as uint8).
"""

import numbers

import numpy as np

# The tf.image.resize methods this module runs, bit for bit.
SUPPORTED_METHODS = ('bilinear', 'nearest')
# Every method name tf.image.resize (v2) accepts (tf.image.ResizeMethod).
TF_METHODS = ('area', 'bicubic', 'bilinear', 'gaussian', 'lanczos3', 'lanczos5',
              'mitchellcubic', 'nearest')
# Pixel centres sit at i + 0.5 (half_pixel_centers=True).
_HALF = np.float32(0.5)
_PIXEL_MIN, _PIXEL_MAX = 0, 255


def check_method(method):
  """Raises ValueError unless `method` is one of `SUPPORTED_METHODS`."""
  if method in SUPPORTED_METHODS:
    return
  known = ('a tf.image.resize method that needs TensorFlow' if method in TF_METHODS
           else 'not a tf.image.resize method')
  raise ValueError(f'Resize method {method!r} is {known}; without TensorFlow only '
                   f'{", ".join(SUPPORTED_METHODS)} run (aesthetix.data.resize).')


def resize_scale(in_size, out_size):
  """float32 input pixels per output pixel (the kernels' CalculateResizeScale)."""
  return np.float32(in_size) / np.float32(out_size)


def bilinear_taps(in_size, out_size):
  """The two source indices and the weight of the upper one, per output pixel.

  Returns (lower, upper) int64 [out_size] in [0, in_size) and lerp float32
  [out_size] in [0, 1): the kernel's compute_interpolation_weights with its
  HalfPixelScaler, source = (i + 0.5) * scale - 0.5 in float32.
  """
  centres = np.arange(out_size, dtype=np.float32) + _HALF
  source = centres * resize_scale(in_size, out_size) - _HALF
  floor = np.floor(source)
  lower = np.maximum(floor.astype(np.int64), 0)
  upper = np.minimum(np.ceil(source).astype(np.int64), in_size - 1)
  # Newer kernels also clamp lower to upper; the half-pixel source never
  # reaches in_size, so this changes nothing and keeps every index in range.
  lower = np.minimum(lower, upper)
  return lower, upper, source - floor


def nearest_indices(in_size, out_size):
  """int64 [out_size] source index per output pixel: floor((i + 0.5) * scale),
  clamped to [0, in_size) (the kernel's HalfPixelScalerForNN)."""
  centres = np.arange(out_size, dtype=np.float32) + _HALF
  source = np.floor(centres * resize_scale(in_size, out_size)).astype(np.int64)
  return np.clip(source, 0, in_size - 1)


def _lerp(start, end, weight):
  """float32 start + (end - start) * weight, rounded after each operation."""
  return start + (end - start) * weight


def bilinear(image, height, width):
  """uint8 [H, W, C] -> float32 [height, width, C], as ResizeBilinear computes it."""
  in_height, in_width, channels = image.shape
  if (in_height, in_width) == (height, width):  # The kernel's no-op path: a cast.
    return image.astype(np.float32)
  y_lower, y_upper, y_lerp = bilinear_taps(in_height, height)
  x_lower, x_upper, x_lerp = bilinear_taps(in_width, width)
  pixels = image.reshape(in_height * in_width, channels)

  def corner(ys, xs):
    """float32 [height, width * C]: the pixels at (ys[i], xs[j]), gathered as uint8."""
    flat_index = ys[:, None] * in_width + xs[None, :]
    gathered = np.take(pixels, flat_index, axis=0)
    return gathered.reshape(height, width * channels).astype(np.float32)

  # Rows of width * C values (one weight per value): long inner loops.
  x_weight = np.repeat(x_lerp, channels)
  top = _lerp(corner(y_lower, x_lower), corner(y_lower, x_upper), x_weight)
  bottom = _lerp(corner(y_upper, x_lower), corner(y_upper, x_upper), x_weight)
  return _lerp(top, bottom, y_lerp[:, None]).reshape(height, width, channels)


def nearest(image, height, width):
  """uint8 [H, W, C] -> uint8 [height, width, C], as ResizeNearestNeighbor does."""
  ys = nearest_indices(image.shape[0], height)
  xs = nearest_indices(image.shape[1], width)
  return image[ys[:, None], xs[None, :]]


def to_uint8(pixels):
  """float32 [...] -> uint8: rounded half to even (tf.round), clipped to 0-255."""
  return np.clip(np.rint(pixels), _PIXEL_MIN, _PIXEL_MAX).astype(np.uint8)


def resize(image, size, method='bilinear'):
  """uint8 [H, W, C] (RGB: C = 3) -> uint8 [size, size, C].

  Bit-identical to `np.asarray(tf_resize(image, size, method))` on
  TensorFlow's x86 CPU kernels. `method` is one of
  `SUPPORTED_METHODS`; any other raises ValueError (see `check_method`).
  """
  check_method(method)
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or 0 in image.shape:
    raise ValueError(f'resize takes a non-empty uint8 [H, W, C] image, not '
                     f'{image.dtype} {list(image.shape)}.')
  if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
    raise ValueError(f'resize takes a positive whole size in pixels, not {size!r}.')
  size = int(size)
  if method == 'nearest':
    return nearest(image, size, size)
  return to_uint8(bilinear(image, size, size))


def tf_resize(image, size, method='bilinear'):
  """Decoded uint8 RGB [H, W, 3] (a tensor or array) -> uint8 [size, size, 3]
  tensor, rounded and clipped: TensorFlow's own resize, in graphs and eagerly."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = tf.image.resize(image, [size, size], method=method)
  return tf.cast(tf.clip_by_value(tf.round(image), _PIXEL_MIN, _PIXEL_MAX), tf.uint8)
