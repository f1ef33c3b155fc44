"""A user's own rated photos: from a folder and a spreadsheet to a trained model and scores.

The fixture folder is what a photographer would have: nested shoots in JPEG,
PNG and WebP, a ratings CSV (one row per photo, or one per vote) and a
dataset.json declaring an overall score and three attributes of different ranges.
"""

import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aesthetix.model import audit
from aesthetix.serving import gradcam
from aesthetix.serving import predict
from aesthetix.serving import scorer as scorer_lib
from aesthetix.training import plan as plan_lib
from configs import rated_photos as rated_config
from data_builders.rated_photos import rated_photos_dataset_builder as rated
from data_builders.rated_photos import ratings
from tests import cli_test
from tests import fixtures_data
from tests import gradcam_test
from tests import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
NAMES = list(fixtures_data.RATED_OUTPUTS)
TINY_RUN = ('--config.dataset.image_size=32', '--config.model.backbone_weights=random',
            '--config.stage1.epochs=1', '--config.stage2.epochs=1',
            f'--config.stage1.batch_size={tiny.BATCH_SIZE}',
            f'--config.stage2.batch_size={tiny.BATCH_SIZE}',
            f'--config.eval_batch_size={tiny.BATCH_SIZE}', '--config.stage2.decay_steps=2')


def run_py(*args):
  """run.py's exit code and stderr, run as a user runs it."""
  result, _ = cli_test.run_py(*args)
  return result.returncode, result.stderr


def snapshot(folder):
  """{path: (size, mtime)} of everything in `folder`: what a build must not touch."""
  return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in pathlib.Path(folder).rglob('*')}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A two-stage run on a folder of per-vote ratings, through run.py, and its report."""
  tmp = tmp_path_factory.mktemp('rated')
  photos, _ = fixtures_data.make_rated(tmp / 'photos', n_images=40, votes=True)
  before = snapshot(photos)
  workdir = tmp / 'W'
  code, stderr = run_py('--config=configs/rated_photos.py', f'--workdir={workdir}',
                        f'--config.dataset.manual_dir={photos}',
                        f'--config.dataset.data_dir={tmp / "data"}', *TINY_RUN)
  assert code == 0, stderr[-3000:]
  code, stderr = run_py('--mode=report', f'--workdir={workdir}')
  assert code == 0, stderr[-3000:]
  assert snapshot(photos) == before  # Nothing in the user's folder is written.
  return photos, workdir


def test_the_run_names_the_users_outputs_in_their_own_scale(trained, tmp_path):
  photos, workdir = trained
  results = json.loads((workdir / 'results.json').read_text())
  assert results['outputs'] == NAMES
  stored = json.loads((workdir / 'config.json').read_text())['dataset']['outputs']
  assert stored == [[n, *map(float, r)] for n, r in fixtures_data.RATED_OUTPUTS.items()]
  report_md = (workdir / 'report.md').read_text()
  assert all(f'| {n} |' in report_md for n in NAMES) and '![' in report_md
  scorer = scorer_lib.Scorer.from_workdir(str(workdir))
  assert scorer.names == tuple(NAMES)
  assert scorer.params['head']['output']['kernel'].shape[-1] == len(NAMES)
  # A copied workdir (config and checkpoints alone) scores without the photos' folder.
  copy = tmp_path / 'copy'
  copy.mkdir()
  shutil.copy(workdir / 'config.json', copy)
  shutil.copytree(workdir / 'checkpoints', copy / 'checkpoints')
  output = tmp_path / 'scores.csv'
  predict.predict_workdir(str(copy), str(photos / 'shoots'), str(output), progress=False)
  with open(output) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == [predict.PATH_COLUMN, *NAMES, 'error'] and len(rows) == 40
  for name, (lo, hi) in fixtures_data.RATED_OUTPUTS.items():
    values = np.array([float(r[name]) for r in rows])
    assert np.all((values >= lo) & (values <= hi)), name
  assert np.mean([float(r['color']) for r in rows]) > 1  # The 0-10 scale, not [0, 1].


def test_grad_cam_takes_the_users_output_names(trained, tmp_path, monkeypatch):
  photos, workdir = trained
  drawn = gradcam_test.record_figures(monkeypatch)
  day0 = photos / 'shoots' / 'day0'
  written, failed = gradcam.gradcam_workdir(str(workdir), str(day0), str(tmp_path / 'cams'),
                                            target='mood')
  sources = sorted(day0.iterdir())
  assert len(written) == len(sources) and not failed
  # The maps are those of 'mood' (the user's third output), at the default layer.
  figures = gradcam.output_paths([str(p) for p in sources], str(tmp_path / 'cams'), str(day0))
  assert sorted(written) == sorted(drawn) == sorted(figures)
  gradcam_test.assert_maps_are_of_output(drawn, figures, str(workdir), sources,
                                         gradcam.DEFAULT_LAYER, NAMES.index('mood'))
  with pytest.raises(ValueError, match='sharpness'):
    gradcam.target_index(scorer_lib.Scorer.from_workdir(str(workdir)).names, 'Light')


def test_the_audit_compares_what_table2_has_for_a_users_outputs(tmp_path):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  config = rated_config.get_config()
  config.dataset.manual_dir = str(photos)
  plan = plan_lib.resolve(config)
  counts, _, mismatches, summary = audit.run_audit(plan.model, plan.data.image_size,
                                                   plan.table2, plan.table2_pan)
  assert mismatches == [] and 'no output layer' in summary
  assert counts['output'] == 64 * len(NAMES) + len(NAMES)


def build(manual_dir, data_dir, **kwargs):
  b = rated.Builder(manual_dir=str(manual_dir), data_dir=str(data_dir), **kwargs)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return b


def examples(b):
  out = {}
  for split in ratings.SPLITS:
    ds = b.as_dataset(split=split, decoders={'image': tfds.decode.SkipDecoding()})
    out.update({ex['id'].decode(): (split, ex) for ex in tfds.as_numpy(ds)})
  return out


def test_votes_become_numpys_means_counts_and_standard_deviations(tmp_path):
  photos, rows = fixtures_data.make_rated(tmp_path / 'photos', n_images=12, votes=True,
                                          votes_per_image=3)
  rows[1]['mood'] = ''  # A rater who left one attribute out: that vote does not count for it.
  header = list(rows[0])
  (photos / 'ratings.csv').write_text('\n'.join(
      [','.join(header)] + [','.join(r[h] for h in header) for r in rows]) + '\n')
  got = examples(build(photos, tmp_path / 'data'))
  assert len(got) == 12
  for image in {r['image'] for r in rows}:
    mine = [r for r in rows if r['image'] == image]
    _, ex = got[image]
    assert ex['vote_count'] == len(mine)
    for name in NAMES:
      votes = np.array([float(r[name]) for r in mine if r[name]])
      np.testing.assert_allclose(ex['labels'][name], votes.mean(), rtol=1e-6)
      np.testing.assert_allclose(ex['label_std'][name], votes.std(), rtol=1e-5, atol=1e-7)


def test_a_semicolon_file_with_bom_and_decimal_commas_reads_as_the_comma_file(tmp_path):
  comma, _ = fixtures_data.make_rated(tmp_path / 'comma', n_images=10)
  semi, _ = fixtures_data.make_rated(tmp_path / 'semi', n_images=10, delimiter=';')
  text = (semi / 'ratings.csv').read_text()
  lines = [text.splitlines()[0]] + [line.replace('.', ',').replace(',jpg', '.jpg')
                                    .replace(',png', '.png').replace(',webp', '.webp')
                                    for line in text.splitlines()[1:]]
  (semi / 'ratings.csv').write_bytes(b'\xef\xbb\xbf' + '\r\n'.join(lines).encode())
  a, b = ratings.read(str(comma)), ratings.read(str(semi))
  assert [(p.path, p.values.tolist(), p.split) for p in a[1]] == [
      (p.path, p.values.tolist(), p.split) for p in b[1]]


def test_the_split_is_seeded_disjoint_and_follows_a_split_column(tmp_path):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=40)
  first = {p.path: p.split for p in ratings.read(str(photos))[1]}
  assert first == {p.path: p.split for p in ratings.read(str(photos))[1]}
  counts = {s: sum(v == s for v in first.values()) for s in ratings.SPLITS}
  assert counts == {'train': 32, 'validation': 4, 'test': 4}  # DEFAULT_SPLIT of 40 photos.
  spec = json.loads((photos / 'dataset.json').read_text())
  spec['split'] = {'validation': 0.25, 'test': 0.25, 'seed': 7}
  (photos / 'dataset.json').write_text(json.dumps(spec))
  other = {p.path: p.split for p in ratings.read(str(photos))[1]}
  assert sum(v == 'test' for v in other.values()) == 10 and other != first
  # A split column in the spreadsheet decides instead.
  text = (photos / 'ratings.csv').read_text().splitlines()
  chosen = ['train', 'validation', 'test', 'val']
  text = [text[0] + ',split'] + [f'{line},{chosen[i % 4]}' for i, line in enumerate(text[1:])]
  (photos / 'ratings.csv').write_text('\n'.join(text) + '\n')
  spec['split'] = {'column': 'split'}
  (photos / 'dataset.json').write_text(json.dumps(spec))
  by_column = {p.path: p.split for p in ratings.read(str(photos))[1]}
  assert [by_column[fixtures_data.rated_photo_path(i)] for i in range(4)] == [
      'train', 'validation', 'test', 'validation']


def test_tfds_build_command_with_the_folder_as_config(tmp_path):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  tfds_cli = pathlib.Path(sys.executable).with_name('tfds')
  result = subprocess.run(
      [str(tfds_cli), 'build', str(REPO / 'data_builders' / 'rated_photos'),
       f'--manual_dir={photos}', f'--data_dir={tmp_path / "data"}',
       '--config=' + json.dumps({'manual_dir': str(photos)})],
      cwd=tmp_path, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''}, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  name = 'r' + ratings.fingerprint(str(photos), ratings.read_spec(str(photos)))
  built = tfds.builder_from_directory(str(tmp_path / 'data' / 'rated_photos' / name / '1.0.0'))
  assert built.info.metadata['outputs'] == [[n, *map(float, r)]
                                            for n, r in fixtures_data.RATED_OUTPUTS.items()]
  assert sum(built.info.splits[s].num_examples for s in ratings.SPLITS) == 10


def _edit_csv(photos, fn):
  path = photos / 'ratings.csv'
  lines = path.read_text().splitlines()
  path.write_text('\n'.join(fn(lines)) + '\n')


def _edit_spec(photos, **fields):
  spec = json.loads((photos / 'dataset.json').read_text())
  spec.update(fields)
  (photos / 'dataset.json').write_text(json.dumps(spec))


BAD_INPUTS = {
    'missing image': (lambda p: (p / fixtures_data.rated_photo_path(3)).unlink(),
                      "line 5: image 'shoots/day0/003.jpg' is not in"),
    'path outside the folder': (lambda p: _edit_csv(p, lambda ls: ls[:2] + [
        ls[2].replace('shoots/', '../shoots/', 1)] + ls[3:]), 'line 3: image '),
    'duplicate row': (lambda p: _edit_csv(p, lambda ls: ls + [ls[1]]),
                      'is rated again (first on line 2)'),
    'value not a number': (lambda p: _edit_csv(p, lambda ls: ls[:3] + [
        ','.join(ls[3].split(',')[:2] + ['sharp'] + ls[3].split(',')[3:])] + ls[4:]),
                           "line 4: sharpness = 'sharp' is not a number"),
    'value outside its range': (lambda p: _edit_csv(p, lambda ls: ls[:1] + [
        ','.join(ls[1].split(',')[:1] + ['7'] + ls[1].split(',')[2:])] + ls[2:]),
                                'line 2: score = 7 lies outside its range [1, 5]'),
    'missing image column': (lambda p: _edit_csv(p, lambda ls: [ls[0].replace('image', 'file')]
                                                 + ls[1:]), 'column(s) image missing'),
    'declared output absent': (lambda p: _edit_spec(p, outputs={
        **fixtures_data.RATED_OUTPUTS, 'contrast': [0, 1]}),
                               'output(s) contrast declared in dataset.json but absent'),
    'empty split': (lambda p: (_edit_csv(p, lambda ls: [ls[0] + ',split'] + [
        line + ',train' for line in ls[1:]]), _edit_spec(p, split={'column': 'split'})),
                    'the split(s) validation, test hold no photo'),
    'too few images': (lambda p: _edit_csv(p, lambda ls: ls[:6]), '5 photo(s) are too few'),
    'not UTF-8': (lambda p: (p / 'ratings.csv').write_bytes(
        (p / 'ratings.csv').read_bytes() + 'shoots/caf\xe9.jpg,1,0,0,0\n'.encode('latin-1')),
                  'not UTF-8 text'),
    'no dataset.json': (lambda p: (p / 'dataset.json').unlink(), 'dataset.json not found'),
    'bad range': (lambda p: _edit_spec(p, outputs={'score': [5, 1]}),
                  "output 'score' has range [5, 1]"),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_each_bad_input_names_the_file_the_row_and_the_fix(tmp_path, case):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  damage, message = BAD_INPUTS[case]
  damage(photos)
  before = snapshot(photos)
  with pytest.raises(ratings.RatingsError) as raised:
    ratings.read(str(photos))
  assert message in str(raised.value)
  assert str(photos) in str(raised.value)  # The file (or folder) is named.
  assert snapshot(photos) == before


def test_an_unreadable_photo_stops_the_build_or_is_skipped(tmp_path):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  broken = photos / fixtures_data.rated_photo_path(0)
  broken.write_bytes(broken.read_bytes()[:200])
  with pytest.raises(ratings.RatingsError, match="line 2: photo 'shoots/day0/000.jpg' cannot "
                                                 'be read'):
    build(photos, tmp_path / 'data')
  (photos / fixtures_data.rated_photo_path(1)).unlink()  # And one missing.
  b = build(photos, tmp_path / 'data2', skip_unreadable=True)
  assert len(examples(b)) == 8
  assert b.info.metadata['skipped']['missing'] == [fixtures_data.rated_photo_path(1)]
  assert fixtures_data.rated_photo_path(0) in sum(
      (b.info.metadata['skipped'][s] for s in ratings.SPLITS), [])


def test_run_py_says_what_is_missing_before_anything_starts(tmp_path):
  code, stderr = run_py('--config=configs/rated_photos.py', f'--workdir={tmp_path / "W"}',
                        f'--config.dataset.manual_dir={tmp_path / "nowhere"}', *TINY_RUN)
  assert code == 2 and 'dataset.json not found' in cli_test.only_error_line(stderr)
  assert not (tmp_path / 'W' / 'config.json').exists()
