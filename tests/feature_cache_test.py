"""The stage-1 feature cache: what it holds, when it is reused, when rebuilt."""

import dataclasses
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from aesthetix.data import input_pipeline
from aesthetix.model import multitask as model_lib
from aesthetix.runtime import parallel
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import feature_cache
from aesthetix.training import plan as plan_lib
from aesthetix.training import steps
from tests import progress_recorder
from tests import tiny


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  plan = tiny.plan(tiny.config(tmp_path_factory.mktemp('data')))
  model = model_lib.build_model(plan.model)
  params = steps.initial_state(plan, model, jax.random.PRNGKey(0))['params']
  return plan, model, params


def test_features_are_the_backbone_on_image_and_mirror(setup, tmp_path):
  plan, model, params = setup
  replicated = parallel.replicate(params)
  layer = 'block4_conv1'
  kinds = {feature_cache.FEATURES: (layer, feature_cache.backbone_digest(params)),
           feature_cache.PREFIX: (layer, feature_cache.backbone_digest(params, layer))}
  cached = feature_cache.load_or_compute(plan, str(tmp_path), model, replicated,
                                         'train', 2, kinds)
  features, prefix = cached[feature_cache.FEATURES], cached[feature_cache.PREFIX]
  assert features.shape == (tiny.SPLIT_SIZES['train'], 2, 512)
  assert prefix.shape == (tiny.SPLIT_SIZES['train'], 2, 4, 4, 512)
  # Every row, in one batch here: the pass ran batches of plan.eval_batch_size (8).
  batch = next(input_pipeline.eval_batches(plan.data, 'train',
                                           batch_size=tiny.SPLIT_SIZES['train']))
  assert batch['mask'].all() and list(batch['index']) == list(range(len(features)))
  for view, images in enumerate((batch['image'], batch['image'][:, :, ::-1])):
    direct = model.apply({'params': params}, images, method=model.features)
    np.testing.assert_allclose(features[:, view], direct, rtol=1e-4, atol=1e-5)
    direct = model.apply({'params': params}, images, stop_after=layer,
                         method=model.backbone_prefix)
    np.testing.assert_allclose(prefix[:, view], direct, rtol=1e-4, atol=1e-5)


def test_prefix_layer_is_below_every_trained_layer(setup):
  plan, _, _ = setup
  first, second = plan.stages
  assert first.prefix_layer == second.prefix_layer == 'block4_conv1'
  assert plan_lib.prefix_layer(first.trainable_layers) is None
  assert plan_lib.prefix_layer(('block5_conv1', 'block3_conv2')) == 'block3_conv1'
  assert plan_lib.prefix_layer(('block1_conv1',)) is None


def test_cache_is_reused_and_keyed_by_what_it_depends_on(setup, tmp_path):
  plan, model, params = setup
  replicated = parallel.replicate(params)
  digest = feature_cache.backbone_digest(params)
  kinds = {feature_cache.FEATURES: (None, digest)}
  first = feature_cache.load_or_compute(plan, str(tmp_path), model, replicated,
                                        'validation', 1, kinds)
  files = sorted(os.listdir(tmp_path))
  assert len(files) == 2 and files[1] == feature_cache.sidecar_path(files[0])  # Its checksum.
  mtime = os.path.getmtime(tmp_path / files[0])
  again = feature_cache.load_or_compute(plan, str(tmp_path), model, replicated,
                                        'validation', 1, kinds)
  np.testing.assert_array_equal(first[feature_cache.FEATURES], again[feature_cache.FEATURES])
  assert sorted(os.listdir(tmp_path)) == files  # Reused, not rebuilt.
  assert os.path.getmtime(tmp_path / files[0]) == mtime

  other = jax.tree_util.tree_map(lambda x: x, params)
  other['vgg16']['block5_conv3']['bias'] = other['vgg16']['block5_conv3']['bias'] + 1
  assert feature_cache.backbone_digest(other) != digest
  # The prefix below block4_conv2 does not depend on block5's weights.
  assert (feature_cache.backbone_digest(other, 'block4_conv1') ==
          feature_cache.backbone_digest(params, 'block4_conv1'))
  key = lambda c=plan, views=1, d=digest, kind='features': feature_cache.cache_key(
      c, 'validation', kind, views, d)
  changed = dataclasses.replace(plan, data=dataclasses.replace(plan.data, image_size=48))
  keys = {key(), key(d=feature_cache.backbone_digest(other)), key(c=changed), key(views=2),
          key(kind='prefix')}
  assert len(keys) == 5


def test_feature_batches_replay_the_image_epoch(setup):
  plan, _, _ = setup
  features = np.arange(tiny.SPLIT_SIZES['train'] * 2 * 3, dtype=np.float32).reshape(-1, 2, 3)
  kwargs = dict(batch_size=tiny.BATCH_SIZE, epoch=3, seed=7)
  images = list(input_pipeline.train_batches(plan.data, 'train', **kwargs))
  cached = list(input_pipeline.train_feature_batches(plan.data, 'train', features, **kwargs))
  assert len(images) == len(cached)
  flips = input_pipeline.flip_decisions(7, 3, np.concatenate([b['index'] for b in images]))
  seen = np.concatenate([b['features'] for b in cached])
  index = np.concatenate([b['index'] for b in cached])
  np.testing.assert_array_equal(index, np.concatenate([b['index'] for b in images]))
  np.testing.assert_array_equal(seen, features[index, flips.astype(int)])
  for a, b in zip(images, cached):
    np.testing.assert_array_equal(a['target'], b['target'])
    np.testing.assert_array_equal(a['mask'], b['mask'])


def test_temporaries_of_dead_passes_are_removed_and_live_ones_kept(tmp_path):
  finished = subprocess.Popen(['true'])  # Its pid is free again once it exits.
  finished.wait()
  host = socket.gethostname()
  names = {
      'dead': f'train-prefix-abc-0of1.npy.tmp-{host}-{finished.pid}.npy',
      'dead_old_format': f'train-prefix-abc.npy.tmp-{finished.pid}.npy',
      'alive': f'train-prefix-abc-0of1.npy.tmp-{host}-{os.getpid()}.npy',
      'other_host': f'train-prefix-abc-0of1.npy.tmp-{host}x-{finished.pid}.npy',
      'cache': 'train-prefix-abc-0of1.npy',
  }
  for name in names.values():
    (tmp_path / name).write_bytes(b'x')
  removed = workdir_lib.remove_stale_temporaries(str(tmp_path))
  assert sorted(os.path.basename(p) for p in removed) == sorted(
      [names['dead'], names['dead_old_format']])
  assert sorted(os.listdir(tmp_path)) == sorted(
      [names['alive'], names['other_host'], names['cache']])


@pytest.mark.parametrize('damage', ['truncated', 'overwritten'])
def test_a_damaged_cache_file_is_named_moved_aside_and_computed_again(setup, tmp_path,
                                                                      damage, caplog):
  plan, model, params = setup
  replicated = parallel.replicate(params)
  kinds = {feature_cache.FEATURES: (None, feature_cache.backbone_digest(params))}
  good = np.array(feature_cache.load_or_compute(
      plan, str(tmp_path), model, replicated, 'validation', 1, kinds)[feature_cache.FEATURES][:])
  path = next(str(tmp_path / n) for n in os.listdir(tmp_path) if n.endswith('.npy'))
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    if damage == 'truncated':
      f.truncate(size - 100)
    else:  # 4 KiB of another file's bytes in the middle: only the checksum can tell.
      f.seek(size // 2 - 2048)
      f.write(np.random.default_rng(0).bytes(min(4096, size // 2)))
  again = feature_cache.load_or_compute(plan, str(tmp_path), model, replicated,
                                        'validation', 1, kinds)
  np.testing.assert_array_equal(again[feature_cache.FEATURES][:], good)
  assert f'The cache file {path} is bad' in caplog.text
  assert ('cannot be read' if damage == 'truncated' else 'do not match their checksum') in (
      caplog.text)
  moved, = os.listdir(tmp_path / 'damaged')
  assert moved.startswith(os.path.basename(path))


KILLED_PASS = """
import os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
sys.path.insert(0, {repo!r})
import jax
from aesthetix.model import multitask as model_lib
from aesthetix.runtime import parallel
from aesthetix.training import feature_cache, train
from aesthetix.training import steps
from tests import progress_recorder
from tests import tiny
config = tiny.plan(tiny.config({data!r}))
model = model_lib.build_model(config.model)
params = steps.initial_state(config, model, jax.random.PRNGKey(0))['params']
real = feature_cache.compute
def slow(*args, **kwargs):  # Pauses inside the pass, after its temporary file exists.
  real_prefetch = parallel.prefetch
  def prefetch(*a, **k):
    for i, item in enumerate(real_prefetch(*a, **k)):
      if i == 1:
        print('in the pass', flush=True)
        import time; time.sleep(600)
      yield item
  parallel.prefetch = prefetch
  return real(*args, **kwargs)
feature_cache.compute = slow
kinds = {{feature_cache.FEATURES: (None, feature_cache.backbone_digest(params))}}
feature_cache.load_or_compute(config, {cache!r}, model, parallel.replicate(params),
                              'train', 2, kinds)
"""


def test_no_temporary_survives_a_killed_cache_pass_and_a_rerun(setup, tmp_path):
  plan, model, params = setup
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = KILLED_PASS.format(repo=repo, data=plan.data.data_dir, cache=str(tmp_path))
  proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  try:
    assert proc.stdout.readline().strip() == 'in the pass'
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  assert any('.tmp-' in n for n in os.listdir(tmp_path))  # What a kill leaves.
  kinds = {feature_cache.FEATURES: (None, feature_cache.backbone_digest(params))}
  cached = feature_cache.load_or_compute(plan, str(tmp_path), model,
                                         parallel.replicate(params), 'train', 2, kinds)
  assert cached[feature_cache.FEATURES].shape == (tiny.SPLIT_SIZES['train'], 2, 512)
  assert not [n for n in os.listdir(tmp_path) if '.tmp-' in n]


def test_the_cache_pass_reports_its_progress(setup, tmp_path, monkeypatch):
  plan, model, params = setup
  recorder = progress_recorder.Recorder()
  monkeypatch.setattr(feature_cache.progress, 'bar', recorder)
  kinds = {feature_cache.FEATURES: (None, feature_cache.backbone_digest(params))}
  feature_cache.load_or_compute(plan, str(tmp_path), model, parallel.replicate(params),
                                'train', 2, kinds)
  bar, = recorder.bars
  assert bar['total'] == bar['done'] == tiny.SPLIT_SIZES['train'] * 2
  assert 'train' in bar['desc'] and 'mirror' in bar['desc']
