"""The stage-1 feature cache: what it holds, when it is reused, when rebuilt."""

import os

import jax
import numpy as np
import pytest

from aesthetix import feature_cache
from aesthetix import input_pipeline
from aesthetix import model as model_lib
from aesthetix import parallel
from aesthetix import train
from tests import tiny


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  config = tiny.config(tmp_path_factory.mktemp('data'))
  model = model_lib.build_model(config)
  params = train.initial_state(config, model, jax.random.PRNGKey(0))['params']
  return config, model, params


def test_features_are_the_backbone_on_image_and_mirror(setup, tmp_path):
  config, model, params = setup
  replicated = parallel.replicate(params)
  digest = feature_cache.backbone_digest(params)
  features = feature_cache.load_or_compute(config, str(tmp_path), model, replicated,
                                           'train', 2, digest)
  assert features.shape == (tiny.SPLIT_SIZES['train'], 2, 512)
  batch = next(input_pipeline.eval_batches(config, 'train', batch_size=4))
  direct = model.apply({'params': params}, batch['image'], method=model.features)
  mirrored = model.apply({'params': params}, batch['image'][:, :, ::-1],
                         method=model.features)
  np.testing.assert_allclose(features[:4, 0], direct, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(features[:4, 1], mirrored, rtol=1e-4, atol=1e-5)


def test_cache_is_reused_and_keyed_by_what_it_depends_on(setup, tmp_path):
  config, model, params = setup
  replicated = parallel.replicate(params)
  digest = feature_cache.backbone_digest(params)
  first = feature_cache.load_or_compute(config, str(tmp_path), model, replicated,
                                        'validation', 1, digest)
  files = os.listdir(tmp_path)
  assert len(files) == 1
  again = feature_cache.load_or_compute(config, str(tmp_path), model, replicated,
                                        'validation', 1, digest)
  np.testing.assert_array_equal(first, again)
  assert os.listdir(tmp_path) == files  # Reused, not rebuilt.

  other = jax.tree_util.tree_map(lambda x: x, params)
  other['vgg16']['block1_conv1']['bias'] = other['vgg16']['block1_conv1']['bias'] + 1
  assert feature_cache.backbone_digest(other) != digest
  keys = {feature_cache.cache_key(config, 'validation', 1, digest)}
  keys.add(feature_cache.cache_key(config, 'validation', 1, feature_cache.backbone_digest(other)))
  changed = config.copy_and_resolve_references()
  changed.dataset.image_size = 48
  keys.add(feature_cache.cache_key(changed, 'validation', 1, digest))
  keys.add(feature_cache.cache_key(config, 'validation', 2, digest))
  assert len(keys) == 4


def test_feature_batches_replay_the_image_epoch(setup):
  config, _, _ = setup
  features = np.arange(tiny.SPLIT_SIZES['train'] * 2 * 3, dtype=np.float32).reshape(-1, 2, 3)
  kwargs = dict(batch_size=tiny.BATCH_SIZE, epoch=3, seed=7)
  images = list(input_pipeline.train_batches(config, 'train', **kwargs))
  cached = list(input_pipeline.train_feature_batches(config, 'train', features, **kwargs))
  assert len(images) == len(cached)
  flips = input_pipeline.flip_decisions(7, 3, np.concatenate([b['index'] for b in images]))
  seen = np.concatenate([b['features'] for b in cached])
  index = np.concatenate([b['index'] for b in cached])
  np.testing.assert_array_equal(index, np.concatenate([b['index'] for b in images]))
  np.testing.assert_array_equal(seen, features[index, flips.astype(int)])
  for a, b in zip(images, cached):
    np.testing.assert_array_equal(a['target'], b['target'])
    np.testing.assert_array_equal(a['mask'], b['mask'])
