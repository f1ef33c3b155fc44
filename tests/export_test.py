"""The Python scoring API and the exports, each scored by its own runtime.

Every export is loaded in a fresh process that imports TensorFlow or JAX but
not aesthetix, as a server or an app would, and must give the Scorer's
scores on the same pixels: float32 formats within 1e-5 and TFLite within 1e-4
in unit scale (the issue's bounds).
"""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from aesthetix.data import datasets
from aesthetix.data import images
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.serving import export
from aesthetix.serving import predict
from aesthetix.serving import scorer as scorer_lib
from tests import predict_test
from tests import tiny
from tests import trained_workdir

FLOAT32_BOUND = 1e-5
TFLITE_BOUND = 1e-4

LOAD_AND_SCORE = r"""
import json, sys
import numpy as np
fmt, folder, pixels_path, out_path = sys.argv[1:]
pixels = np.load(pixels_path)
names = json.load(open(f'{folder}/aesthetix.json'))['columns']  # Scores, then any sds.
if fmt == 'saved_model':
  import tensorflow as tf
  model = tf.saved_model.load(folder)
  got = model.signatures['serving_default'](images=tf.constant(pixels))
  scores = np.stack([got[n].numpy() for n in names], -1)
  jpegs = [open(p, 'rb').read() for p in sys.stdin.read().split()]
  if jpegs:
    got = model.signatures['serving_bytes'](image_bytes=tf.constant(jpegs))
    np.save(out_path + '.bytes.npy', np.stack([got[n].numpy() for n in names], -1))
elif fmt == 'stablehlo':
  from jax import export
  scores = np.asarray(export.deserialize(open(f'{folder}/model.stablehlo', 'rb').read())
                      .call(pixels))
else:
  import tensorflow as tf
  runner = tf.lite.Interpreter(model_path=f'{folder}/model.tflite').get_signature_runner(
      'serving_default')
  got = runner(images=pixels)
  scores = np.stack([got[n] for n in names], -1)
assert 'aesthetix' not in sys.modules
np.save(out_path, scores)
"""


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  return predict_test.write_photos(tmp_path_factory.mktemp('export_photos') / 'photos')


@pytest.fixture(scope='module')
def exported(trained, tmp_path_factory):
  _, workdir = trained
  out = tmp_path_factory.mktemp('exports')
  return {fmt: (str(out / fmt), export.export(workdir, str(out / fmt), fmt))
          for fmt in export.FORMATS}


def run_fresh(fmt, folder, pixels, tmp_path, jpegs=()):
  np.save(tmp_path / 'pixels.npy', pixels)
  out = tmp_path / f'{fmt}.npy'
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', LOAD_AND_SCORE, fmt, folder,
                           str(tmp_path / 'pixels.npy'), str(out)], input='\n'.join(jpegs),
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  return np.load(out), (np.load(str(out) + '.bytes.npy') if jpegs else None)


def unit_difference(plan, a, b):
  lo, hi = plan.data.targets.bounds(a.shape[-1])
  return float(np.max(np.abs(a - b) / (hi - lo)))


def test_the_scorer_gives_predicts_numbers_for_paths_pil_images_and_arrays(trained, photos,
                                                                           tmp_path):
  plan, workdir = trained
  scorer = scorer_lib.Scorer.from_workdir(workdir)
  summary = predict.predict_workdir(workdir, str(photos), str(tmp_path / 's.csv'),
                                    progress=False)
  rows = {r['path']: r for r in summary['rows'] if not r['error']}
  paths = sorted(rows)
  scores = scorer.score(paths)
  assert scorer.columns == tuple(summary['columns'])
  for path, got in zip(paths, scores):
    assert got == {n: rows[path][n] for n in scorer.columns}  # One scoring path: equal.
  rgb = str(photos / 'rgb.png')
  as_array = images.load_image(rgb)
  assert scorer.score([Image.open(rgb)]) == scorer.score(as_array) == scorer.score(rgb)
  assert list(scorer.score(rgb)[0]) == [*plan.output_names,
                                        *[f'{n}_percentile' for n in plan.output_names]]
  with pytest.raises(ValueError, match='uint8'):
    scorer.score(as_array.astype(np.float32))


def test_the_scorer_scores_the_test_split_as_the_run_predicted_it(trained, tmp_path):
  """The Scorer is every export's reference: tie it to the run itself. The test
  split's stored JPEGs, saved as a user's photos and scored by path, get the
  stage-2 test predictions the run stored (predictions/stage2_test.npz), exactly."""
  plan, workdir = trained
  stored = workdir_lib.load_predictions(workdir, 'stage2', plan.data.test_split)
  ds = datasets.builder(plan.data).as_dataset(
      split=plan.data.test_split, shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()})
  photos = {}
  for example in tfds.as_numpy(ds):
    photos[example['id'].decode()] = path = tmp_path / f"{example['id'].decode()}.jpg"
    path.write_bytes(example['image'])
  ids = [str(i) for i in stored['ids']]
  assert sorted(photos) == sorted(ids) and len(ids) == tiny.SPLIT_SIZES['test']
  scores = scorer_lib.Scorer.from_workdir(workdir).score_array([photos[i] for i in ids])
  assert scores.shape == stored['pred'].shape == (len(ids), len(plan.output_names))
  np.testing.assert_array_equal(scores, stored['pred'])


def test_the_package_exposes_the_scorer():
  import aesthetix  # pylint: disable=g-import-not-at-top
  assert aesthetix.Scorer is scorer_lib.Scorer


@pytest.mark.parametrize('fmt', export.FORMATS)
def test_each_export_scores_as_the_scorer_in_its_own_runtime(trained, exported, photos, fmt,
                                                             tmp_path):
  plan, workdir = trained
  folder, info = exported[fmt]
  files = [p for p in sorted(photos.glob('*.*')) if p.name.startswith('rgb')]
  pixels = np.stack([images.model_input(images.load_image(p), plan.data) for p in files])
  jpegs = [str(photos / 'rgb.jpg')] if fmt == 'saved_model' else []
  scores, from_bytes = run_fresh(fmt, folder, pixels, tmp_path, jpegs)
  reference = scorer_lib.Scorer.from_workdir(workdir).score_array(list(pixels))
  bound = TFLITE_BOUND if fmt == 'tflite' else FLOAT32_BOUND
  assert unit_difference(plan, scores, reference) <= bound
  assert info['outputs'] == list(plan.output_names)
  assert json.load(open(os.path.join(folder, export.METADATA)))['image_size'] == 32
  if from_bytes is not None:  # The JPEG decoded and resized in the graph, as predict does.
    jpeg_index = [p.name for p in files].index('rgb.jpg')
    assert unit_difference(plan, from_bytes[0], reference[jpeg_index]) <= FLOAT32_BOUND


def test_an_existing_output_is_kept_unless_overwrite(trained, tmp_path):
  _, workdir = trained
  out = tmp_path / 'model'
  out.mkdir()
  (out / 'mine.txt').write_text('keep')
  with pytest.raises(export.ExportError, match='exists'):
    export.export(workdir, str(out), 'stablehlo')
  assert os.listdir(out) == ['mine.txt']
  export.export(workdir, str(out), 'stablehlo', overwrite=True)
  assert sorted(os.listdir(out)) == [export.METADATA, export.STABLEHLO_FILE]


def test_a_failed_conversion_leaves_nothing_behind(trained, tmp_path, monkeypatch):
  _, workdir = trained

  def broken(*unused_args, **unused_kwargs):
    raise export.ExportError('conversion failed')

  monkeypatch.setitem(export._WRITERS, 'saved_model', broken)  # pylint: disable=protected-access
  with pytest.raises(export.ExportError, match='conversion failed'):
    export.export(workdir, str(tmp_path / 'model'), 'saved_model')
  assert os.listdir(tmp_path) == []
  with pytest.raises(export.ExportError, match='applies to --format=tflite only'):
    export.export(workdir, str(tmp_path / 'model'), 'stablehlo', quantize='float16')


def test_export_needs_a_trained_workdir(tmp_path):
  from tests import cli_test  # pylint: disable=g-import-not-at-top
  result, _ = cli_test.run_py_before_frameworks('--mode=export', f'--workdir={tmp_path}/none',
                                                f'--output={tmp_path}/out',
                                                '--format=stablehlo')
  assert result.returncode == 2
  assert 'does not exist' in result.stderr and not os.path.exists(tmp_path / 'out')
  result, _ = cli_test.run_py('--mode=export', f'--workdir={tmp_path}',
                              f'--output={tmp_path}/out', '--format=onnx')
  assert result.returncode == 2 and 'saved_model' in result.stderr
