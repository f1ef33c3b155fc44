"""Frozen parts of the backbone, computed once per image and mirror image.

Layers that do not train are a pure function of the image and its flip, so
their outputs can be computed once (2 backbone passes per training image, 1
per evaluation image) instead of once per epoch. Two caches, one pass:

- 'features': the pooled output of the whole backbone [n, views, 512], valid
  while all of VGG16 is frozen (stage 1); stage 1 then trains the head alone.
- 'prefix': the output of the last layer below the first layer any stage
  trains (block4_conv1 for the paper) [n, views, h, w, C]. Those layers are
  frozen in both stages, so stage 1's pass yields it for free and stage 2
  starts from it: its steps skip 47% of their FLOPs at 224x224
  (bench/stage2_prefix.py). It takes disk: 1.5 MiB per view at 224x224, about
  25 GiB for AADB's training set (config.prefix_cache=False turns it off).

Examples keep the same flips, order and dropout as on images, so training on
a cache gives the same parameters up to float rounding (tests check it).
A cache is one file per process part of a split (process i of n computes the
examples it evaluates, `input_pipeline.process_part`, and every process reads
all parts, which needs a filesystem all processes share); its name carries a
digest of everything it depends on (data, preprocessing, the weights of the
layers that produce it, dtype), so a changed input never reads a stale file.
"""

import contextlib
import hashlib
import json
import os
import re
import socket
import time
import zlib

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from aesthetix.data import input_pipeline
from aesthetix.model import multitask as model_lib
from aesthetix.model import vgg16
from aesthetix.runtime import frozen
from aesthetix.runtime import parallel
from aesthetix.runtime import progress
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib

CACHE_DIR = workdir_lib.CACHE_DIR
FEATURES = plan_lib.FEATURES
PREFIX = plan_lib.PREFIX
TRAIN_VIEWS = 2  # The image and its mirror image.
EVAL_VIEWS = 1


def backbone_digest(params, upto=None):
  """sha256 of the backbone weights of the layers up to `upto` (default: all)."""
  layers = vgg16.LAYER_NAMES if upto is None else vgg16.LAYER_NAMES[
      :vgg16.LAYER_NAMES.index(upto) + 1]
  backbone = jax.device_get(params[model_lib.BACKBONE])
  h = hashlib.sha256()
  for name in (n for n in layers if n in backbone):
    for var in sorted(backbone[name]):
      h.update(f'{name}/{var}'.encode())
      h.update(np.ascontiguousarray(backbone[name][var]).tobytes())
  return h.hexdigest()


def cache_key(plan, split, kind, views, digest, layer=None):
  """Digest of what the `kind` cache of `split` depends on."""
  d = plan.data
  parts = dict(
      kind=kind, layer=layer, dataset=d.name, split=split, image_size=d.image_size,
      resize_method=d.resize_method, builder_kwargs=frozen.thaw(d.builder_kwargs),
      max_train_examples=d.max_train_examples if split == d.train_split else 0,
      drop_val_test_overlap=d.drop_val_test_overlap and split == d.val_split,
      examples=input_pipeline.num_examples(d, split), views=views,
      dtype=plan.model.dtype, weights=digest)
  blob = json.dumps(parts, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def make_pass_step(model, layer, kinds):
  """Per-device (params, batch) -> {kind: [b, ...]} for `kinds`, one view.

  With a prefix `layer`, the features continue from its output, so one pass
  yields both. Every split and view runs this one program: the mirror image
  is flipped on the host (`view_batches`), which saves a compilation.
  """
  def step(params, batch):
    images = batch['image']
    if layer is None:
      return {FEATURES: model.apply({'params': params}, images, method=model.features)}
    a = model.apply({'params': params}, images, stop_after=layer, method=model.backbone_prefix)
    out = {PREFIX: a} if PREFIX in kinds else {}
    if FEATURES in kinds:
      out[FEATURES] = model.apply({'params': params}, a, start_after=layer,
                                  method=model.features_from)
    return {kind: x.astype(jnp.float32) for kind, x in out.items()}
  return parallel.per_device(step, in_specs=(parallel.REPLICATED, parallel.SHARDED),
                             out_specs=parallel.SHARDED)


def view_batches(batches, views):
  """Each host batch as stored, then (views 2) mirrored: flipped left-right."""
  for batch in batches:
    yield batch
    if views > 1:
      yield dict(batch, image=np.ascontiguousarray(batch['image'][:, :, ::-1]))


class Rows:
  """A split's cache as one array [examples, views, ...], read from its part files.

  Each process computes the part of the split it evaluates (its contiguous
  range); training reads rows of every part. Indexing with (rows, views)
  integer arrays returns a new array, reading only those rows.
  """

  def __init__(self, parts, starts):
    self.parts, self.starts = parts, np.asarray(starts)
    self.shape = (int(self.starts[-1]) + len(parts[-1]),) + parts[0].shape[1:]

  def __len__(self):
    return self.shape[0]

  def __getitem__(self, key):
    if len(self.parts) == 1:
      return self.parts[0][key]
    rows, views = (np.asarray(k) for k in key)
    out = np.empty((len(rows),) + self.shape[2:], self.parts[0].dtype)
    which = np.searchsorted(self.starts, rows, side='right') - 1
    for p in np.unique(which):
      sel = which == p
      out[sel] = self.parts[p][rows[sel] - self.starts[p], views[sel]]
    return out


def part_path(cache_dir, split, kind, key, index, count):
  """The file of part `index` of `count` (one per process) of a cache."""
  return os.path.join(cache_dir, f'{split}-{kind}-{key}-{index}of{count}.npy')


# A temporary cache file: the final name, the writer's host and process id.
_TMP_PATTERN = re.compile(r'\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)(?:\.npy)?$')


def tmp_path(path, suffix='.npy'):
  return f'{path}.tmp-{socket.gethostname()}-{os.getpid()}{suffix}'


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Someone else's live process.
    return True
  return True


def remove_stale_temporaries(cache_dir):
  """Deletes the temporary files of cache passes whose process is gone.

  A pass killed midway leaves its temporary file (25 GiB for AADB's prefix);
  only files of this host are judged (a pid means nothing on another host),
  and a live process's file is left alone (ablations may share the folder).
  Returns the paths removed.
  """
  removed = []
  if not os.path.isdir(cache_dir):
    return removed
  host = socket.gethostname()
  for name in sorted(os.listdir(cache_dir)):
    match = _TMP_PATTERN.search(name)
    if not match or (match['host'] or host) != host or _alive(int(match['pid'])):
      continue
    path = os.path.join(cache_dir, name)
    try:
      os.remove(path)
    except FileNotFoundError:  # Another process of this host removed it first.
      continue
    logging.warning('Removed %s, left by a cache pass that did not finish.', path)
    removed.append(path)
  return removed


# Bytes read at a time when checksumming a cache file.
_CHECKSUM_CHUNK = 64 * 2**20
# (path, size, mtime) of the cache files whose checksum this process verified.
_VERIFIED = set()


def checksum(path):
  """CRC-32 of a file's bytes (2.1 GiB/s from memory on the development CPU)."""
  crc = 0
  with open(path, 'rb') as f:
    while chunk := f.read(_CHECKSUM_CHUNK):
      crc = zlib.crc32(chunk, crc)
  return crc


def sidecar_path(path):
  """The cache file's record of its shape, dtype and checksum."""
  return f'{path}.json'


def _identity(path):
  stat = os.stat(path)
  return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def part_shapes(image_size, views, layer):
  """{kind: the per-example shape [views, ...]} of the caches of one pass."""
  shapes = {FEATURES: (views, vgg16.OUTPUT_FEATURES)}
  if layer is not None:
    shapes[PREFIX] = (views,) + tuple(vgg16.layer_output_shape(image_size,
                                                               layer))
  return shapes


def check_part(path, shape):
  """None when the cache file `path` holds float32 `shape` and matches its checksum;
  else why not. The checksum is verified on the first check in a process."""
  sidecar = sidecar_path(path)
  if not os.path.exists(sidecar):
    return f'it has no checksum file {os.path.basename(sidecar)} (an interrupted write?)'
  try:
    with open(sidecar) as f:
      record = json.load(f)
    array = np.load(path, mmap_mode='r')
  except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError.
    return f'it cannot be read ({type(e).__name__}: {e})'
  if array.shape != tuple(shape) or array.dtype != np.float32:
    return f'it holds {array.dtype} {array.shape}, not float32 {tuple(shape)}'
  del array
  if record.get('shape') != list(shape) or record.get('bytes') != os.path.getsize(path):
    return 'its size or shape differs from its checksum file'
  identity = _identity(path)
  if identity not in _VERIFIED:
    if checksum(path) != record.get('crc32'):
      return 'its contents do not match their checksum (the file was damaged)'
    _VERIFIED.add(identity)
  return None


def _finish_part(tmp, path):
  """Records the checksum of a written temporary file, then gives it its name."""
  record = dict(shape=list(np.load(tmp, mmap_mode='r').shape), dtype='float32',
                bytes=os.path.getsize(tmp), crc32=checksum(tmp))
  sidecar_tmp = tmp_path(sidecar_path(path), suffix='')
  with open(sidecar_tmp, 'w') as f:
    f.write(workdir_lib.dumps(record))
    f.flush()
    os.fsync(f.fileno())
  os.replace(sidecar_tmp, sidecar_path(path))
  os.replace(tmp, path)
  _VERIFIED.add(_identity(path))


def compute(plan, model, params, split, views, layer, kinds, write):
  """One backbone pass over this process's part of `split`, yielding `kinds`;
  fills the part files `write` {kind: path} (possibly none: every process of
  a run takes part in the pass, even one whose files are whole)."""
  step = make_pass_step(model, layer, tuple(kinds))
  start, end = input_pipeline.process_part(plan.data, split)
  shapes = part_shapes(plan.data.image_size, views, layer)
  tmp = {kind: tmp_path(path) for kind, path in write.items()}
  out = {kind: np.lib.format.open_memmap(tmp[kind], mode='w+', dtype=np.float32,
                                         shape=(end - start,) + shapes[kind])
         for kind in write}
  batches = input_pipeline.eval_batches(plan.data, split, batch_size=plan.eval_batch_size)
  total = input_pipeline.num_examples(plan.data, split) * views  # All processes' images.
  with progress.bar(total, f'Caching frozen layers of {split}'
                    + (' and its mirror images' if views > 1 else '')) as bar:
    for i, (batch, host) in enumerate(parallel.prefetch(view_batches(batches, views))):
      result = step(params, batch)
      keep = host['mask']
      rows = host['index'][keep] - start
      for kind in write:
        out[kind][rows, i % views] = parallel.local_rows(result[kind])[keep]
      bar.update(int(keep.sum()) * parallel.process_count())
  for kind, path in write.items():
    out[kind].flush()
    del out[kind]
    _finish_part(tmp[kind], path)


def load_or_compute(plan, cache_dir, model, params, split, views, wanted, passes=None):
  """{kind: Rows} of the `wanted` caches of `split`, computed where absent or bad.

  params: replicated model params. wanted: {kind: (layer, digest)}, layer
  being the prefix layer (None for features without a prefix). Each process
  computes and checks its own part; all processes then read every part.
  Prefix parts are memory-mapped, not read into memory. A part that fails its
  check (`check_part`) is named, moved to CACHE_DIR/damaged/ and recomputed.
  passes: a list that gets `split` appended when a backbone pass ran.
  """
  index, count = parallel.process_index(), parallel.process_count()
  remove_stale_temporaries(cache_dir)
  layer = wanted[PREFIX][0] if PREFIX in wanted else wanted[FEATURES][0]
  start, end = input_pipeline.process_part(plan.data, split)
  shapes = part_shapes(plan.data.image_size, views, layer)
  parts, write = {}, {}
  for kind, (kind_layer, digest) in wanted.items():
    key = cache_key(plan, split, kind, views, digest, kind_layer)
    parts[kind] = [part_path(cache_dir, split, kind, key, p, count) for p in range(count)]
    own = parts[kind][index]
    if not os.path.exists(own):
      write[kind] = own
      continue
    problem = check_part(own, (end - start,) + shapes[kind])
    if problem:
      logging.warning('The cache file %s is bad: %s. Computing it again.', own, problem)
      workdir_lib.move_aside(cache_dir, own, problem)
      with contextlib.suppress(FileNotFoundError):
        os.remove(sidecar_path(own))
      write[kind] = own
  # The pass is one program over every device: all processes run it, or none.
  if parallel.gather_processes(np.array(len(write) > 0)).any():
    began = time.time()
    with workdir_lib.writing(cache_dir):
      os.makedirs(cache_dir, exist_ok=True)
    compute(plan, model, params, split, views, layer, tuple(parts), write)
    if passes is not None:
      passes.append(split)
    logging.info('Computed %s of %s (%d views) in %.1f s: %s', ', '.join(parts), split,
                 views, time.time() - began,
                 ', '.join(f'{p} ({os.path.getsize(p) / 2**20:.1f} MiB)'
                           for p in write.values()) or 'other processes\' parts')
  parallel.sync(f'feature_cache {split}')
  starts = [parallel.split_range(input_pipeline.num_examples(plan.data, split), p, count)[0]
            for p in range(count)]
  return {kind: Rows([np.load(path, mmap_mode='r' if kind == PREFIX else None)
                      for path in paths], starts)
          for kind, paths in parts.items()}
