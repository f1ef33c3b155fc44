"""Grad-CAM: locality on a model whose evidence is known to lie in one region, and the CLI path."""

import os

import jax
import numpy as np
from PIL import Image
import pytest

from aesthetix.data import images as images_lib
from aesthetix.model import multitask as model_lib
from aesthetix.model import vgg16
from aesthetix.serving import gradcam
from aesthetix.training import trained as trained_lib
from tests import tiny
from tests import trained_workdir

SIZE = tiny.IMAGE_SIZE
HALF = SIZE // 2
QUADRANTS = {'top_left': (0, 0), 'top_right': (0, 1), 'bottom_left': (1, 0),
             'bottom_right': (1, 1)}
# Share of a 3x3 kernel on its centre tap in the hand-built backbone: evidence
# spreads to neighbouring cells as in a real CNN, but stays where it came from.
CENTER_TAP = 0.9
CHANNELS = 4  # Redness and the R, G, B distractors.
# Maps in [0, 1]: the CLI's (sharded, padded batches) against one jit here.
MAP_ATOL = 1e-4
# Two outputs' maps of one photo differ by more than this somewhere.
OTHER_OUTPUT_DIFFERENCE = 0.05


def color_detector_params(model):
  """Params of a model whose overall score measures how much red the image holds.

  Backbone: block1_conv1 computes, per pixel, redness relu(R - (G + B) / 2)
  (channel 0) and, as distractors the head ignores, raw R, G, B (channels
  1-3). Every later conv blurs each channel on its own (non-negative 3x3
  kernels, so evidence spreads to neighbouring cells as in a real CNN), max
  pools keep it local. Head: overall score = sigmoid(mean redness / 25 - 1).
  Gray pixels (R = G = B) have no redness, so on a gray image with one red
  patch the score depends on that patch alone (checked below).
  """
  # Every weight is set below: start from zeros, not from a (slow) random init.
  params = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype),
                                  model_lib.param_shapes(model, SIZE))
  backbone = params[model_lib.BACKBONE]
  mean_b, mean_g, mean_r = vgg16.IMAGENET_MEAN_BGR
  for name in vgg16.CONV_LAYER_NAMES:
    kernel = np.zeros_like(backbone[name]['kernel'])
    bias = np.zeros_like(backbone[name]['bias'])
    if name == vgg16.CONV_LAYER_NAMES[0]:  # Input: preprocessed BGR minus the mean.
      kernel[1, 1, :, 0] = (-0.5, -0.5, 1.0)
      bias[0] = mean_r - (mean_g + mean_b) / 2
      for out, bgr in enumerate((2, 1, 0), start=1):
        kernel[1, 1, bgr, out] = 1.0
        bias[out] = vgg16.IMAGENET_MEAN_BGR[bgr]
    else:
      for c in range(CHANNELS):
        kernel[:, :, c, c] = (1 - CENTER_TAP) / 8
        kernel[1, 1, c, c] = CENTER_TAP
    backbone[name] = {'kernel': kernel, 'bias': bias}
  head = params[model_lib.HEAD]
  for layer in head.values():
    layer['kernel'][:] = 0
    layer['bias'][:] = 0
  head['fc1']['kernel'][0, 0] = 1.0
  head['fc2']['kernel'][0, 0] = 1.0
  head['output']['kernel'][0, 0] = 1 / 25
  head['output']['bias'][0] = -1.0
  return params


def gray_image_with_red_patch(quadrant, seed, red=220):
  """uint8 [S, S, 3]: gray noise of random brightness, a red square in `quadrant`."""
  rng = np.random.default_rng(seed)
  gray = np.clip(rng.uniform(40, 200) + rng.normal(0, 25, (SIZE, SIZE)), 0, 255)
  image = np.repeat(np.round(gray)[..., None], 3, axis=-1).astype(np.uint8)
  i, j = QUADRANTS[quadrant]
  image[i * HALF:(i + 1) * HALF, j * HALF:(j + 1) * HALF] = (red, 0, 0)
  return image


def quadrant_means(maps):
  """maps [B, h, w] -> [B, 4], the mean in each quadrant (QUADRANTS order)."""
  h, w = maps.shape[1] // 2, maps.shape[2] // 2
  return np.stack([maps[:, i * h:(i + 1) * h, j * w:(j + 1) * w].mean(axis=(1, 2))
                   for i, j in QUADRANTS.values()], axis=1)


@pytest.fixture(scope='module')
def detector():
  model = model_lib.build_model(tiny.plan(tiny.config('/nonexistent')).model)
  return model, color_detector_params(model)


def test_the_score_depends_on_the_red_patch_alone(detector):
  model, params = detector
  predict = jax.jit(lambda x: model.apply({'params': params}, x)[:, 0])
  a = gray_image_with_red_patch('top_right', seed=1)
  b = gray_image_with_red_patch('top_right', seed=2)  # Other gray elsewhere.
  dim = gray_image_with_red_patch('top_right', seed=1, red=120)
  scores = np.asarray(predict(np.stack([a, b, dim])))
  np.testing.assert_allclose(scores[0], scores[1], rtol=1e-6)
  assert scores[0] > scores[2] + 0.05


@pytest.mark.parametrize('layer', [gradcam.DEFAULT_LAYER, 'block4_conv3', 'block3_conv3'])
def test_grad_cam_highlights_the_region_that_sets_the_score(detector, layer):
  model, params = detector
  names = list(QUADRANTS)
  images = np.stack([gray_image_with_red_patch(q, seed=s)
                     for s, q in enumerate(names)])
  maps, scores = jax.jit(gradcam.cam_fn(model, layer, 0))(params, images)
  maps = np.asarray(maps)
  assert maps.shape[1:] == vgg16.layer_output_shape(SIZE, layer)[:2]
  assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1)
  means = quadrant_means(maps)
  # Every image's own quadrant wins, by far (distinct quadrants: no flip or transpose).
  np.testing.assert_array_equal(means.argmax(axis=1), np.arange(len(names)))
  for k in range(len(names)):
    assert means[k, k] > 2 * np.delete(means[k], k).max()
  # Up-sampled to the photo, the heat stays over the patch.
  up = np.stack([gradcam.upsample(m, 3 * SIZE, 5 * SIZE) for m in maps])
  np.testing.assert_array_equal(quadrant_means(up).argmax(axis=1), np.arange(len(names)))
  gray_score = jax.nn.sigmoid(params[model_lib.HEAD]['output']['bias'][0])
  assert np.all(np.asarray(scores)[:, 0] > gray_score + 0.1)


def test_bad_layer_and_target_say_what_exists(tmp_path_factory):
  plan, _ = trained_workdir.get(tmp_path_factory)
  names = plan.output_names
  with pytest.raises(gradcam.GradCamError, match='block5_conv3'):
    gradcam.check_layer('block6_conv1')
  with pytest.raises(gradcam.GradCamError, match='ColorHarmony'):
    gradcam.target_index(names, 'Sharpness')
  assert gradcam.target_index(names, None) == 0
  assert gradcam.target_index(names, 'light') == gradcam.target_index(names, 'Light') == 5


def test_overlay_keeps_the_photo_size_and_colours_the_hot_region():
  pixels = np.full((20, 30, 3), 128, np.uint8)
  cam = np.zeros((2, 2), np.float32)
  cam[0, 1] = 1.0
  out = gradcam.overlay(pixels, cam)
  assert out.shape == pixels.shape and out.dtype == np.uint8
  # jet: hot is red, cold is blue.
  assert out[2, 27, 0] > out[2, 27, 2] and out[17, 2, 2] > out[17, 2, 0]


def record_figures(monkeypatch):
  """{path: (display pixels, map, title)} of every figure gradcam_workdir draws
  (each is still written)."""
  drawn, real = {}, gradcam.write_figure

  def write_figure(path, pixels, cam, title):
    drawn[path] = (np.array(pixels), np.array(cam), title)
    return real(path, pixels, cam, title)

  monkeypatch.setattr(gradcam, 'write_figure', write_figure)
  return drawn


def maps_of(workdir, photos, layer, index):
  """float [n, h, w]: Grad-CAM of output `index` at `layer` for the files
  `photos`, computed here with the workdir's model on each photo's model input."""
  plan, model, params = trained_lib.load_trained(workdir)
  pixels = np.stack([images_lib.model_input(images_lib.load_image(p), plan.data)
                     for p in photos])
  maps, _ = jax.jit(gradcam.cam_fn(model, layer, index))(params, pixels)
  return np.asarray(maps)


def assert_maps_are_of_output(drawn, figures, workdir, photos, layer, index):
  """The maps drawn in `figures` (for `photos`) are output `index`'s, not the
  overall score's (or, for the score, not the first attribute's)."""
  got = np.stack([drawn[f][1] for f in figures])
  np.testing.assert_allclose(got, maps_of(workdir, photos, layer, index), atol=MAP_ATOL)
  other = maps_of(workdir, photos, layer, 1 if index == 0 else 0)
  assert np.abs(got - other).max() > OTHER_OUTPUT_DIFFERENCE  # The check can tell outputs apart.


def test_gradcam_workdir_writes_one_png_per_readable_image(tmp_path_factory, tmp_path,
                                                           monkeypatch):
  plan, workdir = trained_workdir.get(tmp_path_factory)
  drawn = record_figures(monkeypatch)
  photos = tmp_path / 'photos'
  (photos / 'trip').mkdir(parents=True)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (40, 60, 3), np.uint8)).save(photos / 'a.jpg')
  Image.fromarray(rng.integers(0, 256, (40, 60, 3), np.uint8)).save(photos / 'a.png')
  Image.fromarray(rng.integers(0, 256, (50, 30, 3), np.uint8)).save(photos / 'trip' / 'b.webp')
  (photos / 'notes.txt').write_text('not a photo')
  out = tmp_path / 'maps'
  written, failed = gradcam.gradcam_workdir(workdir, str(photos), str(out),
                                            target='Light', layer='block4_conv3')
  sources = [photos / 'a.jpg', photos / 'a.png', photos / 'trip' / 'b.webp']
  figures = [str(out / 'a_gradcam.png'), str(out / 'a_png_gradcam.png'),
             str(out / 'trip' / 'b_gradcam.png')]
  assert sorted(written) == sorted(drawn) == sorted(figures)
  assert list(failed) == [str(photos / 'notes.txt')]
  for path in written:
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
      assert im.format == 'PNG' and im.width > 60
  # Each figure shows the map of --target=Light at --layer, for its own photo.
  light = list(plan.output_names).index('Light')
  assert_maps_are_of_output(drawn, figures, workdir, sources, 'block4_conv3', light)
  assert all(drawn[f][2].startswith(f'{s.name}: Light ') for f, s in zip(figures, sources))
