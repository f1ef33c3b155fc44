"""Builds AADB, EVA and the synthetic set end to end from fixture downloads."""

import io
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from aesthetix.data import targets
from data_builders import manual_files
from data_builders.aadb import aadb_dataset_builder as aadb
from data_builders.eva import eva_dataset_builder as eva
from data_builders.eva import eva_split
from data_builders.synthetic_aesthetics import scene
from data_builders.synthetic_aesthetics import synthetic_aesthetics_dataset_builder as synthetic
from tests import fixtures_data

REPO = pathlib.Path(__file__).resolve().parents[1]


def build(cls, manual_dir, data_dir, **kwargs):
  b = cls(data_dir=str(data_dir), **kwargs)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return b


def examples(b, split):
  """{id: example} of a built split, images decoded."""
  return {ex['id'].decode(): ex for ex in tfds.as_numpy(b.as_dataset(split=split))}


def labels_vector(ex, name):
  return [ex['labels'][n] for n in targets.spec(name).output_names]


def edit_line(path, index, edit):
  """Rewrites line `index` (0-based) of a text file as edit(line), keeping its ending."""
  text = path.read_text()
  lines = text.splitlines()
  lines[index] = edit(lines[index])
  path.write_text('\n'.join(lines) + ('\n' if text.endswith('\n') else ''))


# AADB.

@pytest.mark.parametrize('zipped', [False, True])
def test_aadb_builds_official_lists_joined_by_name(tmp_path, zipped):
  expected = fixtures_data.make_aadb(tmp_path / 'manual', zipped=zipped)
  b = build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')
  overlap = set(expected['validation']) & set(expected['test'])
  assert len(overlap) == 1
  assert b.info.metadata['val_test_overlap'] == sorted(overlap)
  for split in ('train', 'validation', 'test'):
    got = examples(b, split)
    assert b.info.splits[split].num_examples == len(expected[split])
    assert set(got) == set(expected[split])
    for name, ex in got.items():
      # The label files list images in different orders: the join is by name.
      np.testing.assert_allclose(labels_vector(ex, 'aadb'), expected[split][name],
                                 atol=1e-6)
      assert ex['val_test_overlap'] == (name in overlap and split != 'train')
      assert ex['image'].ndim == 3 and ex['image'].shape[2] == 3
  # Test images are stored at their original sizes, found with and without
  # the score prefix.
  sizes = {ex['image'].shape[0] for ex in examples(b, 'test').values()}
  assert len(sizes) == 3


def test_aadb_keeps_jpeg_bytes_as_distributed(tmp_path):
  fixtures_data.make_aadb(tmp_path / 'manual')
  b = build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')
  ds = b.as_dataset(split='train', decoders={'image': tfds.decode.SkipDecoding()})
  for ex in tfds.as_numpy(ds):
    on_disk = (tmp_path / 'manual' / 'datasetImages_warp256' / ex['id'].decode()).read_bytes()
    assert ex['image'] == on_disk


def test_aadb_malformed_label_line_names_file_and_line(tmp_path):
  fixtures_data.make_aadb(tmp_path / 'manual')
  edit_line(tmp_path / 'manual' / 'imgListFiles_label' / 'imgListTrainRegression_Light.txt',
            2, lambda line: line.split()[0] + ' 0.5 extra')
  with pytest.raises(ValueError, match=r'imgListTrainRegression_Light.txt, line 3: expected'):
    build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')


@pytest.mark.parametrize('bad, message', [
    ('abc', 'is not a number'), ('1.500', r'outside \[-1.0, 1.0\]')])
def test_aadb_bad_label_value(tmp_path, bad, message):
  fixtures_data.make_aadb(tmp_path / 'manual')
  edit_line(tmp_path / 'manual' / 'imgListFiles_label' / 'imgListValidationRegression_DoF.txt',
            0, lambda line: line.split()[0] + ' ' + bad)
  with pytest.raises(ValueError, match='imgListValidationRegression_DoF.txt, line 1: .*' + message):
    build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')


def test_aadb_label_files_listing_different_images(tmp_path):
  fixtures_data.make_aadb(tmp_path / 'manual')
  path = tmp_path / 'manual' / 'imgListFiles_label' / 'imgListTestNewRegression_Content.txt'
  path.write_text('\n'.join(path.read_text().splitlines()[1:]))
  with pytest.raises(ValueError, match='Content.txt and .*score.txt list different images'):
    build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')


def test_aadb_missing_label_file(tmp_path):
  fixtures_data.make_aadb(tmp_path / 'manual')
  (tmp_path / 'manual' / 'imgListFiles_label' / 'imgListTrainRegression_Symmetry.txt').unlink()
  with pytest.raises(FileNotFoundError, match='imgListTrainRegression_Symmetry.txt not found'):
    build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')


def test_aadb_listed_image_absent(tmp_path):
  expected = fixtures_data.make_aadb(tmp_path / 'manual')
  name = sorted(expected['train'])[0]
  (tmp_path / 'manual' / 'datasetImages_warp256' / name).unlink()
  with pytest.raises(FileNotFoundError,
                     match=f'1 images listed in .*imgListTrainRegression_score.txt are '
                           f'not in .*datasetImages_warp256: {name}'):
    build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')


def test_aadb_missing_folder_names_what_to_place(tmp_path):
  fixtures_data.make_aadb(tmp_path / 'manual')
  folder = tmp_path / 'manual' / 'AADB_newtest_originalSize'
  for f in folder.iterdir():
    f.unlink()
  folder.rmdir()
  with pytest.raises(FileNotFoundError, match='AADB test images not found .* '
                     'AADB_newtest_originalSize, AADB_newtest, '):
    build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')


def _truncate_an_image(folder):
  path = sorted(pathlib.Path(folder).iterdir())[0]
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


def test_aadb_corrupt_image_fails_naming_it(tmp_path):
  fixtures_data.make_aadb(tmp_path / 'manual')
  path = _truncate_an_image(tmp_path / 'manual' / 'datasetImages_warp256')
  with pytest.raises(ValueError, match=f'{path.name}: image does not decode.*skip_unreadable'):
    build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')


def test_aadb_skip_unreadable_counts_the_skipped(tmp_path):
  expected = fixtures_data.make_aadb(tmp_path / 'manual')
  path = _truncate_an_image(tmp_path / 'manual' / 'datasetImages_warp256')
  split = 'train' if path.name in expected['train'] else 'validation'
  b = build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data', skip_unreadable=True)
  assert b.info.splits[split].num_examples == len(expected[split]) - 1
  assert [pathlib.Path(p).name for p in b.info.metadata['skipped'][split]] == [path.name]
  assert path.name not in examples(b, split)


def test_aadb_non_rgb_image_is_stored_as_rgb_jpeg(tmp_path):
  expected = fixtures_data.make_aadb(tmp_path / 'manual')
  name = sorted(expected['train'])[0]
  gray = Image.new('L', (20, 20), 128)
  gray.save(tmp_path / 'manual' / 'datasetImages_warp256' / name, format='PNG')
  b = build(aadb.Builder, tmp_path / 'manual', tmp_path / 'data')
  image = examples(b, 'train')[name]['image']
  assert image.shape == (20, 20, 3)
  assert abs(int(image.mean()) - 128) <= 1


def test_bare_name_strips_only_the_score_prefix():
  assert aadb.bare_name('0.650_farm1_286_2001_b.jpg') == 'farm1_286_2001_b.jpg'
  assert aadb.bare_name('farm1_286_2001_b.jpg') == 'farm1_286_2001_b.jpg'
  assert aadb.bare_name('1.000_x.jpg') == 'x.jpg'


def test_tfds_build_command(tmp_path):
  """`tfds build data_builders/aadb` works from any directory."""
  fixtures_data.make_aadb(tmp_path / 'manual', zipped=True)
  tfds_cli = pathlib.Path(sys.executable).with_name('tfds')
  result = subprocess.run(
      [str(tfds_cli), 'build', str(REPO / 'data_builders' / 'aadb'),
       f'--manual_dir={tmp_path / "manual"}', f'--data_dir={tmp_path / "data"}'],
      cwd=tmp_path, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''}, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'also appear in the validation list' in result.stdout + result.stderr
  assert sorted(p.name for p in (tmp_path / 'data' / 'aadb' / '1.0.0').glob('*.tfrecord*')) == [
      'aadb-test.tfrecord-00000-of-00001', 'aadb-train.tfrecord-00000-of-00001',
      'aadb-validation.tfrecord-00000-of-00001']


# EVA.

def test_eva_builds_means_counts_and_split(tmp_path):
  votes = fixtures_data.make_eva(tmp_path / 'manual', n_images=12, n_unvoted=2, parts=3)
  b = build(eva.Builder, tmp_path / 'manual', tmp_path / 'data', num_test=3,
            num_validation=2)
  categories = fixtures_data.categories_of(votes)
  ids = eva_split.split_ids(list(votes), num_test=3, num_validation=2)
  assert b.info.metadata['split_ids'] == ids
  seen = set()
  for split, count in (('train', 7), ('validation', 2), ('test', 3)):
    got = examples(b, split)
    assert b.info.splits[split].num_examples == count
    assert sorted(got, key=eva_split.id_sort_key) == ids[split]
    for image_id, ex in got.items():
      rows = np.array(votes[image_id], float)
      np.testing.assert_allclose(labels_vector(ex, 'eva'), rows.mean(0), rtol=1e-6)
      assert ex['vote_count'] == len(rows)
      np.testing.assert_allclose(ex['score_std'], rows[:, 0].std(), rtol=1e-5, atol=1e-6)
      assert ex['category'] == categories[image_id]
    seen |= set(got)
  assert seen == set(votes)  # Images without votes are not part of the dataset.


def test_eva_from_unpacked_folder_without_categories(tmp_path):
  votes = fixtures_data.make_eva(tmp_path / 'manual', n_images=6, folder=True,
                                 categories=False)
  b = build(eva.Builder, tmp_path / 'manual', tmp_path / 'data', num_test=2,
            num_validation=1)
  got = examples(b, 'train') | examples(b, 'test') | examples(b, 'validation')
  assert set(got) == set(votes)
  assert {int(ex['category']) for ex in got.values()} == {-1}


def test_eva_missing_zip_part(tmp_path):
  fixtures_data.make_eva(tmp_path / 'manual', parts=3)
  (tmp_path / 'manual' / 'images' / 'EVA_together.zip.002').unlink()
  with pytest.raises(FileNotFoundError, match=r'missing \[.EVA_together.zip.002.\]'):
    build(eva.Builder, tmp_path / 'manual', tmp_path / 'data', num_test=3, num_validation=2)


def test_eva_malformed_vote_line(tmp_path):
  fixtures_data.make_eva(tmp_path / 'manual')
  edit_line(tmp_path / 'manual' / 'data' / 'votes_filtered.csv', 4,
            lambda line: line.replace('=', ','))
  with pytest.raises(ValueError, match=r'votes_filtered.csv, line 5: expected 13 fields'):
    build(eva.Builder, tmp_path / 'manual', tmp_path / 'data', num_test=3, num_validation=2)


def test_eva_vote_out_of_range(tmp_path):
  fixtures_data.make_eva(tmp_path / 'manual')

  def visual_5(line):  # visual is 1..4
    fields = line.split('=')
    fields[4] = '5'
    return '='.join(fields)

  edit_line(tmp_path / 'manual' / 'data' / 'votes_filtered.csv', 2, visual_5)
  with pytest.raises(ValueError, match=r'line 3: visual 5.0 outside \[1.0, 4.0\]'):
    build(eva.Builder, tmp_path / 'manual', tmp_path / 'data', num_test=3, num_validation=2)


def test_eva_voted_image_absent(tmp_path):
  votes = fixtures_data.make_eva(tmp_path / 'manual', folder=True)
  missing = list(votes)[3]
  (tmp_path / 'manual' / 'images' / 'EVA_together' / f'{missing}.jpg').unlink()
  with pytest.raises(FileNotFoundError, match=f'1 images with votes .* not in .*: {missing}'):
    build(eva.Builder, tmp_path / 'manual', tmp_path / 'data', num_test=3, num_validation=2)


def test_eva_missing_votes_file(tmp_path):
  fixtures_data.make_eva(tmp_path / 'manual')
  (tmp_path / 'manual' / 'data' / 'votes_filtered.csv').unlink()
  with pytest.raises(FileNotFoundError, match='place votes_filtered.csv at .*data/votes_filtered.csv'):
    build(eva.Builder, tmp_path / 'manual', tmp_path / 'data')


def test_eva_category_file_parsing():
  text = '\ufeff"image_id","sort"\r\n"10","3"\r\n"12","6"\r\n'
  assert eva.parse_categories(text.encode('utf-8').decode('utf-8-sig'), 'c.csv') == {
      '10': 3, '12': 6}
  with pytest.raises(ValueError, match=r'c.csv, line 2: category 7 outside 1..6'):
    eva.parse_categories('"image_id","sort"\n"10","7"\n', 'c.csv')


def test_eva_split_is_deterministic_disjoint_and_covering():
  ids = [str(i) for i in np.random.default_rng(1).permutation(np.arange(1, 4071))]
  a = eva_split.split_ids(ids)
  b = eva_split.split_ids(sorted(ids))  # Input order does not matter.
  assert a == b
  assert [len(a[s]) for s in ('train', 'validation', 'test')] == [3150, 350, 570]
  assert len(a['train']) + len(a['validation']) == 3500  # The paper's training set.
  assert set(a['train']) | set(a['validation']) | set(a['test']) == set(ids)
  assert not set(a['train']) & set(a['test'])
  assert not set(a['validation']) & (set(a['train']) | set(a['test']))
  assert eva_split.split_ids(ids, seed=1) != a


def test_eva_split_errors():
  with pytest.raises(ValueError, match='duplicate'):
    eva_split.split_ids(['1', '1', '2', '3'], num_test=1, num_validation=1)
  with pytest.raises(ValueError, match='Cannot take 2 test and 1 validation images from 3'):
    eva_split.split_ids(['1', '2', '3'], num_test=2, num_validation=1)


# Split zips.

def test_concat_reader_matches_the_joined_bytes(tmp_path):
  data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
  paths = []
  for k, (a, b) in enumerate([(0, 300), (300, 301), (301, 1000)]):
    paths.append(tmp_path / f'x.zip.{k + 1:03d}')
    paths[-1].write_bytes(data[a:b])
  reader = io.BufferedReader(manual_files.ConcatReader(paths), buffer_size=64)
  assert reader.read() == data
  reader.seek(295)
  assert reader.read(10) == data[295:305]
  reader.seek(-5, io.SEEK_END)
  assert reader.read() == data[-5:]
  assert [p.name for p in manual_files.split_zip_parts(paths[0])] == [p.name for p in paths]


# Synthetic.

def test_synthetic_examples_are_deterministic_and_in_range():
  jpeg_a, labels_a = synthetic.make_example('train', 3, 32)
  jpeg_b, labels_b = synthetic.make_example('train', 3, 32)
  assert jpeg_a == jpeg_b and labels_a == labels_b
  assert synthetic.make_example('test', 3, 32)[0] != jpeg_a
  spec = targets.spec('synthetic_aesthetics')
  for i in range(20):
    _, labels = synthetic.make_example('validation', i, 32)
    assert set(labels) == set(spec.output_names)
    for name, value in labels.items():
      lo, hi = spec.ranges[name]
      assert lo <= value <= hi, (name, value)


def test_synthetic_labels_follow_the_pixels():
  """Scores respond to what they name, measured from pixels alone."""
  rng = np.random.default_rng(0)
  gray = np.full((32, 32, 3), 0.5)
  vivid = np.zeros((32, 32, 3))
  vivid[..., 0] = 0.9
  assert scene.measure(vivid)['VividColor'] > 0.9 > -0.9 > scene.measure(gray)['VividColor']
  assert scene.measure(gray)['Light'] > scene.measure(gray * 0.1)['Light']
  noise = rng.uniform(size=(32, 32, 3))
  mirrored = np.concatenate([noise[:, :16], noise[:, :16][:, ::-1]], axis=1)
  assert scene.measure(mirrored)['Symmetry'] > 0.95 > 0.5 > scene.measure(noise)['Symmetry']
  stripes = np.repeat(np.sin(np.arange(32) * 2 * np.pi / 6)[None, :, None] * 0.4 + 0.5,
                      32, 0).repeat(3, 2)
  assert scene.measure(stripes)['Repetition'] > 0.8 > scene.measure(noise)['Repetition']
  blurred = scene.box_blur(noise, 7, axes=(1,))
  assert scene.measure(blurred)['MotionBlur'] < 0.0 < 0.9 < scene.measure(noise)['MotionBlur']


def test_synthetic_build(tmp_path):
  sizes = {'train': 6, 'validation': 2, 'test': 3}
  b = synthetic.Builder(data_dir=str(tmp_path), split_sizes=sizes, image_size=32)
  b.download_and_prepare()
  for split, n in sizes.items():
    got = examples(b, split)
    assert len(got) == n
    ex = got[f'{split}_00001']
    jpeg, labels = synthetic.make_example(split, 1, 32)
    assert ex['image'].shape == (32, 32, 3)
    np.testing.assert_allclose(labels_vector(ex, 'synthetic_aesthetics'),
                               [labels[k] for k in targets.spec('aadb').output_names], rtol=1e-6)
