"""Any photo -> the uint8 RGB pixels the model sees, as training saw its images.

Every format Pillow reads (EXIF orientation applied; grayscale, CMYK, RGBA,
16-bit and palette images converted, transparency on white), resized by the
project's one resize (`resize.resize`: NumPy, the bytes of training's
tf.image.resize), so that a photo is seen as the test images were. Scoring,
Grad-CAM and the Python API all read photos through here, without TensorFlow.
"""

import os

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from aesthetix.data import resize
from aesthetix.runtime import errors

# Transparent pixels are shown on white, as a photo on a page or a screen.
BACKGROUND = (255, 255, 255)
# Pillow's modes of one 16-bit (or wider integer) channel.
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
SIXTEEN_TO_EIGHT_BITS = 257.0  # 65535 / 255.
# Modes with an alpha channel (composited on BACKGROUND).
ALPHA_MODES = ('RGBA', 'LA', 'PA', 'La', 'RGBa')
# The most pixels a photo read from a file may have; larger ones are refused
# from their header, unread (see `load_image`). 50 megapixels holds phones'
# 48 MP photos (8064 x 6048) and 45 MP full-frame cameras, and keeps one
# photo's load near 0.4 GB (see `load_image`); far below Pillow's
# decompression-bomb limit (179 MP).
MAX_PIXELS = 50_000_000
# Pixels `to_rgb` converts at a time (whole rows): its temporaries stay about
# this size whatever the photo's, so that the result is its one full-size array.
BAND_PIXELS = 1 << 20

class ImageError(errors.UserError, ValueError):
  """A file that is not an image Pillow can read; `reason` says why."""

  def __init__(self, path, reason):
    super().__init__(f'{path}: {reason}')
    self.path = path
    self.reason = reason


def to_rgb(image):
  """A Pillow image of any mode -> uint8 RGB [H, W, 3].

  16-bit channels are scaled to 8 bits, float ones read as [0, 1] (or [0, 255]
  when larger values occur), transparency is composited on `BACKGROUND`,
  CMYK, palette, grayscale and bilevel images are converted by Pillow.
  Every conversion is per pixel, so it is made on bands of rows of about
  `BAND_PIXELS` pixels: beside `image`, only the result (3 bytes per pixel)
  is of full size (no float64 copy of a 16-bit or float image: 8 bytes per pixel).
  """
  convert = _band_converter(image)
  width, height = image.size
  rgb = np.empty((height, width, 3), np.uint8)
  for top, bottom, band in _row_bands(image):
    rgb[top:bottom] = convert(band)
  return rgb


def _row_bands(image):
  """(top, bottom, the Pillow image of rows [top, bottom)) of `image`, in
  order, each of about `BAND_PIXELS` pixels (at least one row)."""
  width, height = image.size
  rows = max(1, BAND_PIXELS // max(width, 1))
  for top in range(0, height, rows):
    bottom = min(top + rows, height)
    yield top, bottom, image.crop((0, top, width, bottom))


def _band_converter(image):
  """The function of a band of `image` (a Pillow image of its mode) -> uint8 RGB."""
  if image.mode in SIXTEEN_BIT_MODES:
    return lambda band: _gray_to_rgb(np.asarray(band, np.float64) / SIXTEEN_TO_EIGHT_BITS)
  if image.mode == 'F':
    if _float_max(image) <= 1.0:  # NaN (no numbers at all) is not: left as it is.
      return lambda band: _gray_to_rgb(np.asarray(band, np.float64) * 255.0)
    return lambda band: _gray_to_rgb(np.asarray(band, np.float64))
  if image.mode in ALPHA_MODES or 'transparency' in image.info:
    return _on_background
  return lambda band: np.asarray(band.convert('RGB'), np.uint8)


def _gray_to_rgb(pixels):
  """float [h, w] in 8-bit units (NaN: 0) -> uint8 [h, w, 1], rounded and clipped
  (broadcast to the 3 channels where it is stored)."""
  return np.clip(np.round(np.nan_to_num(pixels)), 0, 255).astype(np.uint8)[..., None]


def _float_max(image):
  """The largest number in a float ('F') image, NaN where it has none."""
  largest = np.nan
  for _, _, band in _row_bands(image):
    largest = np.fmax(largest, np.fmax.reduce(np.asarray(band), axis=None, initial=np.nan))
  return largest


def _on_background(band):
  """A band with transparency (alpha or a transparent colour) -> uint8 RGB on `BACKGROUND`."""
  rgba = band.convert('RGBA')
  background = Image.new('RGBA', rgba.size, BACKGROUND + (255,))
  return np.asarray(Image.alpha_composite(background, rgba).convert('RGB'), np.uint8)


def load_image(path, max_pixels=None):
  """Any image Pillow reads -> uint8 RGB [H, W, 3], upright.

  The EXIF orientation is applied; of an animation or a multi-page file, the
  first frame is used. Raises `ImageError` (naming the file) otherwise.

  Memory is bounded per photo: one of more than `max_pixels` pixels (default
  `MAX_PIXELS`) is refused from its header (Pillow reads the size before it
  decodes anything), so it is never decoded; scoring writes the reason in its
  row. Up to the limit a photo is decoded at full size, as training decodes
  its images, so the model sees it as it saw them. Peak memory of loading one
  photo is at most about 8 bytes per pixel of the limit (Pillow's decode, 4
  bytes per pixel for RGB and most modes, and the result, 3; or two decodes
  while an EXIF rotation is applied): about 0.4 GB at the default limit.
  Measured (`python -m bench.image_memory`): 7.2-7.5 bytes per pixel for
  JPEGs, 8.0 with an EXIF rotation, 6.1 for a 16-bit PNG; about 9.5 with the
  resize to the model's input that scoring adds.

  Large JPEGs are not decoded at a reduced size (Pillow's `Image.draft`, a DCT
  scale of 1/2 to 1/8), which would fit them under the limit: such a decode
  gives other pixels than the full decode training made, so the model would
  not see the photo as it saw its training images. The user who scales a
  photo down to score it does so knowingly.
  """
  max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
  try:
    if os.path.getsize(path) == 0:
      raise ImageError(path, 'empty file')
    with Image.open(path) as image:
      image.seek(0)
      _check_size(path, image.size, max_pixels)
      ImageOps.exif_transpose(image, in_place=True)  # No copy when it is upright.
      return to_rgb(image)
  except ImageError:
    raise
  except UnidentifiedImageError as e:
    raise ImageError(path, 'not an image Pillow can read (unknown format or '
                     'not an image file)') from e
  # Broken files make Pillow's decoders raise many kinds of errors (OSError,
  # SyntaxError, struct.error, EOFError, DecompressionBombError, ...): all of
  # them mean "this file cannot be scored", and none may stop the others.
  except Exception as e:  # pylint: disable=broad-except
    raise ImageError(path, f'cannot read the image ({type(e).__name__}: {e})') from e


def _check_size(path, size, max_pixels):
  """Raises `ImageError` when `size` (width, height) has more than `max_pixels` pixels."""
  width, height = size
  if width * height > max_pixels:
    raise ImageError(
        path, f'{width} x {height} pixels is more than the limit of {max_pixels / 1e6:g} '
        'megapixels, which bounds the memory one photo takes; save a smaller copy to '
        'score it')


def model_input(pixels, data):
  """uint8 [H, W, 3] -> uint8 [S, S, 3], resized as the training images of
  `data` (a DataSpec) were: by `resize.resize`, which computes the bytes of
  training's tf.image.resize; a resize method it does not run falls back to
  TensorFlow's own (the one case where scoring imports TensorFlow)."""
  if data.resize_method in resize.SUPPORTED_METHODS:
    return resize.resize(pixels, data.image_size, data.resize_method)
  return np.asarray(resize.tf_resize(pixels, data.image_size, data.resize_method))


def load(path):
  """(uint8 RGB [H, W, 3], '') or (None, reason) for one file."""
  try:
    return load_image(path), ''
  except ImageError as e:
    return None, e.reason
