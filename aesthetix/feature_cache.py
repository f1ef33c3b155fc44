"""Stage 1's pooled backbone features, computed once per image and mirror image.

While the whole VGG16 is frozen (stage 1), its pooled output is a pure function
of the image and its flip. Computing it once for each (2 backbone passes per
training image, 1 per evaluation image) instead of once per epoch leaves the
head, trained on the same examples, flips, order and dropout, as the only work
of each step.

A cache file holds one process's shard of one split: float32 [n, flips, 512].
Its name carries a digest of everything the features depend on (the data and
its preprocessing, the backbone's weights, the compute dtype, the shard), so a
changed input never reads a stale file.
"""

import hashlib
import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from aesthetix import input_pipeline
from aesthetix import model as model_lib
from aesthetix import parallel

CACHE_DIR = 'feature_cache'


def backbone_digest(params):
  """sha256 of the backbone's parameter values, in a fixed (path) order."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      jax.device_get(params[model_lib.BACKBONE]))[0]:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


def cache_key(config, split, flips, digest):
  """Digest of what the features of `split` depend on."""
  d = config.dataset
  parts = dict(
      dataset=d.name, split=split, image_size=d.image_size,
      resize_method=d.get('resize_method', 'bilinear'),
      builder_kwargs=d.get('builder_kwargs', None),
      max_train_examples=d.max_train_examples if split == d.train_split else 0,
      drop_val_test_overlap=bool(d.drop_val_test_overlap) and split == d.val_split,
      examples=input_pipeline.num_examples(config, split), flips=flips,
      dtype=config.model.dtype, backbone=digest,
      process=(jax.process_index(), jax.process_count()))
  blob = json.dumps(parts, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def make_features_step(model, flips):
  """pmapped (params, batch) -> features [devices, b, flips, F] (mirror second)."""
  def step(params, batch):
    images = batch['image']
    views = [images, images[:, :, ::-1]][:flips]
    return jnp.stack([model.apply({'params': params}, v, method=model.features)
                      for v in views], axis=1)
  return parallel.pmap(step)


def compute(config, model, params, split, flips):
  """float32 [shard examples, flips, F] in the split's index order."""
  step = make_features_step(model, flips)
  batches = input_pipeline.eval_batches(
      config, split, batch_size=parallel.host_batch_size(config.eval_batch_size))
  out = []
  for batch, _ in parallel.prefetch(batches):
    features = parallel.unshard(step(params, batch))
    out.append(features[parallel.unshard(batch['mask'])])
  return np.concatenate(out).astype(np.float32)


def load_or_compute(config, cache_dir, model, params, split, flips, digest):
  """Cached features of `split`; computed and saved when absent.

  params: replicated model params; digest: their `backbone_digest`.
  flips: 2 for training (image, mirror), 1 for evaluation.
  """
  key = cache_key(config, split, flips, digest)
  path = os.path.join(cache_dir, f'{split}-{key}.npy')
  if os.path.exists(path):
    logging.info('Features of %s from %s', split, path)
    return np.load(path)
  start = time.time()
  features = compute(config, model, params, split, flips)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}.npy'
  np.save(tmp, features)
  os.replace(tmp, path)
  logging.info('Computed features of %s (%d x %d views) in %.1f s -> %s', split,
               len(features), flips, time.time() - start, path)
  return features
