"""Tests for aesthetix/input_pipeline.py on small built datasets."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from aesthetix.data import datasets
from aesthetix.data import input_pipeline
from aesthetix.data import targets
from configs import common
from data_builders.synthetic_aesthetics import synthetic_aesthetics_dataset_builder as synthetic
from tests import fixtures_data
from tests import tiny

SIZES = {'train': 13, 'validation': 5, 'test': 7}
IMAGE_SIZE = 32


def data_of(config):
  """The DataSpec of a config (what the input pipeline takes)."""
  return tiny.plan(config).data


def make_config(name, data_dir, manual_dir=None, image_size=IMAGE_SIZE):
  config = common.base_config(name, dropout=0.0, table2_output=0)
  config.dataset.data_dir = str(data_dir)
  if manual_dir is not None:
    config.dataset.manual_dir = str(manual_dir)
  config.dataset.image_size = image_size
  return config


@pytest.fixture(scope='module')
def synthetic_config(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('synthetic')
  synthetic.Builder(data_dir=str(data_dir), split_sizes=SIZES,
                    image_size=IMAGE_SIZE).download_and_prepare()
  return make_config('synthetic_aesthetics', data_dir)


@pytest.fixture(autouse=True)
def _fresh_cache():
  input_pipeline.clear_cache()
  yield
  input_pipeline.clear_cache()


def collect(batches):
  batches = list(batches)
  return batches, {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_eval_batches_cover_every_example_once_with_a_padded_last_batch(synthetic_config):
  batches, all_ = collect(input_pipeline.eval_batches(data_of(synthetic_config), 'test', batch_size=4))
  assert len(batches) == 2
  for b in batches:
    assert b['image'].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3) and b['image'].dtype == np.uint8
    assert b['target'].shape == (4, 12) and b['target'].dtype == np.float32
    assert b['index'].dtype == np.int32 and b['mask'].dtype == bool
    assert b['id'].shape == (4,)
  last = batches[-1]
  assert last['mask'].tolist() == [True, True, True, False]
  assert last['id'][3] == '' and last['index'][3] == -1 and not last['image'][3].any()
  mask = all_['mask']
  assert all_['index'][mask].tolist() == list(range(SIZES['test']))
  assert all_['id'][mask].tolist() == input_pipeline.split_ids(data_of(synthetic_config), 'test')
  assert input_pipeline.num_examples(data_of(synthetic_config), 'test') == SIZES['test']


def test_targets_are_in_unit_scale(synthetic_config):
  b = datasets.builder(data_of(synthetic_config))
  raw = {ex['id'].decode(): [ex['labels'][n] for n in targets.spec('aadb').output_names]
         for ex in tfds.as_numpy(b.as_dataset(split='validation'))}
  _, all_ = collect(input_pipeline.eval_batches(data_of(synthetic_config), 'validation', batch_size=8))
  for i, image_id in enumerate(all_['id'][all_['mask']]):
    np.testing.assert_allclose(
        all_['target'][i], targets.spec('synthetic_aesthetics').to_unit(np.array(raw[image_id])),
        rtol=1e-6)
  assert 0.0 <= all_['target'].min() and all_['target'].max() <= 1.0


def test_eval_image_is_the_stored_image_decoded_as_pil_does(synthetic_config):
  """At its own size an image comes out as PIL (Keras' loader) decodes it."""
  b = datasets.builder(data_of(synthetic_config))
  ds = b.as_dataset(split='test', decoders={'image': tfds.decode.SkipDecoding()})
  stored = {ex['id'].decode(): ex['image'] for ex in tfds.as_numpy(ds)}
  batch = next(input_pipeline.eval_batches(data_of(synthetic_config), 'test', batch_size=4))
  for image, image_id in zip(batch['image'], batch['id']):
    pil = np.asarray(Image.open(io.BytesIO(stored[image_id])).convert('RGB'))
    np.testing.assert_array_equal(image, pil)


def test_train_epoch_is_a_seeded_permutation_with_index_keyed_flips(synthetic_config):
  def epoch(e, seed=0):
    return collect(input_pipeline.train_batches(data_of(synthetic_config), 'train', batch_size=4,
                                                epoch=e, seed=seed))
  batches, a = epoch(0)
  assert len(batches) == 4 and a['mask'].sum() == SIZES['train']
  assert sorted(a['index'][a['mask']]) == list(range(SIZES['train']))
  _, again = epoch(0)
  for k in a:
    np.testing.assert_array_equal(a[k], again[k])
  _, other = epoch(1)
  assert a['index'].tolist() != other['index'].tolist()
  _, other_seed = epoch(0, seed=1)
  assert a['index'].tolist() != other_seed['index'].tolist()

  _, plain = collect(input_pipeline.eval_batches(data_of(synthetic_config), 'train', batch_size=4))
  m = a['mask']
  flips = input_pipeline.flip_decisions(0, 0, a['index'][m])
  assert 0 < flips.sum() < m.sum()
  for image, index, flip in zip(a['image'][m], a['index'][m], flips):
    expected = plain['image'][index]
    np.testing.assert_array_equal(image, expected[:, ::-1] if flip else expected)
  np.testing.assert_array_equal(a['id'][m], plain['id'][a['index'][m]])


def test_flip_decisions():
  idx = np.arange(10_000)
  f = input_pipeline.flip_decisions(3, 2, idx)
  assert f.dtype == bool and 0.47 < f.mean() < 0.53
  np.testing.assert_array_equal(input_pipeline.flip_decisions(3, 2, idx[::-1]), f[::-1])
  assert (input_pipeline.flip_decisions(3, 1, idx) != f).mean() > 0.4
  assert (input_pipeline.flip_decisions(4, 2, idx) != f).mean() > 0.4


def test_max_train_examples_takes_the_first_by_index(synthetic_config):
  config = synthetic_config.copy_and_resolve_references()
  all_ids = input_pipeline.split_ids(data_of(config), 'train')
  config.dataset.max_train_examples = 5
  assert input_pipeline.num_examples(data_of(config), 'train') == 5
  assert input_pipeline.split_ids(data_of(config), 'train') == all_ids[:5]
  _, a = collect(input_pipeline.train_batches(data_of(config), 'train', batch_size=4, epoch=0, seed=0))
  assert sorted(a['index'][a['mask']]) == list(range(5))
  # Other splits are untouched.
  assert input_pipeline.num_examples(data_of(config), 'validation') == SIZES['validation']


@pytest.mark.parametrize('count', [2, 4])
def test_processes_feed_their_slice_of_every_global_batch(synthetic_config, count):
  """One global permutation: n processes feed the batches one process would."""
  kwargs = dict(batch_size=4, epoch=1, seed=5)
  alone = list(input_pipeline.train_batches(data_of(synthetic_config), 'train', **kwargs))
  parts = [list(input_pipeline.train_batches(data_of(synthetic_config), 'train', process=(p, count),
                                             **kwargs)) for p in range(count)]
  assert all(len(p) == len(alone) for p in parts)
  for k, whole in enumerate(alone):
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([p[k][key] for p in parts]), whole[key])
  features = np.arange(SIZES['train'] * 2, dtype=np.float32).reshape(-1, 2, 1)
  for p in range(count):
    cached = input_pipeline.train_feature_batches(data_of(synthetic_config), 'train', features,
                                                  process=(p, count), **kwargs)
    for images, rows in zip(parts[p], cached):
      np.testing.assert_array_equal(images['index'], rows['index'])


def test_processes_evaluate_contiguous_parts_with_equal_batch_counts(synthetic_config):
  per_process = [collect(input_pipeline.eval_batches(data_of(synthetic_config), 'test', batch_size=2,
                                                     process=(p, 2))) for p in range(2)]
  (b0, a0), (b1, a1) = per_process
  assert len(b0) == len(b1) == 4  # 7 examples: parts of 4 and 3, one row per batch.
  assert a0['index'][a0['mask']].tolist() == [0, 1, 2, 3]
  assert a1['index'][a1['mask']].tolist() == [4, 5, 6] and a1['index'][-1] == -1
  ids = input_pipeline.split_ids(data_of(synthetic_config), 'test')
  for a in (a0, a1):
    assert [ids[i] for i in a['index'][a['mask']]] == a['id'][a['mask']].tolist()


def test_builder_prepares_aadb_on_demand_and_drops_the_overlap(tmp_path):
  expected = fixtures_data.make_aadb(tmp_path / 'manual', n_train=4, n_val=4, n_test=3,
                                     n_overlap=2, zipped=True)
  config = make_config('aadb', tmp_path / 'data', tmp_path / 'manual', image_size=24)
  assert input_pipeline.num_examples(data_of(config), 'validation') == 4
  assert datasets.builder(data_of(config)).is_prepared()
  overlap = set(expected['validation']) & set(expected['test'])

  config.dataset.drop_val_test_overlap = True
  assert input_pipeline.num_examples(data_of(config), 'validation') == 2
  ids = input_pipeline.split_ids(data_of(config), 'validation')
  assert set(ids) == set(expected['validation']) - overlap
  _, a = collect(input_pipeline.eval_batches(data_of(config), 'validation', batch_size=3))
  assert a['id'][a['mask']].tolist() == ids and a['index'][a['mask']].tolist() == [0, 1]
  # The test split keeps all of its images; its originals of several sizes are resized.
  _, t = collect(input_pipeline.eval_batches(data_of(config), 'test', batch_size=3))
  assert t['mask'].sum() == 3 and t['image'].shape[1:] == (24, 24, 3)
  for image_id, target in zip(t['id'], t['target']):
    np.testing.assert_allclose(
        targets.spec('aadb').from_unit(target), expected['test'][image_id], atol=1e-6)


def test_builder_without_downloads_says_where_to_put_them(tmp_path):
  config = make_config('aadb', tmp_path / 'data', tmp_path / 'nothing_here')
  with pytest.raises(FileNotFoundError, match='manual_dir|Manual directory'):
    datasets.builder(data_of(config))


def test_unknown_dataset(tmp_path):
  config = make_config('aadb', tmp_path)
  config.dataset.name = 'ava'
  with pytest.raises(targets.UnknownDatasetError, match='Unknown dataset'):
    tiny.plan(config)


def test_decode_and_resize_rounds_and_flips():
  pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  encoded = tf.io.encode_jpeg(pixels, quality=100)
  decoded = tf.io.decode_jpeg(encoded, channels=3, dct_method='INTEGER_ACCURATE').numpy()
  same = input_pipeline.decode_and_resize(encoded, False, 8).numpy()
  np.testing.assert_array_equal(same, decoded)
  flipped = input_pipeline.decode_and_resize(encoded, True, 8).numpy()
  np.testing.assert_array_equal(flipped, decoded[:, ::-1])
  small = input_pipeline.decode_and_resize(encoded, False, 4).numpy()
  assert small.shape == (4, 4, 3) and small.dtype == np.uint8


def test_decoding_once_gives_the_same_batches_as_decoding_every_epoch(tmp_path):
  config = tiny.config(tmp_path)
  for kwargs in (dict(epoch=0, seed=3), dict(epoch=1, seed=3)):
    batches = {}
    for cached in (False, True):
      config.dataset.cache_decoded = cached
      batches[cached] = list(input_pipeline.train_batches(data_of(config), 'train', batch_size=tiny.BATCH_SIZE, **kwargs))
    assert len(batches[True]) == len(batches[False])
    for a, b in zip(batches[True], batches[False]):
      assert set(a) == set(b)
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])
  config.dataset.cache_decoded = True
  evaluated = list(input_pipeline.eval_batches(data_of(config), 'test', batch_size=5))
  config.dataset.cache_decoded = False
  for a, b in zip(evaluated, input_pipeline.eval_batches(data_of(config), 'test', batch_size=5)):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['mask'], b['mask'])
