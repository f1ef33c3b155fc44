"""Grad-CAM (Selvaraju et al. 2017) of any output at any backbone layer (Fig. 8 and 13).

For images x, layer L and output k: A = backbone up to L [B, h, w, C];
alpha_c = mean over (h, w) of d score_k / d A_c; the map is ReLU(sum_c alpha_c
A_c) [B, h, w], scaled to [0, 1] per image. The map lives on the model's
square input, which is the photo stretched, so stretching the map back to the
photo's size puts every cell over the part of the photo it saw.
"""

import concurrent.futures
import os

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
from matplotlib.figure import Figure
import numpy as np
from PIL import Image

from aesthetix.data import image_files
from aesthetix.data import images as images_lib
from aesthetix.model import vgg16
from aesthetix.runtime import errors
from aesthetix.runtime import parallel
from aesthetix.runtime import progress
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import scorer
from aesthetix.training import trained as trained_lib

# The paper's maps are at the last convolutional layer.
DEFAULT_LAYER = vgg16.CONV_LAYER_NAMES[-1]
COLORMAP = 'jet'
OVERLAY_ALPHA = 0.45  # Share of the heatmap's colour in the overlay.
DISPLAY_SIZE = 640    # Longest side, in pixels, of the photo shown in a figure.
MIN_DISPLAY_SIZE = 256  # Smaller photos are drawn enlarged to this, so the titles fit.
FIGURE_DPI = 100
SUFFIX = '_gradcam.png'


class GradCamError(errors.UserError, ValueError):
  """A --target or --layer the model does not have."""


def target_index(names, target=None):
  """Position of output `target` (default: the overall score) among the model's
  output `names`."""
  if target is None:
    return 0
  lowered = [n.lower() for n in names]
  if target.lower() not in lowered:
    raise GradCamError(f'Unknown target {target!r}: this model predicts '
                       f'{", ".join(names)}.')
  return lowered.index(target.lower())


def check_layer(layer):
  if layer not in vgg16.LAYER_NAMES:
    raise GradCamError(f'Unknown layer {layer!r}; Grad-CAM works at a VGG16 layer: '
                       f'{", ".join(vgg16.LAYER_NAMES)}.')
  return layer


def cam_fn(model, layer, index):
  """(params, uint8 images [B, S, S, 3]) -> (maps [B, h, w] in [0, 1], scores [B, n]).

  Scores are the model's outputs in [0, 1]; a map that is zero everywhere means
  no part of the image raised output `index` at this layer.
  """
  check_layer(layer)

  def fn(params, images):
    variables = {'params': params}
    activations = model.apply(variables, images, stop_after=layer,
                              method=model.backbone_prefix)

    def output(a):
      features = model.apply(variables, a, start_after=layer, method=model.features_from)
      scores = model.apply(variables, features, train=False, method=model.head_only)
      # Examples are independent, so the gradient of the sum is each one's own.
      return jnp.sum(scores[:, index]), scores

    grads, scores = jax.grad(output, has_aux=True)(activations)
    weights = jnp.mean(grads.astype(jnp.float32), axis=(1, 2), keepdims=True)
    cam = nn.relu(jnp.sum(weights * activations.astype(jnp.float32), axis=-1))
    peak = jnp.max(cam, axis=(1, 2), keepdims=True)
    return jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0), scores

  return fn


def make_cam_step(model, layer, index):
  """Data-parallel `cam_fn`: (replicated params, {'image': [B, S, S, 3]}) -> maps, scores."""
  fn = cam_fn(model, layer, index)
  return parallel.per_device(lambda params, batch: fn(params, batch['image']),
                             in_specs=(parallel.REPLICATED, parallel.SHARDED),
                             out_specs=parallel.SHARDED)


def display_image(pixels, max_size=DISPLAY_SIZE):
  """uint8 [H, W, 3] shrunk (aspect kept) so that its longest side is <= max_size."""
  h, w = pixels.shape[:2]
  scale = max_size / max(h, w)
  if scale >= 1:
    return pixels
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def upsample(cam, height, width):
  """Map [h, w] -> [height, width], bilinear, cells centred on the regions they saw."""
  image = Image.fromarray(np.asarray(cam, np.float32), mode='F')
  return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def overlay(pixels, cam, alpha=OVERLAY_ALPHA, colormap=COLORMAP):
  """The map [h, w] in `colormap`, blended over uint8 pixels [H, W, 3] -> uint8 [H, W, 3]."""
  heat = upsample(cam, *pixels.shape[:2])
  colors = matplotlib.colormaps[colormap](np.clip(heat, 0, 1))[..., :3] * 255
  blended = (1 - alpha) * pixels.astype(np.float32) + alpha * colors
  return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def write_figure(path, pixels, cam, title):
  """PNG: the photo, and the photo with the map over it, side by side."""
  h, w = pixels.shape[:2]
  enlarge = max(1.0, MIN_DISPLAY_SIZE / max(h, w))
  h, w = h * enlarge, w * enlarge
  fig = Figure(figsize=(2 * w / FIGURE_DPI + 1, h / FIGURE_DPI + 0.8), dpi=FIGURE_DPI,
               layout='constrained')
  left, right = fig.subplots(1, 2)
  left.imshow(pixels)
  left.set_title('Photo')
  right.imshow(overlay(pixels, cam))
  right.set_title('Grad-CAM')
  fig.colorbar(matplotlib.cm.ScalarMappable(cmap=COLORMAP), ax=right, shrink=0.8,
               label='relative importance')
  for ax in (left, right):
    ax.set_axis_off()
  fig.suptitle(title)
  with workdir_lib.atomic_file(path, 'wb') as f:
    fig.savefig(f, format='png')


def output_paths(paths, out_dir, root=None):
  """One PNG path per input under `out_dir`, mirroring the folders below `root`.

  `root` defaults to the inputs' common folder. Inputs that differ only by
  extension (photo.jpg, photo.png) keep their extension in the name.
  """
  dirs = [os.path.dirname(os.path.abspath(p)) for p in paths]
  root = os.path.abspath(root) if root else os.path.commonpath(dirs)
  out, used = [], set()
  for p in paths:
    stem, ext = os.path.splitext(os.path.relpath(os.path.abspath(p), root))
    name = os.path.join(out_dir, stem + SUFFIX)
    if name in used:
      name = os.path.join(out_dir, f'{stem}_{ext.lstrip(".")}{SUFFIX}')
    used.add(name)
    out.append(name)
  return out


def photo_loader(data):
  """path -> ((display pixels [h, w, 3], model input [S, S, 3]), '') or (None, reason).

  On the loading threads, which share one `images.PixelBudget`: only the two
  small copies of a photo outlive its decode, so a batch holds at most
  batch x (DISPLAY_SIZE^2 + S^2) x 3 bytes beside the decodes in progress.
  Where the model's resize needs TensorFlow, the input is made on the
  calling thread (`model_input_of`) and the loader keeps the decoded photo.
  """
  budget = images_lib.PixelBudget()
  if images_lib.resizes_without_tensorflow(data):
    prepare = lambda pixels: (display_image(pixels), images_lib.model_input(pixels, data))
  else:
    prepare = lambda pixels: (display_image(pixels), pixels)
  return lambda path: images_lib.load(path, budget=budget, prepare=prepare)


def model_input_of(prepared, data):
  """The model input [S, S, 3] of a photo `photo_loader` prepared."""
  _, pixels = prepared
  if images_lib.resizes_without_tensorflow(data):
    return pixels
  return images_lib.model_input(pixels, data)  # TensorFlow's eager ops stay off the pool.


def gradcam_workdir(workdir, images, out_dir, target=None, layer=None, batch_size=None):
  """Writes a Grad-CAM figure for every readable image named by `images`.

  Returns (PNG paths written, {path: reason} of the files that could not be read).
  """
  plan, model, params = trained_lib.load_trained(workdir)
  layer = check_layer(layer or DEFAULT_LAYER)
  names = plan.output_names
  index = target_index(names, target)
  paths = image_files.find_images(images)
  root = images if os.path.isdir(os.path.expanduser(images)) else None
  destinations = output_paths(paths, out_dir, root)
  step = make_cam_step(model, layer, index)
  replicated = parallel.replicate(params)
  # Each process draws the figures of its part of the files; all run as many steps.
  batch_size = parallel.process_batch_size(scorer.batch_size_for(plan,
                                                                 batch_size=batch_size))
  begin, end = parallel.process_range(len(paths))
  first, last = parallel.split_range(len(paths), 0, parallel.process_count())
  size = plan.data.image_size
  load = photo_loader(plan.data)
  written, failed = [], {}
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool, \
       progress.bar(end - begin, 'Grad-CAM', leave=True) as bar:
    for start in range(first, last, batch_size):
      chunk = list(range(begin + start - first, min(begin + start - first + batch_size, end)))
      bar.update(len(chunk))
      loaded = list(pool.map(load, [paths[i] for i in chunk]))
      good = [(i, prepared[0], model_input_of(prepared, plan.data))
              for i, (prepared, _) in zip(chunk, loaded) if prepared is not None]
      for i, (prepared, reason) in zip(chunk, loaded):
        if prepared is None:
          failed[paths[i]] = reason
          logging.warning('Skipped %s: %s', paths[i], reason)
      batch = np.zeros((batch_size, size, size, 3), np.uint8)
      if good:
        batch[:len(good)] = np.stack([x for _, _, x in good])
      cams, scores = step(replicated, parallel.put_batch({'image': batch}))
      cams = parallel.local_rows(cams)
      scores = plan.from_unit(parallel.local_rows(scores))
      for row, (i, shown, _) in enumerate(good):
        title = f'{os.path.basename(paths[i])}: {names[index]} {scores[row, index]:.3f}'
        if index:
          title += f' ({names[0]} {scores[row, 0]:.3f})'
        title += f', Grad-CAM at {layer}'
        write_figure(destinations[i], shown, cams[row], title)
        written.append(destinations[i])
  parallel.sync('gradcam figures written')
  return written, failed
