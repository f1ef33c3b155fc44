"""Bounded memory per photo: photos over the pixel limit are refused unread, and
the banded conversion gives the pixels of the former whole-image one, bit for bit."""

import tracemalloc

import numpy as np
from PIL import Image
from PIL import ImageFile
from PIL import ImageOps
import pytest

from aesthetix.data import images

EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6
SMALL_BANDS = 1000  # Pixels per band in the tests: several bands and a short last one.
# The former conversion keeps a float64 copy of a 16-bit image (8 bytes per
# pixel); the banded one keeps the uint8 result (3) and bands of SMALL_BANDS.
MAX_TRACED_BYTES_PER_PIXEL = 3.5


def old_to_rgb(image):
  """aesthetix.images.to_rgb before the bands (commit 6c173ea), verbatim."""
  if image.mode in images.SIXTEEN_BIT_MODES or image.mode == 'F':
    pixels = np.asarray(image, np.float64)
    if image.mode in images.SIXTEEN_BIT_MODES:
      pixels = pixels / images.SIXTEEN_TO_EIGHT_BITS
    elif pixels.size and np.nanmax(pixels) <= 1.0:
      pixels = pixels * 255.0
    gray = np.clip(np.round(np.nan_to_num(pixels)), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if image.mode in ('RGBA', 'LA', 'PA', 'La', 'RGBa') or 'transparency' in image.info:
    rgba = image.convert('RGBA')
    background = Image.new('RGBA', rgba.size, images.BACKGROUND + (255,))
    image = Image.alpha_composite(background, rgba)
  return np.asarray(image.convert('RGB'), np.uint8)


def old_load_image(path):
  """The former load_image's pixels: the whole image decoded, turned upright, converted."""
  with Image.open(path) as image:
    image.seek(0)
    return old_to_rgb(ImageOps.exif_transpose(image))


def noise(shape, seed, dtype=np.uint8, high=256, low=0):
  return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


def images_of_every_mode():
  """{name: Pillow image}: every mode and kind of transparency to_rgb handles,
  37 x 29 pixels (odd, so bands end short)."""
  shape, out = (29, 37), {}
  rgb = Image.fromarray(noise(shape + (3,), 0))
  out['RGB'] = rgb
  out['L'] = Image.fromarray(noise(shape, 1))
  out['1'] = out['L'].convert('1')
  out['CMYK'] = rgb.convert('CMYK')
  out['YCbCr'] = rgb.convert('YCbCr')
  out['RGBA'] = Image.fromarray(noise(shape + (4,), 2))
  out['LA'] = out['RGBA'].convert('LA')
  out['La'] = out['RGBA'].convert('La')
  out['RGBa'] = out['RGBA'].convert('RGBa')
  out['P'] = rgb.quantize(64)
  out['PA'] = out['RGBA'].convert('PA')
  out['P, transparent index'] = out['P'].copy()
  out['P, transparent index'].info['transparency'] = 3
  out['RGB, transparent colour'] = rgb.copy()
  out['RGB, transparent colour'].info['transparency'] = tuple(int(c) for c in
                                                              np.asarray(rgb)[0, 0])
  out['L, transparent value'] = out['L'].copy()
  out['L, transparent value'].info['transparency'] = int(np.asarray(out['L'])[0, 0])
  out['I;16'] = Image.fromarray(noise(shape, 3, np.uint16, 65536))
  big_endian = noise(shape, 7, np.uint16, 65536).astype('>u2')
  out['I;16B'] = Image.frombytes('I;16B', shape[::-1], big_endian.tobytes())
  out['I'] = Image.fromarray(noise(shape, 4, np.int32, 200_000, -100_000))
  unit = np.random.default_rng(5).uniform(0, 1, shape).astype(np.float32)
  out['F in [0, 1]'] = Image.fromarray(unit)
  out['F in [0, 255]'] = Image.fromarray(unit * 300 - 20)
  with_nan = unit.copy()
  with_nan[::3, ::2] = np.nan
  with_nan[1, 1] = np.inf
  out['F with NaN and inf'] = Image.fromarray(with_nan)
  out['F with NaN, else in [0, 1]'] = Image.fromarray(np.where(np.isinf(with_nan), 0.5,
                                                               with_nan).astype(np.float32))
  out['F all NaN'] = Image.fromarray(np.full(shape, np.nan, np.float32))
  return out


@pytest.fixture
def small_bands(monkeypatch):
  monkeypatch.setattr(images, 'BAND_PIXELS', SMALL_BANDS)


def save(tmp_path, name, pixels, **options):
  path = tmp_path / name
  Image.fromarray(pixels).save(path, **options)
  return path


def test_a_photo_over_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
  path = save(tmp_path, 'big.jpg', noise((300, 300, 3), 0))
  monkeypatch.setattr(images, 'MAX_PIXELS', 50_000)
  decodes = []
  real_load = ImageFile.ImageFile.load
  monkeypatch.setattr(ImageFile.ImageFile, 'load',
                      lambda self: decodes.append(self) or real_load(self))
  reason = '300 x 300 pixels is more than the limit of 0.05 megapixels'
  with pytest.raises(images.ImageError, match=reason) as e:
    images.load_image(path)
  assert str(path) in str(e.value)
  pixels, why = images.load(path)  # As scoring reads it: a row with the reason.
  assert pixels is None and why.startswith(reason)
  assert decodes == []
  at_the_limit = images.load_image(path, max_pixels=300 * 300)  # Read, and decoded.
  assert decodes
  np.testing.assert_array_equal(at_the_limit, old_load_image(path))


def test_ordinary_photos_load_bit_for_bit_as_before(tmp_path, small_bands):
  rgb = noise((45, 61, 3), 1)
  exif = Image.Exif()
  exif[EXIF_ORIENTATION] = ROTATED_90_CW
  paths = [save(tmp_path, 'photo.jpg', rgb, quality=90),
           save(tmp_path, 'photo.png', rgb),
           save(tmp_path, 'sideways.jpg', rgb, exif=exif),
           save(tmp_path, 'sideways.png', rgb, exif=exif),
           save(tmp_path, 'gray.jpg', rgb[..., 0]),
           save(tmp_path, 'rgba.webp', noise((45, 61, 4), 2), lossless=True)]
  for path in paths:
    with Image.open(path) as image:  # The former path of ordinary photos.
      before = np.asarray(ImageOps.exif_transpose(image).convert('RGB'))
    if 'rgba' not in path.name:
      np.testing.assert_array_equal(images.load_image(path), before, err_msg=path.name)
    np.testing.assert_array_equal(images.load_image(path), old_load_image(path),
                                  err_msg=path.name)
  assert images.load_image(tmp_path / 'sideways.jpg').shape == (61, 45, 3)


# The former code warns of the all-NaN image (np.nanmax); the banded one does not.
@pytest.mark.filterwarnings('ignore:All-NaN slice encountered:RuntimeWarning')
@pytest.mark.parametrize('bands', ['default', 'small'])
def test_every_mode_converts_bit_for_bit_as_before(bands, monkeypatch):
  if bands == 'small':
    monkeypatch.setattr(images, 'BAND_PIXELS', SMALL_BANDS)
  every = images_of_every_mode()
  assert len(every) == 22
  refused = set()
  for name, image in every.items():
    try:
      before = old_to_rgb(image)
    except ValueError as e:  # Pillow converts no 'La' to RGBA: an error, as before.
      with pytest.raises(type(e), match=str(e)):
        images.to_rgb(image)
      refused.add(name)
      continue
    after = images.to_rgb(image)
    assert after.dtype == np.uint8 and after.shape == (29, 37, 3), name
    np.testing.assert_array_equal(after, before, err_msg=name)
  assert refused == {'La'}


def test_every_16_bit_value_converts_as_before(tmp_path, small_bands):
  values = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)
  path = tmp_path / 'sixteen_bit.png'
  Image.fromarray(values).save(path)
  with Image.open(path) as image:
    assert image.mode in images.SIXTEEN_BIT_MODES
  after = images.load_image(path)
  np.testing.assert_array_equal(after, old_load_image(path))
  # 257 values to a level, half a level's worth rounding each way.
  np.testing.assert_array_equal(after[..., 0].ravel(),
                                ((values.ravel().astype(np.int64) + 128) // 257))
  extremes = np.array([[-2**31, -1, 0, 128, 129, 65535, 65536, 2**31 - 1]], np.int32)
  np.testing.assert_array_equal(images.to_rgb(Image.fromarray(extremes)),
                                old_to_rgb(Image.fromarray(extremes)))


def test_the_conversion_keeps_no_full_size_float_copy(small_bands):
  image = Image.fromarray(noise((500, 400), 6, np.uint16, 65536))
  tracemalloc.start()
  try:
    rgb = images.to_rgb(image)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  pixels = 500 * 400
  assert rgb.nbytes == 3 * pixels
  assert peak < MAX_TRACED_BYTES_PER_PIXEL * pixels, peak / pixels
  tracemalloc.start()  # The former conversion, measured the same way.
  try:
    old_to_rgb(image)
    _, old_peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert old_peak > 8 * pixels
