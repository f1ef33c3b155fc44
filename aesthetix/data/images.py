"""Any photo -> the uint8 RGB pixels the model sees, as training saw its images.

Every format Pillow reads (EXIF orientation applied; grayscale, CMYK, RGBA,
16-bit and palette images converted, transparency on white), resized by the
project's one resize (`input_pipeline.resize_image`), so that a photo is seen
as the test images were. Scoring, Grad-CAM and the Python API all read
photos through here.
"""

import os

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from aesthetix.data import input_pipeline
from aesthetix.runtime import errors

# Transparent pixels are shown on white, as a photo on a page or a screen.
BACKGROUND = (255, 255, 255)
# Pillow's modes of one 16-bit (or wider integer) channel.
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
SIXTEEN_TO_EIGHT_BITS = 257.0  # 65535 / 255.

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
  """
  if image.mode in SIXTEEN_BIT_MODES or image.mode == 'F':
    pixels = np.asarray(image, np.float64)
    if image.mode in SIXTEEN_BIT_MODES:
      pixels = pixels / SIXTEEN_TO_EIGHT_BITS
    elif pixels.size and np.nanmax(pixels) <= 1.0:
      pixels = pixels * 255.0
    gray = np.clip(np.round(np.nan_to_num(pixels)), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if image.mode in ('RGBA', 'LA', 'PA', 'La', 'RGBa') or 'transparency' in image.info:
    rgba = image.convert('RGBA')
    background = Image.new('RGBA', rgba.size, BACKGROUND + (255,))
    image = Image.alpha_composite(background, rgba)
  return np.asarray(image.convert('RGB'), np.uint8)


def load_image(path):
  """Any image Pillow reads -> uint8 RGB [H, W, 3], upright.

  The EXIF orientation is applied; of an animation or a multi-page file, the
  first frame is used. Raises `ImageError` (naming the file) otherwise.
  """
  try:
    if os.path.getsize(path) == 0:
      raise ImageError(path, 'empty file')
    with Image.open(path) as image:
      image.seek(0)
      return to_rgb(ImageOps.exif_transpose(image))
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


def model_input(pixels, data):
  """uint8 [H, W, 3] -> uint8 [S, S, 3], resized as the training images of
  `data` (a DataSpec) were."""
  return np.asarray(input_pipeline.resize_image(pixels, data.image_size, data.resize_method))


def load(path):
  """(uint8 RGB [H, W, 3], '') or (None, reason) for one file."""
  try:
    return load_image(path), ''
  except ImageError as e:
    return None, e.reason
