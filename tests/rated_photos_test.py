"""A user's own rated photos: from a folder and a spreadsheet to a trained model and scores.

The fixture folder is what a photographer would have: nested shoots in JPEG,
PNG and WebP, a ratings CSV (one row per photo, or one per vote) and a
dataset.json declaring an overall score and three attributes of different ranges.
"""

import csv
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aesthetix.data import spec as data_spec
from aesthetix.model import audit
from aesthetix.runtime import preflight
from aesthetix.serving import gradcam
from aesthetix.serving import predict
from aesthetix.serving import scorer as scorer_lib
from aesthetix.training import plan as plan_lib
from aesthetix.training import train
from configs import rated_photos as rated_config
from data_builders.rated_photos import rated_photos_dataset_builder as rated
from data_builders.rated_photos import ratings
from tests import cli_test
from tests import fixtures_data
from tests import readme_commands_test
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
  """The README's block on the tests' example folder, every command as written
  (readme_commands_test leaves it to this fixture): 40 photos in nested shoots
  with three votes each, a two-stage run on them (tiny sizes appended), their
  scores, Grad-CAMs of an attribute and the report. From a sandbox that
  stands where the README is typed, with TFDS' default data dir a temporary
  one and no ImageNet file in Keras' cache. Returns (photos, workdir, sandbox)."""
  tmp = tmp_path_factory.mktemp('rated')
  root = tmp / 'repo'
  readme_commands_test.link_repository(root)
  first, *others = readme_commands_test.readme_block(readme_commands_test.RATED_BLOCK_START)
  with pytest.MonkeyPatch.context() as patch:
    patch.chdir(root)
    patch.setattr(tfds.core.constants, 'DATA_DIR', str(tmp / 'tensorflow_datasets'))
    patch.setenv('KERAS_HOME', str(tmp / 'keras'))
    code, stderr = readme_commands_test.run_command(first, root, patch)
    assert code == 0, stderr[-3000:]
    photos = root / 'my_photos'
    before = snapshot(photos)
    for command in others:
      code, stderr = readme_commands_test.run_command(command, root, patch)
      assert code == 0, f'{command}\n{stderr[-3000:]}'
  assert snapshot(photos) == before  # Nothing in the user's folder is written.
  return photos, root / 'workdirs' / 'mine', root


def test_the_run_names_the_users_outputs_in_their_own_scale(trained, tmp_path):
  photos, workdir, root = trained
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
  # The README's predict command, on the workdir itself: the copy's columns, and
  # each output's percentile (the workdir keeps its score quantiles; the copy does not).
  percentiles = [n + scorer_lib.PERCENTILE_SUFFIX for n in NAMES]
  with open(root / 'scores.csv') as f:
    assert [list(r) for r in csv.DictReader(f)] == [
        [predict.PATH_COLUMN, *NAMES, *percentiles, 'error']] * 40


def test_grad_cam_takes_the_users_output_names(trained, tmp_path, monkeypatch):
  """The README's gradcam command (--target=mood) drew one figure per photo, and
  the maps are those of 'mood' (the user's third output), at the default layer."""
  photos, workdir, root = trained
  day0 = photos / 'shoots' / 'day0'
  by_readme = sorted(p.name for p in (root / 'cams').iterdir())
  assert by_readme == sorted(p.stem + gradcam.SUFFIX for p in day0.iterdir())
  assert by_readme
  drawn = gradcam_test.record_figures(monkeypatch)
  written, failed = gradcam.gradcam_workdir(str(workdir), str(day0), str(tmp_path / 'cams'),
                                            target='mood')
  sources = sorted(day0.iterdir())
  assert len(written) == len(sources) and not failed
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


def tfds_build(args, cwd):
  """The `tfds build` command of `args` (a list, without `tfds build`), run."""
  tfds_cli = pathlib.Path(sys.executable).with_name('tfds')
  return subprocess.run([str(tfds_cli), 'build', *args], cwd=cwd, capture_output=True,
                        text=True, timeout=120, env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''},
                        check=False)


def test_tfds_build_command_with_the_folder_as_config(tmp_path):
  """Without --config the build refuses and gives the command that works
  (the folder as the config); that command, as given, builds. (Two tfds
  processes: about 15 s.)"""
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  builder_dir = str(REPO / 'data_builders' / 'rated_photos')
  refused = tfds_build([builder_dir, f'--manual_dir={photos}', f'--data_dir={tmp_path / "data"}'],
                       tmp_path)
  assert refused.returncode != 0
  advice, = re.findall(r"Give the folder as the config: (tfds build .*\}')\.", refused.stderr)
  args = shlex.split(advice)[2:]
  assert args[0] == 'data_builders/rated_photos' and args[-1] == (
      '--config=' + json.dumps({'manual_dir': str(photos)}))
  result = tfds_build([builder_dir, *args[1:], f'--data_dir={tmp_path / "data"}'], tmp_path)
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


# A process that runs run.py and says, as it exits, whether JAX or TensorFlow
# were loaded and how long it took.
WHAT_LOADED = """
import atexit, runpy, sys, time
start = time.time()
atexit.register(lambda: sys.stderr.write(
    'loaded: %s in %.2f s\\n' % ([m for m in ('jax', 'tensorflow') if m in sys.modules],
                                 time.time() - start)))
sys.argv = ['run.py'] + sys.argv[1:]
runpy.run_path('run.py', run_name='__main__')
"""
# The bound: JAX and TensorFlow alone take ~10 s to load here; the check
# itself a fraction of a second (generous, for a loaded 2-core machine).
BEFORE_JAX_S = 8.0


def break_two_rows(photos):
  """The issue's user's ratings: a row pointing outside the folder (line 3) and
  a value outside its range (line 5)."""
  def damage(lines):
    lines[2] = ','.join(['../outside.jpg'] + lines[2].split(',')[1:])
    cells = lines[4].split(',')
    lines[4] = ','.join(cells[:1] + ['7'] + cells[2:])
    return lines
  _edit_csv(photos, damage)


def test_a_bad_ratings_file_is_refused_before_jax_loads_listing_every_problem(tmp_path):
  """What the issue's user did: --config=configs/rated_photos.py on a folder
  whose ratings have two bad rows. One error listing both, with file and
  line, before JAX and TensorFlow load; no workdir is made; the folder is
  untouched. (One process: about 2 s.)"""
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  break_two_rows(photos)
  before = snapshot(photos)
  workdir = tmp_path / 'W'
  result = subprocess.run(
      [sys.executable, '-c', WHAT_LOADED, '--config=configs/rated_photos.py',
       f'--workdir={workdir}', f'--config.dataset.manual_dir={photos}'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 2, result.stderr[-3000:]
  error = result.stderr.split('error: ', 1)[1]
  ratings_csv = photos / 'ratings.csv'
  assert error.startswith(f'2 problems in the rated photos of {photos}; fix them all')
  assert (f"  - {ratings_csv}, line 3: image '../outside.jpg' is outside the folder {photos}"
          in error)
  assert (f'  - {ratings_csv}, line 5: score = 7 lies outside its range [1, 5] declared in '
          'dataset.json') in error
  loaded, seconds = result.stderr.strip().splitlines()[-1].split(' in ')
  assert loaded == 'loaded: []', result.stderr[-3000:]
  assert float(seconds.rstrip(' s')) < BEFORE_JAX_S
  assert not workdir.exists()
  assert snapshot(photos) == before


def test_every_problem_is_listed_at_once_with_its_line(tmp_path):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  break_two_rows(photos)
  (photos / fixtures_data.rated_photo_path(5)).unlink()  # Named on line 7.
  _edit_csv(photos, lambda ls: ls + [ls[1]])  # Rated again on line 12.
  with pytest.raises(ratings.RatingsError) as raised:
    ratings.read(str(photos))
  listed = str(raised.value).splitlines()
  assert listed[0].startswith(f'4 problems in the rated photos of {photos}')
  assert [line.split(': ')[0] for line in listed[1:]] == [
      f'  - {photos / "ratings.csv"}, line {n}' for n in (3, 5, 12, 7)]
  assert "'shoots/day2/005.webp' (line 7)" in listed[4]
  assert '--config.dataset.skip_unreadable=True' in listed[4]


def test_a_bad_split_name_is_listed_with_the_other_problems_and_no_false_size_one(tmp_path):
  """With rows still to fix, each row's split name is checked but the split
  sizes wait (judged on the rows left, they would add a false problem)."""
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  chosen = ['train'] * 8 + ['validation', 'tset']  # Line 11: a typo; no test photo left.
  _edit_csv(photos, lambda ls: [ls[0] + ',split'] + [f'{l},{c}' for l, c in zip(ls[1:], chosen)])
  _edit_spec(photos, split={'column': 'split'})
  break_two_rows(photos)
  with pytest.raises(ratings.RatingsError) as raised:
    ratings.read(str(photos))
  listed = str(raised.value).splitlines()
  assert listed[0].startswith(f'3 problems in the rated photos of {photos}')
  assert {line.split(': ')[0] for line in listed[1:]} == {
      f'  - {photos / "ratings.csv"}, line {n}' for n in (3, 5, 11)}
  assert (f"  - {photos / 'ratings.csv'}, line 11: split = 'tset'; it must be train, "
          'validation or test.') in listed


def test_a_long_list_is_cut_with_a_count(tmp_path):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=40)
  _edit_csv(photos, lambda ls: ls[:1] + [','.join(l.split(',')[:1] + ['9'] + l.split(',')[2:])
                                         for l in ls[1:]])
  with pytest.raises(ratings.RatingsError) as raised:
    ratings.read(str(photos))
  listed = str(raised.value).splitlines()
  assert listed[0].startswith('40 problems') and len(listed) == 2 + ratings.MAX_LISTED
  assert listed[-1] == f'  - ... and {40 - ratings.MAX_LISTED} more of the same kinds.'


def test_the_skip_unreadable_advice_gets_past_the_check(tmp_path):
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  (photos / fixtures_data.rated_photo_path(3)).unlink()
  problem = data_spec.folder_problem('rated_photos', str(photos))
  assert 'or build with skip_unreadable=True (--config.dataset.skip_unreadable=True)' in problem
  assert data_spec.folder_problem('rated_photos', str(photos), skip_unreadable=True) is None


def folder_config(photos, data_dir):
  config = rated_config.get_config()
  config.dataset.manual_dir, config.dataset.data_dir = str(photos), str(data_dir)
  config.model.backbone_weights = 'random'
  return config


def test_the_library_refuses_a_bad_folder_with_the_workdir_as_it_was(tmp_path):
  """Without run.py (experiment.run from Python): the same list, before the
  lock, config.json or checkpoints exist; a photo that does not decode stops
  the build, which runs before the workdir is touched too. (~2 s: one build.)"""
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  break_two_rows(photos)
  workdir = tmp_path / 'W'
  with pytest.raises(preflight.PreflightError, match=r'2 problems in the rated photos'):
    train.train_and_evaluate(folder_config(photos, tmp_path / 'data'), str(workdir))
  assert not workdir.exists()
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos2', n_images=10)
  broken = photos / fixtures_data.rated_photo_path(0)
  broken.write_bytes(broken.read_bytes()[:200])
  with pytest.raises(ratings.RatingsError, match="line 2: photo 'shoots/day0/000.jpg' cannot"):
    train.train_and_evaluate(folder_config(photos, tmp_path / 'data'), str(workdir))
  assert not workdir.exists()
