"""Scoring needs no TensorFlow: the Scorer, `--mode=predict` and `--mode=gradcam`
run in processes where importing tensorflow, tensorflow_datasets or keras
raises (tests/no_tensorflow.py), and give the scores of an ordinary process;
nor Orbax or Optax, when the workdir has its params file. Predict after
predict neither traces nor compiles: the second loads every program whole
from the persistent cache."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from aesthetix.serving import scorer as scorer_lib
from tests import no_tensorflow
from tests import trained_workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The log line of run.py's scoring modes (aesthetix/runtime/compilation_cache.py).
PROGRAMS_LINE = re.compile(r'(\d+) programs: (\d+) read from the persistent cache, '
                           r'(\d+) compiled \(\d+ written to it\)(?:; (\d+) loaded whole)?')
SCORE_CODE = '''
import json, sys
import aesthetix
scorer = aesthetix.Scorer.from_workdir(sys.argv[1])
print(json.dumps(scorer.score(sys.argv[2:])))
'''


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  folder = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(0)
  for i, shape in enumerate([(40, 56, 3), (64, 48, 3)]):
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(folder / f'p{i}.png')
  return folder


def without_tensorflow(args, cache_root):
  """Runs `python -m tests.no_tensorflow ARGS` from the repository; (stdout, stderr)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', AESTHETIX_CACHE_DIR=str(cache_root))
  for name in ('JAX_COMPILATION_CACHE_DIR', 'JAX_COMPILATION_CACHE_MAX_SIZE'):
    env.pop(name)  # run.py's own set-up decides, as in a user's shell.
  out = subprocess.run([sys.executable, '-m', 'tests.no_tensorflow', *args], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert no_tensorflow.blocked_imports(out.stderr) == [], out.stderr[-3000:]
  # The shared workdir has its params file: nothing of the training stack loads.
  assert no_tensorflow.training_imports(out.stderr) == [], out.stderr[-3000:]
  return out.stdout, out.stderr


def expected_scores(workdir, paths):
  return scorer_lib.Scorer.from_workdir(workdir).score(paths)


def test_the_blocker_blocks():
  code = 'import tensorflow'
  out = subprocess.run([sys.executable, '-m', 'tests.no_tensorflow', '-c', code], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode != 0 and 'tensorflow is blocked' in out.stderr
  assert no_tensorflow.blocked_imports(out.stderr) == ['tensorflow']


def test_the_scorer_imports_no_tensorflow(trained, photos, tmp_path):
  _, workdir = trained
  paths = sorted(str(p) for p in photos.iterdir())
  stdout, _ = without_tensorflow(['-c', SCORE_CODE, workdir, *paths], tmp_path)
  scores = json.loads(stdout.strip().splitlines()[-1])
  for got, want in zip(scores, expected_scores(workdir, paths), strict=True):
    assert got.keys() == want.keys()
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=0, atol=1e-6)


def programs(stderr):
  """(programs, from the cache, compiled, loaded whole) of a run's log."""
  return tuple(int(n or 0) for n in PROGRAMS_LINE.search(stderr).groups())


def test_predict_imports_no_tensorflow_and_the_second_compiles_nothing(trained, photos,
                                                                        tmp_path):
  _, workdir = trained
  paths = sorted(str(p) for p in photos.iterdir())
  runs = []
  for i in range(2):
    output = tmp_path / f'scores{i}.csv'
    _, stderr = without_tensorflow(['run.py', '--mode=predict', f'--workdir={workdir}',
                                    f'--images={photos}', f'--output={output}'],
                                   tmp_path / 'cache')
    with open(output, newline='') as f:
      runs.append(({os.path.basename(r['path']): r for r in csv.DictReader(f)},
                   programs(stderr)))
  want = dict(zip((os.path.basename(p) for p in paths), expected_scores(workdir, paths)))
  rows = runs[0][0]
  assert set(rows) == set(want)
  for name, scores in want.items():
    np.testing.assert_allclose([float(rows[name][k]) for k in scores], list(scores.values()),
                               rtol=0, atol=1e-5)  # The CSV keeps 6 decimals.
  (total, read, compiled, loaded), second = runs[0][1], runs[1][1]
  assert total > 0 and read == 0 and compiled == total and loaded == 0
  assert second == (0, 0, 0, total)  # Every program loaded whole: none traced.
  assert runs[1][0] == rows


def test_gradcam_imports_no_tensorflow(trained, photos, tmp_path):
  _, workdir = trained
  output = tmp_path / 'cams'
  without_tensorflow(['run.py', '--mode=gradcam', f'--workdir={workdir}',
                      f'--images={photos}', f'--output={output}'], tmp_path / 'cache')
  assert sorted(os.listdir(output)) == ['p0_gradcam.png', 'p1_gradcam.png']
