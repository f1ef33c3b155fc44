"""Scores for photos from a trained workdir: the API applications call.

  import aesthetix
  scorer = aesthetix.Scorer.from_workdir('workdirs/demo')
  scorer.score(['photo.jpg', pil_image, uint8_array])
  # [{'score': 0.61, 'BalacingElements': 0.05, ...}, ...]   (the dataset's scale)

Photos are read and resized exactly as `--mode=predict` reads them (it scores
through a Scorer too: one scoring path), then scored in batches of at most a
fixed size; a batch of few photos is padded only to the next power of two times
the devices (each such size compiled once, on its first use). Only the workdir is needed:
its config.json and newest checkpoint that restores.
"""

import os

import jax
import numpy as np
from PIL import Image

from aesthetix.data import images as images_lib
from aesthetix.runtime import parallel
from aesthetix.training import checkpoint
from aesthetix.training import steps


def padded_rows(n, step, devices, processes):
  """Rows a step of `n` photos is padded to, of at most `step`: the smallest
  devices x 2^k that holds them (one compiled program per size, so one photo
  does not pay for a full batch), or always `step` when several processes run
  (every process must run the same program)."""
  if processes > 1:
    return step
  rows = devices
  while rows < n:
    rows *= 2
  return min(rows, step)


def batch_size_for(plan, devices=None, batch_size=None):
  """`batch_size` (default: the plan's eval batch) rounded up to a multiple of
  the devices, so that it splits over any device count."""
  devices = parallel.device_count() if devices is None else devices
  return -(-int(batch_size or plan.eval_batch_size) // devices) * devices


class Scorer:
  """A trained model ready to score photos; see the module's docstring."""

  def __init__(self, plan, model, params, batch_size=None):
    self.plan = plan
    self.model = model
    self.names = tuple(plan.output_names)
    self.image_size = plan.data.image_size
    self.batch_size = batch_size_for(plan, batch_size=batch_size)
    self.params = params
    self._replicated = parallel.replicate(params)
    self._step = steps.make_predict_step(model)

  @classmethod
  def from_workdir(cls, workdir, batch_size=None):
    """The model a training run left in `workdir` (config.json, newest checkpoint)."""
    return cls(*checkpoint.load_trained(workdir), batch_size)

  def pixels(self, image):
    """A path, a PIL image or a uint8 array [H, W, 3] (or [H, W]) -> the model's
    input uint8 [S, S, 3], read and resized as `--mode=predict` does."""
    if isinstance(image, (str, os.PathLike)):
      image = images_lib.load_image(os.fspath(image))
    elif isinstance(image, Image.Image):
      image = images_lib.to_rgb(image)
    image = np.asarray(image)
    if image.dtype != np.uint8:
      raise ValueError(f'Pixels must be uint8 (0-255), got {image.dtype}; read the file '
                       'with Pillow, or pass its path.')
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f'Pixels must be RGB [height, width, 3], got shape {image.shape}.')
    return images_lib.model_input(image, self.plan.data)

  def score_pixels(self, batch, full=False):
    """uint8 [b, S, S, 3] (b up to the batch size: padded here, to the whole
    batch when `full`) -> [b, outputs] in [0, 1]; this process's rows of one
    step, as every scoring path runs it."""
    n, step = len(batch), parallel.process_batch_size(self.batch_size)
    rows = step if full else padded_rows(n, step, parallel.device_count(),
                                         jax.process_count())
    padded = np.zeros((rows,) + batch.shape[1:], np.uint8)
    padded[:n] = batch
    out = self._step(self._replicated, parallel.put_batch({'image': padded}))
    return parallel.local_rows(out)[:n, :len(self.names)]

  def score_array(self, images):
    """[photos, outputs] in the dataset's scale, outputs in `names` order."""
    pixels = [self.pixels(x) for x in images]
    out = np.zeros((len(pixels), len(self.names)), np.float32)
    step = parallel.process_batch_size(self.batch_size)
    for start in range(0, len(pixels), step):
      chunk = np.stack(pixels[start:start + step])
      # Several batches: the last one too runs the full batch's program, not a new one.
      out[start:start + len(chunk)] = self.score_pixels(chunk, full=len(pixels) > step)
    return self.plan.from_unit(out) if len(out) else out

  def score(self, images):
    """One {output name: score} per photo (paths, PIL images or uint8 arrays)."""
    if isinstance(images, (str, os.PathLike, Image.Image)) or (
        isinstance(images, np.ndarray) and images.ndim <= 3):
      images = [images]
    return [dict(zip(self.names, map(float, row))) for row in self.score_array(list(images))]
