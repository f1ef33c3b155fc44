"""Scoring folders of photos: formats, conversions, unreadable files, outputs, copied workdirs."""

import csv
import json
import os
import shutil

from absl import flags
import numpy as np
from PIL import Image
import pytest

from aesthetix.data import image_files
from aesthetix.data import images
from aesthetix.data import input_pipeline
from aesthetix.data import targets
from aesthetix.serving import predict
from aesthetix.serving import scorer
from tests import progress_recorder
from tests import trained_workdir

EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # EXIF: rotate 90 degrees clockwise to display.
BAD_FILES = {'corrupt.jpg': 'cannot read', 'notes.txt': 'not an image', 'empty.png': 'empty file'}


def photo(seed, shape=(40, 56, 3)):
  """Smooth random uint8 pixels (JPEG-friendly, so formats agree closely)."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (5, 7, shape[2]), np.uint8)
  big = Image.fromarray(small.squeeze()).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
  return np.asarray(big)


def write_photos(folder):
  """A folder of good images in many formats and modes, and three bad files."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / 'more').mkdir()
  rgb = photo(0)
  for name in ('rgb.jpg', 'rgb.png', 'rgb.webp', 'rgb.tiff', 'rgb.bmp'):
    Image.fromarray(rgb).save(folder / name, **({'lossless': True} if name.endswith('webp') else {}))
  Image.fromarray(photo(1)[..., 0]).save(folder / 'more' / 'gray.png')
  Image.fromarray(rgb).convert('CMYK').save(folder / 'cmyk.jpg')
  rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
  rgba[:, :10, 3] = 0  # A transparent strip: white once composited.
  Image.fromarray(rgba).save(folder / 'rgba.png')
  Image.fromarray(photo(2)[..., 0].astype(np.uint16) * 257).save(folder / 'sixteen_bit.png')
  frames = [Image.fromarray(photo(3)).convert('P'), Image.fromarray(photo(4)).convert('P')]
  frames[0].save(folder / 'animated.gif', save_all=True, append_images=frames[1:])
  # The same photo stored sideways with an EXIF orientation, and upright.
  upright = photo(5, (56, 40, 3))
  Image.fromarray(upright).save(folder / 'upright.png')
  exif = Image.Exif()
  exif[EXIF_ORIENTATION] = ROTATED_90_CW
  Image.fromarray(np.rot90(upright, k=1)).save(folder / 'more' / 'sideways.png', exif=exif)
  good = open(folder / 'rgb.jpg', 'rb').read()
  (folder / 'corrupt.jpg').write_bytes(good[:len(good) // 3])
  (folder / 'notes.txt').write_text('Shot list for Saturday.\n')
  (folder / 'empty.png').write_bytes(b'')
  (folder / '.hidden.jpg').write_bytes(good)  # Hidden files are left out.
  return folder


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  return write_photos(tmp_path_factory.mktemp('photos') / 'photos')


@pytest.fixture(scope='module')
def scored(trained, photos, tmp_path_factory):
  _, workdir = trained
  output = str(tmp_path_factory.mktemp('scores') / 'scores.csv')
  summary = predict.predict_workdir(workdir, str(photos), output, progress=False)
  return summary, output


def read_scores(path):
  """The rows `predict.write_scores` wrote (CSV or JSON), scores as float or None."""
  with open(path, newline='') as f:
    if path.lower().endswith('.json'):
      return json.load(f)
    rows = list(csv.DictReader(f))
  parse = lambda k, v: v if k in (predict.PATH_COLUMN, predict.ERROR_COLUMN) else (
      float(v) if v != '' else None)
  return [{k: parse(k, v) for k, v in row.items()} for row in rows]


def by_name(rows):
  return {os.path.basename(r[predict.PATH_COLUMN]): r for r in rows}


def test_load_image_converts_every_mode_to_upright_rgb(photos):
  rgb = images.load_image(photos / 'rgb.png')
  assert rgb.dtype == np.uint8 and rgb.shape == (40, 56, 3)
  np.testing.assert_array_equal(images.load_image(photos / 'rgb.tiff'), rgb)
  np.testing.assert_array_equal(images.load_image(photos / 'rgb.webp'), rgb)
  gray = images.load_image(photos / 'more' / 'gray.png')
  assert gray.shape == (40, 56, 3) and np.all(gray[..., 0] == gray[..., 2])
  np.testing.assert_array_equal(images.load_image(photos / 'sixteen_bit.png')[..., 0],
                                photo(2)[..., 0])
  rgba = images.load_image(photos / 'rgba.png')
  assert np.all(rgba[:, :10] == 255)
  np.testing.assert_array_equal(rgba[:, 10:], rgb[:, 10:])
  assert images.load_image(photos / 'cmyk.jpg').shape == (40, 56, 3)
  first = np.asarray(Image.fromarray(photo(3)).convert('P').convert('RGB'))
  np.testing.assert_array_equal(images.load_image(photos / 'animated.gif'), first)
  np.testing.assert_array_equal(images.load_image(photos / 'more' / 'sideways.png'),
                                images.load_image(photos / 'upright.png'))


@pytest.mark.parametrize('name', sorted(BAD_FILES))
def test_load_image_names_the_file_and_the_reason(photos, name):
  with pytest.raises(images.ImageError, match=BAD_FILES[name]) as e:
    images.load_image(photos / name)
  assert name in str(e.value)


def test_a_jpeg_reaches_the_model_as_training_images_do(trained, photos):
  plan, _ = trained
  encoded = open(photos / 'rgb.jpg', 'rb').read()
  size = plan.data.image_size
  np.testing.assert_array_equal(
      images.model_input(images.load_image(photos / 'rgb.jpg'), plan.data),
      input_pipeline.decode_and_resize(encoded, False, size, plan.data.resize_method))


def test_every_file_gets_a_row_and_bad_ones_an_error(scored, photos):
  summary, output = scored
  rows = by_name(read_scores(output))
  expected = {os.path.basename(p) for p in image_files.find_images(str(photos))}
  assert set(rows) == expected and '.hidden.jpg' not in rows
  assert summary['failed'] == len(BAD_FILES) and summary['scored'] == len(rows) - len(BAD_FILES)
  assert summary['images_per_second'] > 0
  names = summary['outputs']
  for name, row in rows.items():
    if name in BAD_FILES:
      assert BAD_FILES[name] in row['error'] and all(row[n] is None for n in names)
    else:
      assert row['error'] == ''
      lo, hi = targets.spec('synthetic_aesthetics').bounds(len(names))
      assert np.all((np.array([row[n] for n in names]) >= lo) &
                    (np.array([row[n] for n in names]) <= hi))
  # The rotated photo is scored as its upright twin; lossless copies as the original.
  for a, b in (('sideways.png', 'upright.png'), ('rgb.png', 'rgb.webp'), ('rgb.png', 'rgb.bmp')):
    np.testing.assert_allclose([rows[a][n] for n in names], [rows[b][n] for n in names],
                               atol=1e-5)


def test_csv_and_json_have_the_same_columns_and_rows(scored, trained, photos, tmp_path):
  summary, csv_path = scored
  _, workdir = trained
  header = open(csv_path).readline().strip().split(',')
  names = targets.spec('synthetic_aesthetics').output_names
  # Each output's score, then its percentile among the training photos' (the
  # workdir keeps their quantiles).
  assert header == ['path', *names, *[f'{n}_percentile' for n in names], 'error']
  json_path = str(tmp_path / 'scores.json')
  predict.predict_workdir(workdir, str(photos), json_path, progress=False)
  records = json.load(open(json_path))
  from_csv = read_scores(csv_path)
  # One row per file, in the same order, in both files and in the summary.
  paths = [r['path'] for r in summary['rows']]
  assert len(paths) == len(image_files.find_images(str(photos)))
  assert [a['path'] for a in from_csv] == [b['path'] for b in records] == paths
  assert [list(r) for r in records] == [header] * len(paths)
  for a, b, row in zip(from_csv, records, summary['rows']):
    assert (a['error'] or None) == b['error'] == (row['error'] or None)
    for n in summary['columns']:
      if row[n] is None:
        assert a[n] is None and b[n] is None
      else:  # Both files hold the score rounded to predict.DECIMALS places.
        assert a[n] == round(row[n], predict.DECIMALS)
        assert abs(b[n] - a[n]) < 1e-6


def test_a_copied_workdir_scores_alike_without_the_dataset(scored, trained, photos, tmp_path):
  summary, _ = scored
  _, workdir = trained
  copy = tmp_path / 'elsewhere'
  shutil.copytree(workdir, copy)
  config_path = copy / 'config.json'
  stored = json.load(open(config_path))
  stored['dataset']['data_dir'] = str(tmp_path / 'no_such_data')  # As on another machine.
  json.dump(stored, open(config_path, 'w'))
  again = predict.predict_workdir(str(copy), str(photos), str(tmp_path / 's.csv'),
                                  progress=False)
  assert not os.path.exists(tmp_path / 'no_such_data')
  assert summary['scored'] > 0 and again['rows'] == summary['rows']


def test_find_images_takes_a_file_a_folder_or_a_glob(photos):
  assert image_files.find_images(str(photos / 'rgb.jpg')) == [str(photos / 'rgb.jpg')]
  assert image_files.find_images(str(photos / '**' / '*.png')) == sorted(
      str(p) for p in photos.rglob('*.png'))
  with pytest.raises(FileNotFoundError, match='matches no files'):
    image_files.find_images(str(photos / '*.heic'))


def test_run_py_predict_mode_writes_the_librarys_scores(trained, photos, scored, tmp_path):
  import run  # pylint: disable=g-import-not-at-top
  _, workdir = trained
  library, _ = scored
  output = str(tmp_path / 'cli.json')
  argv = flags.FLAGS(['run.py', '--mode=predict', f'--workdir={workdir}',
                      f'--images={photos}/rgb.*', f'--output={output}'])
  try:
    assert run.main(argv) == 0
  finally:
    flags.FLAGS.unparse_flags()
  records = json.load(open(output))
  # The command's scores are the library's (the `scored` run, rounded to
  # predict.DECIMALS places in the file) for each of the five files.
  files = image_files.find_images(f'{photos}/rgb.*')
  assert [r['path'] for r in records] == files and len(files) == 5
  rows, names = by_name(library['rows']), library['columns']
  for record in records:
    assert list(record) == predict.columns(names) and record['error'] is None
    row = rows[os.path.basename(record['path'])]
    np.testing.assert_allclose([record[n] for n in names], [row[n] for n in names],
                               rtol=0, atol=10 ** -predict.DECIMALS)


def test_scoring_reports_progress_and_a_steady_rate(trained, photos, tmp_path, monkeypatch):
  _, workdir = trained
  recorder = progress_recorder.Recorder()
  monkeypatch.setattr(predict.progress_lib, 'bar', recorder)
  files = image_files.find_images(str(photos))
  summary = predict.predict_workdir(workdir, str(photos), str(tmp_path / 's.csv'),
                                    batch_size=4)
  bar, = recorder.bars
  assert bar['total'] == bar['done'] == len(files)
  # Batches of 4 (several of them): a rate after the first batch, beside the total one.
  assert summary['steady_images_per_second'] > 0 and summary['images_per_second'] > 0


def test_the_scoring_batch_fits_any_device_count(trained):
  plan, _ = trained
  assert plan.eval_batch_size == 8
  assert scorer.batch_size_for(plan, devices=3) == 9
  assert scorer.batch_size_for(plan, devices=2) == 8
  assert scorer.batch_size_for(plan, devices=3, batch_size=64) == 66


def test_few_photos_are_padded_to_a_power_of_two_not_a_full_batch():
  assert [scorer.padded_rows(n, 64, 2, 1) for n in (1, 2, 3, 5, 33, 64)] == [2, 2, 4, 8, 64, 64]
  assert scorer.padded_rows(1, 66, 3, 1) == 3 and scorer.padded_rows(7, 9, 3, 1) == 9
  assert scorer.padded_rows(1, 64, 2, processes=2) == 64  # One program on every process.


def test_one_photo_scores_as_it_does_within_a_full_batch(trained):
  _, workdir = trained
  model = scorer.Scorer.from_workdir(workdir)
  rng = np.random.default_rng(0)
  full = rng.integers(0, 256, (model.batch_size, model.image_size, model.image_size, 3),
                      np.uint8)
  together = model.score_pixels(full)
  for n in (1, 3):
    np.testing.assert_allclose(model.score_pixels(full[:n]), together[:n], atol=1e-6)
