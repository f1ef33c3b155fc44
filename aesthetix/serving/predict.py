"""Scores for anyone's photos: the overall score and every attribute, in the dataset's scale.

`predict_workdir(workdir, images, output)` scores the files with a `Scorer`
(the model of a workdir, from its files alone, or the ensemble of several),
reading every image Pillow can read and resizing it exactly as training
resized its images (`images.model_input`), and writes one row per file: the
path, one column per output (the model's outputs, mapped by `Plan.from_unit`
to the training dataset's own scale), `<output>_sd` per output for an
ensemble, `<output>_percentile` per output when the quantiles are known
(`Scorer.columns`), and an error column. A file that cannot be read gets its
error and no scores; it never stops the batch.
A score that is not a finite number is never written: its row gets the reason
instead.
"""

import collections
import concurrent.futures
import csv
import itertools
import os
import sys
import time

import numpy as np

from aesthetix.data import image_files
from aesthetix.data import images as images_lib
from aesthetix.runtime import parallel
from aesthetix.runtime import progress as progress_lib
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import scorer as scorer_lib

PATH_COLUMN = 'path'
ERROR_COLUMN = 'error'
# Decimals of the scores written: far below any difference that matters.
DECIMALS = 6
# Images decoded ahead of the devices, per loader thread.
_LOAD_AHEAD_PER_THREAD = 4


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


def input_loader(data):
  """(load, resizes): load is path -> (uint8 [S, S, 3], '') or (None, reason),
  for the loading threads.

  The photo is resized on its loading thread, so that only the model's input
  waits for the devices, never a decoded photo, and the threads decode at most
  `images.DECODE_BUDGET_PIXELS` at a time: the memory of scoring is bounded
  whatever the photos' sizes and the cores (see `score_paths`). Where the
  resize needs TensorFlow, `load` returns the decoded photo (`resizes` is
  False) and the caller resizes it on one thread.
  """
  budget = images_lib.PixelBudget()
  resizes = images_lib.resizes_without_tensorflow(data)
  prepare = (lambda pixels: images_lib.model_input(pixels, data)) if resizes else None
  return (lambda path: images_lib.load(path, budget=budget, prepare=prepare)), resizes


def _batches(scorer, paths, positions, batch_size, count, errors, bar):
  """`count` batches (uint8 [b, S, S, 3], positions int [b]) of the readable
  images at `positions` of `paths`, b up to `batch_size`; empty batches follow,
  so that every process runs as many steps. Unreadable files are recorded in
  `errors` {position: reason}.
  """
  size, data = scorer.image_size, scorer.plan.data
  workers = os.cpu_count() or 1
  load, resized = input_loader(data)
  loaded = ordered_map(load, [paths[i] for i in positions], workers,
                       max(batch_size, workers * _LOAD_AHEAD_PER_THREAD))
  pixels, kept, done = [], [], 0
  stack = lambda p: np.stack(p) if p else np.zeros((0, size, size, 3), np.uint8)
  for position, (image, error) in zip(positions, loaded):
    bar.update(1)
    if image is None:
      errors[position] = error
      continue
    if not resized:  # On this one thread: TensorFlow's eager ops stay off the pool.
      image = images_lib.model_input(image, data)
    pixels.append(image)
    kept.append(position)
    if len(pixels) == batch_size:
      yield stack(pixels), np.array(kept, np.int64)
      pixels, kept, done = [], [], done + 1
  if pixels:
    yield stack(pixels), np.array(kept, np.int64)
    done += 1
  for _ in range(count - done):
    yield stack([]), np.zeros(0, np.int64)


def score_paths(scorer, paths, progress=True):
  """One row per path: {'path', *output names, 'error'}, scores in the dataset's scale.

  Rows of unreadable files have the reason in 'error' and None scores; rows of
  scored images have error ''. Returns (rows, timing): timing has 'seconds' (all,
  compilation included) and 'steady_seconds' / 'steady_images' after the first
  batch (None with a single batch). In a multi-process run each process scores
  its part of `paths`; every process returns all rows.
  """
  names, members = scorer.columns, len(scorer.members)
  n = len(scorer.names)
  b = parallel.process_batch_size(scorer.batch_size)
  start, end = parallel.process_range(len(paths))
  first, last = parallel.split_range(len(paths), 0, parallel.process_count())
  count = -(-(last - first) // b)
  index, scores, errors = [], [], {}
  began, first_done = time.time(), None
  with progress_lib.bar(end - start, 'Scoring', leave=True, enabled=progress) as bar:
    for pixels, positions in _batches(scorer, paths, range(start, end), b, count, errors, bar):
      unit = np.zeros((b, members * n), np.float32)  # Each member's outputs in turn.
      unit[:len(pixels)] = np.concatenate(  # One program.
          scorer.member_pixels(pixels, full=count > 1), axis=-1)
      scores.append(unit)
      index.append(np.concatenate([positions, np.full(b - len(positions), -1, np.int64)]))
      first_done = first_done or (time.time(), len(positions))
  index = parallel.gather_processes(np.concatenate(index)).reshape(-1)
  scores = parallel.gather_processes(np.concatenate(scores)).reshape(-1, members, n)
  scores = scorer.table(np.moveaxis(scores[index >= 0], 1, 0))
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
    error = '' if position in scores else errors.get(position) or images_lib.load(path)[1]
    if position in scores and not np.all(np.isfinite(values)):
      values, error = [None] * len(names), scorer_lib.nonfinite_reason(names, values, n)
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
      f.write(workdir_lib.dumps(records, indent=2) + '\n')
    else:
      _write_csv(rows, cols, f)


def _write_csv(rows, cols, f):
  writer = csv.DictWriter(f, fieldnames=cols)
  writer.writeheader()
  for row in rows:
    writer.writerow({c: '' if row[c] is None else _rounded(row[c]) for c in cols})


def _rounded(value):
  return round(value, DECIMALS) if isinstance(value, float) else value


def predict_workdir(workdir, images, output='-', progress=True, batch_size=None):
  """Scores the files named by `images` with a trained workdir's model (or, given
  a list of workdirs, their ensemble: `Scorer.from_workdirs`); writes `output`.

  Returns a summary: {'rows', 'outputs', 'columns' (the outputs, then their
  sds and percentiles where given), 'scored', 'failed', 'seconds',
  'images_per_second' (compilation included), 'steady_images_per_second'
  (after the first batch; None with one batch)}.
  """
  scorer = (scorer_lib.Scorer.from_workdir(workdir, batch_size)
            if isinstance(workdir, (str, os.PathLike))
            else scorer_lib.Scorer.from_workdirs(workdir, batch_size))
  paths = image_files.find_images(images)
  rows, timing = score_paths(scorer, paths, progress=progress)
  seconds = timing['seconds']
  names = scorer.columns
  if parallel.is_main_process():
    write_scores(rows, names, output)
  parallel.sync('scores written')
  scored = sum(1 for r in rows if not r[ERROR_COLUMN])
  steady = (timing['steady_images'] / max(timing['steady_seconds'], 1e-9)
            if timing['steady_seconds'] else None)
  return dict(rows=rows, outputs=list(scorer.names), columns=list(names), scored=scored,
              failed=len(rows) - scored, seconds=seconds,
              images_per_second=scored / max(seconds, 1e-9),
              steady_images_per_second=steady)
