"""Batches of images and [0, 1] targets from the TFDS builders in data_builders/.

Every process reads a split once and keeps the JPEG bytes in memory, so that
a fresh shuffle of the whole split every epoch costs nothing. Decoding,
resizing to `config.dataset.image_size` and the horizontal flip run in a
parallel tf.data map; batches come out as numpy, with no device placement
(the parallel module does that).

`batch_size` is always the global batch. Training draws one permutation of
the whole split per epoch, the same on every process, and process i of n
yields rows [i B/n, (i+1) B/n) of every global batch, so the global batches,
and with them the updates, are the same for any number of processes.
Evaluation and the feature caches give each process a contiguous part of
the split instead (`process_part`), in index order.

Images are stored as distributed (JPEG) and resized here rather than at build
time: the image size stays a config field (224 for the paper, smaller for the
demo), and the stored dataset stays the authors' data.

An example's `index` is its position in its split (after the split's config
filters), the same on every process; `split_ids` lists the ids in that order.
The flip of an example is a pure function of (seed, epoch, index)
(`flip_decisions`), so a feature cache can redo exactly the same flips.

Every example appears exactly once per epoch; padding rows (at the end) have
`mask` False and index -1. All processes yield the same number of batches of
the same size.
"""

import collections
import dataclasses
import math

from absl import logging
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from aesthetix.data import datasets
from aesthetix.data import resize
from aesthetix.runtime import parallel

# Read files one after the other so that read order (and so `index`) is the
# same for a whole split and for any slice of it.
_READ_CONFIG = dict(interleave_cycle_length=1)


def flip_decisions(seed, epoch, indices):
  """bool [n]: whether to flip example `indices` [n] horizontally in `epoch`.

  A counter-based hash (SplitMix64) of (seed, epoch, index): the same anywhere,
  in any order, for any subset of examples; about half are True.
  """
  with np.errstate(over='ignore'):
    key = _splitmix64(_splitmix64(np.uint64(seed) + np.zeros(1, np.uint64))
                      ^ np.uint64(epoch))
    bits = _splitmix64(key ^ np.asarray(indices, np.int64).astype(np.uint64))
  return (bits >> np.uint64(63)).astype(bool)


def _splitmix64(x):
  x = x + np.uint64(0x9E3779B97F4A7C15)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


@dataclasses.dataclass(frozen=True)
class _Split:
  """A split's examples in index order; every process reads the whole split.

  ids: str [n]; images: JPEG bytes [n]; targets: float32 [n, K+1], unit scale.
  """
  ids: np.ndarray
  images: np.ndarray
  targets: np.ndarray
  # (size, method) -> (uint8 [n, size, size, 3], bool [n]): images decoded
  # once, when first asked for, and which rows are.
  decoded: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  @property
  def total(self):
    return len(self.ids)


def _read(b, split, names):
  """ids, images, targets (dataset scale, outputs `names`) and overlap flags of
  `split` (a TFDS split arg)."""
  ds = b.as_dataset(split=split, shuffle_files=False,
                    decoders={'image': tfds.decode.SkipDecoding()},
                    read_config=tfds.ReadConfig(**_READ_CONFIG))
  ids, images, values, overlap = [], [], [], []
  for ex in tfds.as_numpy(ds):
    ids.append(ex['id'].decode('utf-8'))
    images.append(ex['image'])
    values.append([ex['labels'][n] for n in names])
    overlap.append(bool(ex.get('val_test_overlap', False)))
  values = np.array(values, np.float32).reshape(len(ids), len(names))
  return (np.array(ids, dtype=object), np.array(images, dtype=object), values,
          np.array(overlap, bool))


_CACHE = collections.OrderedDict()
_CACHE_SIZE = 4  # Splits kept in memory: train, validation, test and one spare.


def clear_cache():
  _CACHE.clear()


def _split(data, split):
  """The `_Split` of `split` of `data` (a DataSpec) after its filters (cached)."""
  d = data
  b = datasets.builder(data)
  if split not in b.info.splits:
    raise datasets.DataError(f'{d.name} has no split {split!r}; it has '
                             f'{list(b.info.splits)}.')
  drop = (d.drop_val_test_overlap and split == d.val_split
          and 'val_test_overlap' in b.info.features)
  max_train = d.max_train_examples if split == d.train_split else 0
  key = (str(b.data_path), split, drop, max_train)
  if key in _CACHE:
    _CACHE.move_to_end(key)
    return _CACHE[key]

  split_arg = f'{split}[:{max_train}]' if max_train > 0 else split
  ids, images, values, overlap = _read(b, split_arg, d.targets.output_names)
  if drop:
    keep = ~overlap
    ids, images, values = ids[keep], images[keep], values[keep]
    logging.info('%s: left %d val/test overlap images out of %s (%d remain).',
                 d.name, int(overlap.sum()), split, len(ids))
  rows = _Split(ids=ids, images=images, targets=d.targets.to_unit(values))
  _CACHE[key] = rows
  while len(_CACHE) > _CACHE_SIZE:
    _CACHE.popitem(last=False)
  return rows


def num_examples(data, split):
  """Examples in `split`, after drop_val_test_overlap / max_train_examples."""
  return _split(data, split).total


def split_ids(data, split):
  """Ids of the whole `split` in index order."""
  return [str(i) for i in _split(data, split).ids]


def _process(process):
  """(index, count) of the process whose rows to make; default: this one."""
  return (jax.process_index(), jax.process_count()) if process is None else process


def epoch_plan(total, *, epoch, seed):
  """(order, flips) of one training epoch over a split of `total` examples:
  indices in visiting order, and whether each is mirrored. The same on every
  process; pure, so a feature cache replays it.

  The third seed word was the process index when each process shuffled its own
  shard; 0 keeps single-process runs bit-identical to those versions.
  """
  order = np.random.default_rng([seed, epoch, 0]).permutation(total)
  return order, flip_decisions(seed, epoch, order)


def train_layout(total, order, flips, batch_size, process=None):
  """(positions, flips) [batches, b] of one process's rows of every global batch.

  Global batch k holds order[k B:(k+1) B] (the last one padded with -1);
  process i of n takes its rows [i b, (i+1) b), b = B / n.
  """
  index, count = _process(process)
  b = parallel.process_batch_size(batch_size, count)
  batches = math.ceil(total / batch_size)
  positions = np.full(batches * batch_size, -1, np.int64)
  positions[:total] = order
  mirrored = np.zeros(batches * batch_size, bool)
  mirrored[:total] = flips
  rows = slice(index * b, (index + 1) * b)
  return (positions.reshape(batches, batch_size)[:, rows],
          mirrored.reshape(batches, batch_size)[:, rows])


def eval_layout(total, batch_size, process=None):
  """Positions [batches, b] of one process's part of a split, in index order.

  Process i of n reads a contiguous part (`parallel.split_range`), b = B / n
  at a time, padded with -1 to as many batches as the largest part needs.
  """
  index, count = _process(process)
  b = parallel.process_batch_size(batch_size, count)
  start, end = parallel.split_range(total, index, count)
  largest = parallel.split_range(total, 0, count)
  batches = math.ceil((largest[1] - largest[0]) / b)
  positions = np.full(batches * b, -1, np.int64)
  positions[:end - start] = np.arange(start, end)
  return positions.reshape(batches, b)


def num_train_batches(data, split, batch_size):
  """Global batches of `batch_size` per training epoch over `split`."""
  return math.ceil(num_examples(data, split) / batch_size)


def process_part(data, split):
  """[start, end) of the examples of `split` that this process evaluates or caches."""
  return parallel.process_range(num_examples(data, split))


def train_batches(data, split, *, batch_size, epoch, seed, process=None):
  """This process's rows of one shuffled, flipped epoch of `split`, global batch
  `batch_size`: an iterator of batch dicts (see `_batches`)."""
  rows = _split(data, split)
  order, flips = epoch_plan(rows.total, epoch=epoch, seed=seed)
  positions, flips = train_layout(rows.total, order, flips, batch_size, process)
  return _batches(data, rows, positions, flips)


def train_feature_batches(data, split, features, *, batch_size, epoch, seed,
                          key='features', process=None):
  """`train_batches` with precomputed per-view arrays in place of images.

  features: [split examples, 2, ...] in index order (an array, or rows read
  from cache files), view 1 computed from the mirrored image. Yields the same
  examples, flips, order and padding as `train_batches`, with `key` [b, ...]
  instead of 'image'.
  """
  rows = _split(data, split)
  order, flips = epoch_plan(rows.total, epoch=epoch, seed=seed)
  positions, flips = train_layout(rows.total, order, flips, batch_size, process)
  return _feature_batches(rows, features, positions, flips, key)


def eval_batches(data, split, *, batch_size, process=None):
  """This process's part of `split` in index order, not flipped, `batch_size`
  being the global batch; every process yields the same number of batches."""
  rows = _split(data, split)
  positions = eval_layout(rows.total, batch_size, process)
  return _batches(data, rows, positions, np.zeros(positions.shape, bool))


def eval_feature_batches(data, split, features, *, batch_size, key='features',
                         process=None):
  """`eval_batches` with precomputed arrays [split examples, views, ...] (view 0)."""
  rows = _split(data, split)
  positions = eval_layout(rows.total, batch_size, process)
  return _feature_batches(rows, features, positions, np.zeros(positions.shape, bool), key)


def _feature_batches(data, features, positions, views, key):
  """Batches with `key` = features[position, view], padded like `_batches`.

  Rows are read a batch at a time, so memory-mapped caches stay on disk.
  """
  for pos, view in zip(positions, views):
    real = pos >= 0
    batch = _gather(data, np.zeros((int(real.sum()), 0)), pos[real])
    del batch['image']
    batch[key] = np.asarray(features[pos[real], view[real].astype(np.int64)], np.float32)
    yield _pad(batch, len(pos))


def decode_and_resize(encoded, flip, size, method='bilinear'):
  """JPEG bytes -> uint8 [size, size, 3] RGB, mirrored left-right when `flip`."""
  image = tf.io.decode_jpeg(encoded, channels=3, dct_method='INTEGER_ACCURATE')
  image = resize.tf_resize(image, size, method)
  return tf.where(flip, tf.reverse(image, axis=[1]), image)


def _batches(spec, data, positions, flips):
  """Batch dicts of the examples at `positions` [batches, b] (-1: padding).

  'image' uint8 [b, S, S, 3]; 'target' float32 [b, K+1] in [0, 1]; 'index'
  int32 [b] (-1 for padding); 'mask' bool [b]; 'id' object [b] of str ('' for
  padding). Padding follows the real rows (the tail of the last batches).
  """
  size, method = spec.image_size, spec.resize_method
  if spec.cache_decoded:
    images = decoded_images(data, size, method, positions)
    for pos, flip in zip(positions, flips):
      real = pos >= 0
      batch = images[pos[real]]
      batch[flip[real]] = batch[flip[real]][:, :, ::-1]
      yield _pad(_gather(data, batch, pos[real]), len(pos))
    return
  real = positions.reshape(-1) >= 0
  order = positions.reshape(-1)[real]
  ds = tf.data.Dataset.from_tensor_slices({
      'image': tf.constant(data.images[order].tolist(), tf.string),
      'flip': flips.reshape(-1)[real],
      'pos': order.astype(np.int32)})
  ds = ds.map(lambda ex: {'image': decode_and_resize(ex['image'], ex['flip'], size, method),
                          'pos': ex['pos']},
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  b = positions.shape[1]
  ds = ds.batch(b).prefetch(tf.data.AUTOTUNE)
  count = 0
  for batch in ds.as_numpy_iterator():
    yield _pad(_gather(data, batch['image'], batch['pos']), b)
    count += 1
  for _ in range(len(positions) - count):  # Other processes have more.
    yield _pad(_gather(data, np.zeros((0, size, size, 3), np.uint8),
                       np.zeros(0, np.int32)), b)


def decoded_images(data, size, method, positions):
  """uint8 [n, size, size, 3] with at least the rows at `positions` decoded.

  Kept with the split, so later epochs only gather and mirror rows; a process
  decodes the rows it is asked for, not the whole split.
  """
  key = (size, method)
  if key not in data.decoded:
    data.decoded[key] = (np.zeros((data.total, size, size, 3), np.uint8),
                         np.zeros(data.total, bool))
  images, done = data.decoded[key]
  todo = np.unique(positions[positions >= 0])
  todo = todo[~done[todo]]
  if len(todo):
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(data.images[todo].tolist(), tf.string))
    ds = ds.map(lambda encoded: decode_and_resize(encoded, False, size, method),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    start = 0
    for batch in ds.batch(256).prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
      images[todo[start:start + len(batch)]] = batch
      start += len(batch)
    done[todo] = True
  return images


def _gather(data, images, pos):
  """The batch of examples at positions `pos` of the split, with decoded `images`."""
  return {'image': images,
          'target': data.targets[pos].astype(np.float32),
          'index': np.asarray(pos, np.int32),
          'mask': np.ones(len(pos), bool),
          'id': data.ids[pos]}


def _pad(batch, batch_size):
  """Pads every array of `batch` to `batch_size` rows; padding has mask False, id ''."""
  n = len(batch['mask'])
  if n == batch_size:
    return batch
  out = {}
  for key, value in batch.items():
    fill = {'index': -1, 'id': ''}.get(key, 0)
    pad = np.full((batch_size - n, *value.shape[1:]), fill, value.dtype)
    out[key] = np.concatenate([value, pad])
  return out
