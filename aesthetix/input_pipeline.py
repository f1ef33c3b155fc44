"""Batches of images and [0, 1] targets from the TFDS builders in data_builders/.

Each process reads its own part of a split (`tfds.split_for_jax_process`) once
and keeps the JPEG bytes in memory, so that a fresh shuffle of the whole split
every epoch costs nothing. Decoding, resizing to `config.dataset.image_size`
and the horizontal flip run in a parallel tf.data map; batches come out as
numpy, the per-process batch of `batch_size` examples, with no device
placement (the parallel module does that).

Images are stored as distributed (JPEG) and resized here rather than at build
time: the image size stays a config field (224 for the paper, smaller for the
demo), and the stored dataset stays the authors' data.

An example's `index` is its position in its split (after the split's config
filters), the same on every process; `split_ids` lists the ids in that order.
The flip of an example is a pure function of (seed, epoch, index)
(`flip_decisions`), so a feature cache can redo exactly the same flips.

Every example appears exactly once per epoch; the last batch is padded to
`batch_size` with `mask` False. All processes yield the same number of batches.
"""

import collections
import dataclasses
import importlib
import inspect
import math

from absl import logging
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from aesthetix import targets


def _hide_gpus_from_tf():
  """TF only feeds data here; the accelerators belong to JAX."""
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TF already initialised its devices; nothing to do then.
    pass


_hide_gpus_from_tf()

BUILDER_MODULE = 'data_builders.{name}.{name}_dataset_builder'
# Read files one after the other so that read order (and so `index`) is the
# same for a whole split and for any slice of it.
_READ_CONFIG = dict(interleave_cycle_length=1)


def builder_class(name):
  """The `Builder` class of data_builders/NAME/NAME_dataset_builder.py."""
  targets.spec(name)  # A clear error for an unknown dataset.
  module_name = BUILDER_MODULE.format(name=name)
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    raise ValueError(f'No builder for dataset {name!r}: cannot import '
                     f'{module_name} ({e}).') from e
  return module.Builder


def builder(config):
  """The dataset's builder, prepared first when it is not built yet.

  The build reads downloads from `config.dataset.manual_dir` (None: the TFDS
  default, <data_dir>/downloads/manual) and writes to `config.dataset.data_dir`.
  """
  d = config.dataset
  cls = builder_class(d.name)
  kwargs = {}
  if 'skip_unreadable' in inspect.signature(cls.__init__).parameters:
    kwargs['skip_unreadable'] = bool(d.get('skip_unreadable', False))
  kwargs.update(d.get('builder_kwargs', None) or {})
  b = cls(data_dir=d.data_dir, **kwargs)
  if b.is_prepared():
    return b
  if jax.process_count() > 1:
    raise RuntimeError(
        f'Dataset {d.name} is not built in {b.data_dir}. Build it once before a '
        f'multi-process run: tfds build data_builders/{d.name} '
        f'--data_dir={d.data_dir or "~/tensorflow_datasets"} --manual_dir=DIR')
  logging.info('Preparing %s in %s (manual dir: %s).', d.name, b.data_dir,
               d.manual_dir or 'TFDS default')
  download_config = tfds.download.DownloadConfig(manual_dir=d.manual_dir)
  try:
    b.download_and_prepare(download_config=download_config)
  except AssertionError as e:  # TFDS' way of saying the manual dir is missing or empty.
    raise FileNotFoundError(
        f'Cannot build {d.name}: {e}\nSet config.dataset.manual_dir to the folder '
        'holding the downloaded files.') from e
  return b


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
class _Shard:
  """One process's examples of a split, in index order.

  ids: str [n]; images: JPEG bytes [n]; targets: float32 [n, K+1], unit scale;
  index: int32 [n], positions in the split; total: examples in the split (all
  processes); largest: examples in the largest process shard.
  """
  ids: np.ndarray
  images: np.ndarray
  targets: np.ndarray
  index: np.ndarray
  total: int
  largest: int
  # (size, method) -> uint8 [n, size, size, 3]: images decoded once, when asked.
  decoded: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def _bounds(n, process_index, process_count):
  """[start, end) of a process's part of n examples, as `tfds.even_splits` cuts them."""
  per, extra = divmod(n, process_count)
  start = per * process_index + min(process_index, extra)
  end = per * (process_index + 1) + min(process_index + 1, extra)
  return start, end


def _read(b, split, name):
  """ids, images, targets (dataset scale) and overlap flags of `split` (a TFDS split arg)."""
  ds = b.as_dataset(split=split, shuffle_files=False,
                    decoders={'image': tfds.decode.SkipDecoding()},
                    read_config=tfds.ReadConfig(**_READ_CONFIG))
  names = targets.output_names(name)
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


def _shard(config, split, process_index=None, process_count=None):
  """This process's `_Shard` of `split`, after the config's filters (cached)."""
  d = config.dataset
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  b = builder(config)
  if split not in b.info.splits:
    raise ValueError(f'{d.name} has no split {split!r}; it has {list(b.info.splits)}.')
  drop = (bool(d.drop_val_test_overlap) and split == d.val_split
          and 'val_test_overlap' in b.info.features)
  max_train = int(d.max_train_examples) if split == d.train_split else 0
  key = (str(b.data_path), split, drop, max_train, process_index, process_count)
  if key in _CACHE:
    _CACHE.move_to_end(key)
    return _CACHE[key]

  split_arg = f'{split}[:{max_train}]' if max_train > 0 else split
  if drop:
    # The filter depends on the data, so read the whole (small) split and cut here.
    ids, images, values, overlap = _read(b, split_arg, d.name)
    keep = ~overlap
    ids, images, values = ids[keep], images[keep], values[keep]
    logging.info('%s: left %d val/test overlap images out of %s (%d remain).',
                 d.name, int(overlap.sum()), split, len(ids))
    total = len(ids)
    start, end = _bounds(total, process_index, process_count)
    ids, images, values = ids[start:end], images[start:end], values[start:end]
  else:
    total = b.info.splits[split_arg].num_examples
    start, end = _bounds(total, process_index, process_count)
    ids, images, values, _ = _read(b, tfds.split_for_jax_process(
        split_arg, process_index=process_index, process_count=process_count), d.name)
    assert len(ids) == end - start, (len(ids), start, end)
  shard = _Shard(ids=ids, images=images, targets=targets.to_unit(d.name, values),
                 index=np.arange(start, end, dtype=np.int32), total=total,
                 largest=_bounds(total, 0, process_count)[1])
  _CACHE[key] = shard
  while len(_CACHE) > _CACHE_SIZE:
    _CACHE.popitem(last=False)
  return shard


def num_examples(config, split):
  """Examples in `split` over all processes, after drop_val_test_overlap / max_train_examples."""
  return _shard(config, split).total


def shard_size(config, split):
  """Examples of `split` that this process reads."""
  return len(_shard(config, split).ids)


def num_batches(config, split, batch_size):
  """Batches per pass over `split` (the same on every process); batch_size is per process."""
  return math.ceil(_shard(config, split).largest / batch_size)


def split_ids(config, split):
  """Ids of the whole `split` (all processes) in index order."""
  return [str(i) for i in _shard(config, split, 0, 1).ids]


def epoch_plan(shard_size, shard_index, *, epoch, seed):
  """(order, flips) of one training epoch: shard positions in visiting order, and
  whether each visited example is mirrored. Pure: a feature cache replays it."""
  order = np.random.default_rng([seed, epoch, jax.process_index()]).permutation(shard_size)
  return order, flip_decisions(seed, epoch, shard_index[order])


def train_batches(config, split, *, batch_size, epoch, seed):
  """One shuffled, flipped epoch of `split`: an iterator of batch dicts (see `_batches`)."""
  shard = _shard(config, split)
  order, flips = epoch_plan(len(shard.ids), shard.index, epoch=epoch, seed=seed)
  return _batches(config, shard, order, flips, batch_size)


def train_feature_batches(config, split, features, *, batch_size, epoch, seed,
                          key='features'):
  """`train_batches` with precomputed per-view arrays in place of images.

  features: [shard examples, 2, ...] in index order, view 1 computed from the
  mirrored image. Yields the same examples, flips, order and padding as
  `train_batches`, with `key` [B, ...] instead of 'image'.
  """
  shard = _shard(config, split)
  order, flips = epoch_plan(len(shard.ids), shard.index, epoch=epoch, seed=seed)
  views = flips.astype(np.int64)
  return _feature_batches(shard, lambda s: features[order[s], views[s]], order,
                          batch_size, key)


def eval_feature_batches(config, split, features, *, batch_size, key='features'):
  """`eval_batches` with precomputed arrays [shard examples, views, ...] (view 0)."""
  shard = _shard(config, split)
  order = np.arange(len(shard.ids))
  return _feature_batches(shard, lambda s: features[order[s], 0], order, batch_size, key)


def _feature_batches(shard, rows, order, batch_size, key):
  """Batches with `key` = rows(slice of `order`), padded like `_batches`.

  Rows are read a batch at a time, so memory-mapped caches stay on disk.
  """
  for start in range(0, math.ceil(shard.largest / batch_size) * batch_size, batch_size):
    batch_slice = slice(start, start + batch_size)
    pos = order[batch_slice]
    batch = _gather(shard, np.zeros((len(pos), 0)), pos)
    del batch['image']
    batch[key] = np.asarray(rows(batch_slice), np.float32)
    yield _pad(batch, batch_size)


def eval_batches(config, split, *, batch_size):
  """Every example of `split` once, in index order, not flipped."""
  shard = _shard(config, split)
  order = np.arange(len(shard.ids))
  return _batches(config, shard, order, np.zeros(len(order), bool), batch_size)


def resize_image(image, size, method='bilinear'):
  """Decoded uint8 RGB [H, W, 3] -> uint8 [size, size, 3], rounded and clipped.

  The one resize of the project: training, evaluation and the scoring of
  users' photos all go through it, so a photo is seen as the test images were.
  """
  image = tf.image.resize(image, [size, size], method=method)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def decode_and_resize(encoded, flip, size, method='bilinear'):
  """JPEG bytes -> uint8 [size, size, 3] RGB, mirrored left-right when `flip`."""
  image = tf.io.decode_jpeg(encoded, channels=3, dct_method='INTEGER_ACCURATE')
  image = resize_image(image, size, method)
  return tf.where(flip, tf.reverse(image, axis=[1]), image)


def _batches(config, shard, order, flips, batch_size):
  """Batch dicts over `shard` in `order`; padded to the same count on every process.

  'image' uint8 [B, S, S, 3]; 'target' float32 [B, K+1] in [0, 1]; 'index'
  int32 [B] (-1 for padding); 'mask' bool [B]; 'id' object [B] of str ('' for
  padding).
  """
  size = int(config.dataset.image_size)
  method = config.dataset.get('resize_method', 'bilinear')
  if config.dataset.get('cache_decoded', False):
    yield from _decoded_batches(shard, decoded_images(shard, size, method), order, flips,
                                batch_size)
    return
  ds = tf.data.Dataset.from_tensor_slices({
      'image': tf.constant(shard.images[order].tolist(), tf.string),
      'flip': flips,
      'pos': order.astype(np.int32)})
  ds = ds.map(lambda ex: {'image': decode_and_resize(ex['image'], ex['flip'], size, method),
                          'pos': ex['pos']},
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
  count = 0
  for batch in ds.as_numpy_iterator():
    yield _pad(_gather(shard, batch['image'], batch['pos']), batch_size)
    count += 1
  for _ in range(math.ceil(shard.largest / batch_size) - count):  # Other processes have more.
    yield _pad(_gather(shard, np.zeros((0, size, size, 3), np.uint8),
                       np.zeros(0, np.int32)), batch_size)


def decoded_images(shard, size, method):
  """uint8 [n, size, size, 3]: every image of `shard` decoded and resized once.

  Kept with the shard, so later epochs only gather and mirror rows.
  """
  key = (size, method)
  if key not in shard.decoded:
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(shard.images.tolist(), tf.string))
    ds = ds.map(lambda encoded: decode_and_resize(encoded, False, size, method),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    images = np.zeros((len(shard.ids), size, size, 3), np.uint8)
    start = 0
    for batch in ds.batch(256).prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
      images[start:start + len(batch)] = batch
      start += len(batch)
    shard.decoded[key] = images
  return shard.decoded[key]


def _decoded_batches(shard, images, order, flips, batch_size):
  """`_batches` from decoded images [n, S, S, 3]: gather, mirror, pad."""
  for start in range(0, math.ceil(shard.largest / batch_size) * batch_size, batch_size):
    pos, flip = order[start:start + batch_size], flips[start:start + batch_size]
    batch = images[pos]
    batch[flip] = batch[flip][:, :, ::-1]
    yield _pad(_gather(shard, batch, pos), batch_size)


def _gather(shard, images, pos):
  """The batch of examples at positions `pos` of `shard`, with decoded `images`."""
  return {'image': images,
          'target': shard.targets[pos].astype(np.float32),
          'index': shard.index[pos],
          'mask': np.ones(len(pos), bool),
          'id': shard.ids[pos]}


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
