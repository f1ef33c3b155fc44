"""Tests for aesthetix/data/resize.py: bit for bit `resize.tf_resize`.

Every comparison runs TensorFlow's own resize (`resize.tf_resize`,
the function training uses) on the same uint8 image and asserts that no
output value differs (max abs difference 0, differing values 0); each test
asserts how many values it compared, and prints it (`pytest -s`).

The images:
- uniform random uint8 images of many shapes (phone photos, AADB's warped
  256x256, upscales, 1xN and Nx1, sizes equal to the input, exactly 2x down
  and 4x up, whose weights of 0.5 and 0.125, 0.375, ... make rounding ties);
- photo-like content made here: the synthetic dataset's scenes
  (data_builders/synthetic_aesthetics/scene.py: gradients, most with a
  soft-edged subject, stripes, blur, saturated highlights) enlarged with Pillow to
  phone-photo shapes, with sensor-like noise, JPEG-encoded and decoded with
  Pillow; smooth ramps with noise at many sizes;
- real photos shipped with matplotlib (a requirement of the project, so
  always installed; nothing is skipped): `grace_hopper.jpg` (the US Navy's
  public-domain portrait of Grace Hopper, 512x600 JPEG) and the Jacksboro
  fault elevation map (`jacksboro_fault_dem.npz`, a real terrain survey),
  hill-shaded with matplotlib into an RGB image. They are read from
  matplotlib's sample data, not copied into the repository.
"""

import io
import os
import subprocess
import sys

from matplotlib import cbook
from matplotlib import colormaps
from matplotlib import colors
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from aesthetix.data import resize
from data_builders.synthetic_aesthetics import scene

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = resize.SUPPORTED_METHODS
JPEG_QUALITY = 90  # A phone camera's usual quality.
SENSOR_NOISE = 3.0  # Std of the noise added to photo-like images, in 0-255 units.
# (input height, input width, output size)
RANDOM_CASES = (
    (3000, 4000, 224),  # A landscape phone photo.
    (4000, 3000, 224),  # A portrait one.
    (256, 256, 224),    # AADB's warped images.
    (256, 256, 128),    # Exactly 2x: weights of 0.5, ties in every other value.
    (64, 64, 256),      # Exactly 4x up: weights 0.125, 0.375, ...
    (37, 53, 64),       # Upscaling a non-square image.
    (1, 97, 32), (97, 1, 32), (1, 1, 224), (1, 1, 1),  # 1xN, Nx1, a single pixel.
    (2, 2, 1), (100, 100, 1), (3, 5, 7),  # Size 1 outputs, tiny inputs.
    (224, 224, 224), (5, 5, 5),           # Same size: the kernel's no-op path.
    (224, 300, 224), (300, 224, 224),     # One side the same size.
    (223, 225, 224), (500, 333, 299), (1080, 1920, 32), (7, 1000, 64),
)
PHOTO_SHAPES = ((3000, 4000), (4032, 3024), (1080, 1920), (600, 512), (256, 256),
                (333, 500), (96, 128), (31, 17))
OUTPUT_SIZES = (224, 32, 300)


def compare(image, size, method):
  """Asserts resize == resize.tf_resize; returns how many values were compared."""
  expected = np.asarray(resize.tf_resize(image, size, method))
  actual = resize.resize(image, size, method)
  assert actual.dtype == expected.dtype == np.uint8
  assert actual.shape == expected.shape == (size, size, image.shape[2])
  difference = np.abs(actual.astype(np.int32) - expected.astype(np.int32))
  where = f'{list(image.shape)} -> {size} ({method})'
  assert difference.max() == 0, where
  assert np.count_nonzero(difference) == 0, where
  return expected.size


def jpeg_round_trip(pixels):
  """uint8 [H, W, 3] -> the same, JPEG-encoded and decoded by Pillow."""
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=JPEG_QUALITY)
  return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert('RGB'))


def photo_like(rng, height, width):
  """uint8 [height, width, 3]: a synthetic scene, enlarged, noisy, through JPEG."""
  rendered = scene.render(rng, min(512, max(height, width)))
  pixels = Image.fromarray(np.round(rendered * 255).astype(np.uint8))
  pixels = np.asarray(pixels.resize((width, height), Image.Resampling.BICUBIC), np.float32)
  noisy = pixels + SENSOR_NOISE * rng.standard_normal(pixels.shape, np.float32)
  return jpeg_round_trip(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def ramps(rng, height, width):
  """uint8 [height, width, 3]: a smooth ramp per channel (horizontal, vertical,
  diagonal, each over most of 0-255), with noise."""
  y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
  x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
  smooth = np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1) * 250.0 + 2.0
  noisy = smooth + SENSOR_NOISE * rng.standard_normal(smooth.shape, np.float32)
  return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def grace_hopper():
  """uint8 [600, 512, 3]: matplotlib's sample photo, decoded by Pillow."""
  path = cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def terrain():
  """uint8 [344, 403, 3]: a real elevation survey, hill-shaded in colour."""
  path = cbook.get_sample_data('jacksboro_fault_dem.npz', asfileobj=False)
  with np.load(path) as dem:
    elevation = dem['elevation'].astype(np.float64)
  shaded = colors.LightSource(azdeg=315, altdeg=45).shade(
      elevation, cmap=colormaps['gist_earth'], blend_mode='overlay')
  return np.round(shaded[..., :3] * 255).astype(np.uint8)


@pytest.mark.parametrize('method', METHODS)
def test_random_images_of_many_shapes_match_tensorflow(method):
  rng = np.random.default_rng(0)
  checked = sum(compare(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), size, method)
                for h, w, size in RANDOM_CASES)
  assert checked == 3 * sum(size * size for _, _, size in RANDOM_CASES)
  print(f'random images, {method}: {checked} values equal')


@pytest.mark.parametrize('method', METHODS)
def test_flat_black_and_white_images_stay_flat(method):
  checked = 0
  for value in (0, 255):
    image = np.full((123, 77, 3), value, np.uint8)
    checked += compare(image, 224, method)
    assert (resize.resize(image, 224, method) == value).all()
  assert checked == 2 * 224 * 224 * 3


@pytest.fixture(scope='module')
def photo_like_images():
  rng = np.random.default_rng(1)
  return [photo_like(rng, h, w) for h, w in PHOTO_SHAPES]


@pytest.mark.parametrize('method', METHODS)
def test_photo_like_scenes_through_jpeg_match_tensorflow(method, photo_like_images):
  checked = 0
  for image, shape in zip(photo_like_images, PHOTO_SHAPES):
    assert image.shape == shape + (3,)
    checked += sum(compare(image, size, method) for size in OUTPUT_SIZES)
  assert checked == len(PHOTO_SHAPES) * 3 * sum(s * s for s in OUTPUT_SIZES)
  print(f'photo-like scenes, {method}: {checked} values equal')


@pytest.mark.parametrize('method', METHODS)
def test_smooth_ramps_with_noise_match_tensorflow(method):
  rng = np.random.default_rng(2)
  shapes = ((2000, 1500), (256, 256), (480, 640), (57, 300), (9, 11), (1, 40))
  sizes = (224, 64, 1, 512)
  checked = sum(compare(ramps(rng, h, w), size, method) for h, w in shapes for size in sizes)
  assert checked == len(shapes) * 3 * sum(s * s for s in sizes)
  print(f'ramps, {method}: {checked} values equal')


@pytest.mark.parametrize('method', METHODS)
def test_real_photos_match_tensorflow(method):
  photos = {'grace_hopper.jpg': grace_hopper(), 'jacksboro_fault_dem.npz': terrain()}
  assert photos['grace_hopper.jpg'].shape == (600, 512, 3)
  assert photos['jacksboro_fault_dem.npz'].shape == (344, 403, 3)
  sizes = (224, 256, 1000, 31)
  checked = 0
  for image in photos.values():
    # The whole photo, a non-square crop and the photo as a JPEG again.
    for variant in (image, image[50:337, 20:400], jpeg_round_trip(image)):
      checked += sum(compare(variant, size, method) for size in sizes)
  assert checked == 2 * 3 * 3 * sum(s * s for s in sizes)
  print(f'real photos, {method}: {checked} values equal')


def test_other_channel_counts_match_tensorflow():
  rng = np.random.default_rng(3)
  checked = sum(compare(rng.integers(0, 256, (45, 71, c), dtype=np.uint8), 32, method)
                for c in (1, 2, 4) for method in METHODS)
  assert checked == 2 * 32 * 32 * (1 + 2 + 4)


def test_the_listed_methods_are_tensorflows():
  names = {getattr(tf.image.ResizeMethod, n) for n in dir(tf.image.ResizeMethod)
           if n.isupper()}
  assert set(resize.TF_METHODS) == names
  assert set(resize.SUPPORTED_METHODS) <= names


@pytest.mark.parametrize('method', sorted(set(resize.TF_METHODS) - set(METHODS)))
def test_methods_that_need_tensorflow_raise_naming_the_ones_that_run(method):
  image = np.zeros((8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match=f"'{method}' is a tf.image.resize method that "
                     'needs TensorFlow; without TensorFlow only bilinear, nearest run'):
    resize.resize(image, 4, method)


def test_an_unknown_method_raises():
  with pytest.raises(ValueError, match="'cubic' is not a tf.image.resize method"):
    resize.resize(np.zeros((8, 8, 3), np.uint8), 4, 'cubic')


@pytest.mark.parametrize('image, size, message', [
    (np.zeros((8, 8, 3), np.float32), 4, 'uint8'),
    (np.zeros((8, 8), np.uint8), 4, r'uint8 \[H, W, C\] image, not uint8 \[8, 8\]'),
    (np.zeros((0, 8, 3), np.uint8), 4, 'non-empty'),
    (np.zeros((8, 8, 3), np.uint8), 0, 'positive whole size'),
    (np.zeros((8, 8, 3), np.uint8), 4.5, 'positive whole size'),
])
def test_bad_inputs_raise(image, size, message):
  with pytest.raises(ValueError, match=message):
    resize.resize(image, size, 'bilinear')


# Fails the import of TensorFlow outright, and checks sys.modules afterwards.
NO_TENSORFLOW = """
import sys
class Refuse:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'keras'):
      raise ImportError('imported ' + name)
sys.meta_path.insert(0, Refuse())
import numpy as np
from aesthetix.data import resize
out = resize.resize(np.zeros((40, 30, 3), np.uint8), 16)
assert out.shape == (16, 16, 3), out.shape
assert not [m for m in sys.modules if m.split('.')[0] == 'tensorflow']
print('ok')
"""


def test_importing_and_running_it_imports_no_tensorflow():
  result = subprocess.run([sys.executable, '-c', NO_TENSORFLOW], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'PYTHONPATH': REPO})
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'ok'


def test_speed_table_has_a_row_per_shape_with_the_same_bytes():
  from bench import resize_speed  # pylint: disable=g-import-not-at-top
  shapes = ((40, 30), (16, 16))
  rows = resize_speed.speed_rows(shapes, 16, 'bilinear', runs=1)
  assert [r[0] for r in rows] == list(shapes)
  assert all(tf_ms > 0 and np_ms > 0 and same for _, tf_ms, np_ms, same in rows)
  lines = resize_speed.table(rows, 16, 'bilinear', 1).splitlines()
  assert 'machine:' in lines[0]
  assert [l.split('|')[1].strip() for l in lines[4:]] == ['40 x 30', '16 x 16']
  assert all(l.rstrip().endswith('| yes |') for l in lines[4:])
