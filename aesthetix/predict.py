"""Scores for anyone's photos: the overall score and every attribute, in the dataset's scale.

`predict_workdir(workdir, images, output)` loads a trained model from its
workdir alone (config.json and the latest checkpoint), reads every image Pillow
can read, resizes it exactly as training resized its images
(`input_pipeline.resize_image`) and writes one row per file: the path, one
column per output (`targets.model_output_names`, mapped by `targets.from_unit` to the
training dataset's own scale) and an error column. A file that cannot be read
gets its error and no scores; it never stops the batch.
"""

import collections
import concurrent.futures
import csv
import itertools
import json
import os
import sys
import time

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from aesthetix import input_pipeline
from aesthetix import parallel
from aesthetix import preflight
from aesthetix import progress as progress_lib
from aesthetix import steps
from aesthetix import targets
from aesthetix import train
from aesthetix import workdir as workdir_lib

PATH_COLUMN = 'path'
ERROR_COLUMN = 'error'
# Transparent pixels are shown on white, as a photo on a page or a screen.
BACKGROUND = (255, 255, 255)
# Pillow's modes of one 16-bit (or wider integer) channel.
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
SIXTEEN_TO_EIGHT_BITS = 257.0  # 65535 / 255.
# Decimals of the scores written: far below any difference that matters.
DECIMALS = 6
# Images decoded ahead of the devices, per loader thread.
_LOAD_AHEAD_PER_THREAD = 4


class ImageError(ValueError):
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


def model_input(pixels, config):
  """uint8 [H, W, 3] -> uint8 [S, S, 3], resized as the training images were."""
  return np.asarray(input_pipeline.resize_image(
      pixels, int(config.dataset.image_size),
      config.dataset.get('resize_method', 'bilinear')))


def load(path):
  """(uint8 RGB [H, W, 3], '') or (None, reason) for one file."""
  try:
    return load_image(path), ''
  except ImageError as e:
    return None, e.reason


def ordered_map(fn, items, workers, ahead):
  """fn(item) for each item, in order, computed by `workers` threads.

  At most `ahead` results wait at a time, so memory stays bounded for any
  number of items. Decoding (Pillow) releases the GIL.
  """
  items = iter(items)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque(pool.submit(fn, x) for x in itertools.islice(items, ahead))
    while pending:
      result = pending.popleft().result()
      pending.extend(pool.submit(fn, x) for x in itertools.islice(items, 1))
      yield result


def _batches(config, paths, positions, batch_size, count, errors, bar):
  """`count` batches {'image': uint8 [b, S, S, 3], 'id': int [b]} of the
  readable images at `positions` of `paths`.

  'id' holds positions in `paths` (-1 for padding: batches are padded to
  `batch_size` rows, and empty batches follow, so that every process runs as
  many steps). Unreadable files are recorded in `errors` {position: reason}.
  """
  size = int(config.dataset.image_size)
  workers = os.cpu_count() or 1
  loaded = ordered_map(load, [paths[i] for i in positions], workers,
                       max(batch_size, workers * _LOAD_AHEAD_PER_THREAD))
  images, kept, done = [], [], 0

  def batch(images, kept):
    pad = batch_size - len(images)
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return {'image': np.concatenate([stacked, np.zeros((pad, size, size, 3), np.uint8)]),
            'id': np.array(kept + [-1] * pad, np.int64)}

  for position, (pixels, error) in zip(positions, loaded):
    bar.update(1)
    if pixels is None:
      errors[position] = error
      continue
    # Resized here, on one thread: TensorFlow's eager ops stay off the pool.
    images.append(model_input(pixels, config))
    kept.append(position)
    if len(images) == batch_size:
      yield batch(images, kept)
      images, kept, done = [], [], done + 1
  if images:
    yield batch(images, kept)
    done += 1
  for _ in range(count - done):
    yield batch([], [])


def scoring_batch_size(config, devices=None, batch_size=None):
  """`batch_size` (default: the config's eval batch) rounded up to a multiple of
  the devices, so that it splits over any device count."""
  devices = parallel.device_count() if devices is None else devices
  return -(-int(batch_size or config.eval_batch_size) // devices) * devices


def score_paths(config, model, params, paths, batch_size=None, progress=True):
  """One row per path: {'path', *output names, 'error'}, scores in the dataset's scale.

  Rows of unreadable files have the reason in 'error' and None scores; rows of
  scored images have error ''. Returns (rows, timing): timing has 'seconds' (all,
  compilation included) and 'steady_seconds' / 'steady_images' after the first
  batch (None with a single batch). In a multi-process run each process scores
  its part of `paths`; every process returns all rows.
  """
  names = targets.model_output_names(config)
  batch_size = scoring_batch_size(config, batch_size=batch_size)
  b = parallel.process_batch_size(batch_size)
  start, end = parallel.process_range(len(paths))
  first, last = parallel.split_range(len(paths), 0, parallel.process_count())
  count = -(-(last - first) // b)
  predict_step = steps.make_predict_step(model)
  replicated = parallel.replicate(params)
  index, scores, errors = [], [], {}
  began, first_done = time.time(), None
  with progress_lib.bar(end - start, 'Scoring', leave=True, enabled=progress) as bar:
    batches = _batches(config, paths, range(start, end), b, count, errors, bar)
    for batch, host in parallel.prefetch(batches):
      scores.append(parallel.local_rows(predict_step(replicated, batch))[:, :len(names)])
      index.append(host['id'])
      first_done = first_done or (time.time(), int((host['id'] >= 0).sum()))
  index = parallel.gather_processes(np.concatenate(index)).reshape(-1)
  scores = parallel.gather_processes(np.concatenate(scores)).reshape(-1, len(names))
  scores = targets.from_unit(config.dataset.name, scores[index >= 0])
  scores = dict(zip(index[index >= 0].tolist(), scores.tolist()))
  seconds = time.time() - began
  # Every process's first batch waited for the compilation.
  steady_images = len(scores) - (first_done[1] * parallel.process_count() if first_done else 0)
  timing = dict(seconds=seconds, steady_seconds=None, steady_images=None)
  if first_done and steady_images > 0:
    timing.update(steady_seconds=time.time() - first_done[0], steady_images=steady_images)
  rows = []
  for position, path in enumerate(paths):
    values = scores.get(position, [None] * len(names))
    error = '' if position in scores else errors.get(position) or load(path)[1]
    rows.append({PATH_COLUMN: path, **dict(zip(names, values)), ERROR_COLUMN: error})
  return rows, timing


def columns(names):
  return [PATH_COLUMN, *names, ERROR_COLUMN]


def write_scores(rows, names, output):
  """Writes rows as JSON (a list of records) when `output` ends in .json, else CSV.

  `output` '-' writes CSV to stdout. JSON has null for missing scores and
  errors; CSV leaves those cells empty.
  """
  cols = columns(names)
  names = set(names)
  if output == '-':
    _write_csv(rows, cols, sys.stdout)
    return
  with workdir_lib.atomic_file(output) as f:
    if output.lower().endswith('.json'):
      records = [{c: _rounded(row[c]) if c in names else (row[c] or None) for c in cols}
                 for row in rows]
      json.dump(records, f, indent=2)
      f.write('\n')
    else:
      _write_csv(rows, cols, f)


def _write_csv(rows, cols, f):
  writer = csv.DictWriter(f, fieldnames=cols)
  writer.writeheader()
  for row in rows:
    writer.writerow({c: '' if row[c] is None else _rounded(row[c]) for c in cols})


def _rounded(value):
  return round(value, DECIMALS) if isinstance(value, float) else value


def read_scores(path):
  """The rows `write_scores` wrote (CSV or JSON), scores as float or None."""
  with open(path, newline='') as f:
    if path.lower().endswith('.json'):
      return json.load(f)
    rows = list(csv.DictReader(f))
  parse = lambda k, v: v if k in (PATH_COLUMN, ERROR_COLUMN) else (
      float(v) if v != '' else None)
  return [{k: parse(k, v) for k, v in row.items()} for row in rows]


def predict_workdir(workdir, images, output='-', progress=True, batch_size=None):
  """Scores the files named by `images` with a trained workdir's model; writes `output`.

  Returns a summary: {'rows', 'outputs', 'scored', 'failed', 'seconds',
  'images_per_second' (compilation included), 'steady_images_per_second'
  (after the first batch; None with one batch)}.
  """
  config, model, params = train.load_trained(workdir)
  paths = preflight.find_images(images)
  rows, timing = score_paths(config, model, params, paths, batch_size=batch_size,
                             progress=progress)
  seconds = timing['seconds']
  names = targets.model_output_names(config)
  if parallel.is_main_process():
    write_scores(rows, names, output)
  parallel.sync('scores written')
  scored = sum(1 for r in rows if not r[ERROR_COLUMN])
  steady = (timing['steady_images'] / max(timing['steady_seconds'], 1e-9)
            if timing['steady_seconds'] else None)
  return dict(rows=rows, outputs=list(names), scored=scored,
              failed=len(rows) - scored, seconds=seconds,
              images_per_second=scored / max(seconds, 1e-9),
              steady_images_per_second=steady)
