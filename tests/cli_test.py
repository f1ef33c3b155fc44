"""run.py's answers to a newcomer's mistakes: one line, exit 2, before JAX loads, nothing written.

Each command runs as a user would type it, in a fresh process. A mistake that
needs no model is found before the frameworks load (JAX and TensorFlow take
~10 s to import): the process must end without having imported them. That is
the precise check; a wall-clock bound would flake on a busy machine, so the
one kept is generous.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Packages a mistake must not cost: the frameworks and what loads them.
FRAMEWORKS = ('jax', 'jaxlib', 'tensorflow', 'tensorflow_datasets', 'keras', 'flax', 'optax',
              'orbax')
# A backstop for the whole command, Python's start-up included, on a loaded
# 2-core machine (such a command took about 1 s there; one that loads the
# frameworks, over 10 s even unloaded).
FAST_S = 30.0

# run.py as `python run.py ARGS` runs it, and then, at exit, the top-level
# packages that were imported, written to a JSON file.
RECORD_IMPORTS = r"""
import atexit, json, os, runpy, sys
record, script = sys.argv[1:3]

def write_imports():
  with open(record, 'w') as f:
    json.dump(sorted({name.split('.')[0] for name in sys.modules}), f)

atexit.register(write_imports)
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name='__main__')
"""


def run_py(*args, cwd=REPO, **env):
  env = dict(os.environ, JAX_PLATFORMS='cpu', **env)
  start = time.time()
  result = subprocess.run([sys.executable, os.path.join(REPO, 'run.py'), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)
  return result, time.time() - start


def run_py_before_frameworks(*args, cwd=REPO, **env):
  """run.py with `args` in a fresh process: (result, seconds); asserts that it
  ended without importing any of FRAMEWORKS, within FAST_S."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', **env)
  with tempfile.TemporaryDirectory() as folder:  # Not in cwd: tests list their folders.
    record = os.path.join(folder, 'imports.json')
    start = time.time()
    result = subprocess.run(
        [sys.executable, '-c', RECORD_IMPORTS, record, os.path.join(REPO, 'run.py'), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.time() - start
    with open(record) as f:
      imported = json.load(f)
  assert 'absl' in imported, imported  # The record is of run.py's process.
  loaded = sorted(set(imported) & set(FRAMEWORKS))
  assert not loaded, f'{args}: imported {loaded} before it ended ({result.stderr[-2000:]})'
  assert seconds < FAST_S, f'{seconds:.1f} s'
  return result, seconds


def only_error_line(stderr):
  lines = [line for line in stderr.splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith('error: ')]
  assert len(errors) == 1 and 'Traceback' not in stderr, stderr
  return errors[0]


MISTAKES = [
    (['--config=configs/demoo.py', '--workdir={w}'],
     '--config=configs/demoo.py: no such file. Config files: configs/aadb.py, '
     'configs/demo.py, configs/eva.py, configs/rated_photos.py'),
    (['--config=configs/demo.py', '--config.model.dropoutt=0.3', '--workdir={w}'],
     "--config.model.dropoutt: configs/demo.py has no field 'dropoutt' (did you mean "
     "'dropout'?)"),
    (['--config=configs/demo.py', '--config.model.dropout=abc', '--workdir={w}'],
     "--config.model.dropout=abc: could not convert string to float: 'abc'"),
    (['--config=configs/demo.py:nope', '--workdir={w}'],
     "Unknown config variant 'nope'; known: multi_task, separate_outputs, single_task"),
    (['--workdir={w}'], '--mode=train needs --config=configs/aadb.py'),
    (['--mode=predict', '--workdir={w}'], '--mode=predict needs --images=PHOTOS'),
    (['--modee=predict'], 'Unknown flag --modee; did you mean --mode?'),
    (['--mode=predict', '--workdir={w}', '--images=photos'],
     '--workdir={w} does not exist'),
    (['--config=configs/demo.py', '--workdir={w}', 'extra'], "Unexpected arguments ['extra']"),
    (['--mode=gradcam', '--workdir={w}', '--images=photos', '--output={w}/cams'],
     '2 things are missing or wrong'),
    (['--config=configs/demo.py', '--config.init_from={w}/none', '--workdir={w}'],
     '--config.init_from={w}/none: no such folder'),
]


@pytest.mark.parametrize('args, message', MISTAKES)
def test_a_mistake_is_one_line_exit_2_fast_and_writes_nothing(tmp_path, args, message):
  workdir = str(tmp_path / 'w')
  result, _ = run_py_before_frameworks(*(a.format(w=workdir) for a in args))
  assert result.returncode == 2, result.stderr
  error = only_error_line(result.stderr)  # A list of problems follows it, one per line.
  assert message.format(w=workdir) in (error if '\n  - ' not in result.stderr
                                       else result.stderr)
  assert sorted(os.listdir(tmp_path)) == []  # No workdir, no config.json.tmp.


def test_an_unwritable_output_is_found_before_any_scoring(tmp_path):
  (tmp_path / 'photo.png').write_bytes(b'')
  result, _ = run_py_before_frameworks('--mode=predict', f'--workdir={tmp_path}',
                                       '--images=photo.png', '--output=/proc/no/scores.csv',
                                       cwd=str(tmp_path))
  assert result.returncode == 2
  assert '/proc/no/scores.csv cannot be written' in result.stderr


def test_a_mode_warns_about_flags_it_ignores(tmp_path):
  result, _ = run_py('--mode=predict', f'--workdir={tmp_path}/w', '--images=x',
                     '--config=configs/demo.py', '--target=Light')
  assert "warning: --mode=predict ignores --config (it uses the workdir's own config.json)" \
      in result.stderr
  assert 'warning: --mode=predict ignores --target.' in result.stderr


def test_a_traceback_only_with_verbosity(tmp_path):
  result, _ = run_py('--mode=predict', f'--workdir={tmp_path}/w', '--images=x',
                     '--verbosity=1', cwd=str(tmp_path))
  assert result.returncode == 2 and 'Traceback' in result.stderr


def test_missing_data_and_weights_are_listed_together_before_anything_is_written(tmp_path):
  result, _ = run_py('--config=configs/aadb.py', f'--workdir={tmp_path}/w',
                     f'--config.dataset.data_dir={tmp_path}/data',
                     KERAS_HOME=str(tmp_path / 'keras'))  # No weights there.
  assert result.returncode == 2, result.stderr
  assert '2 things are missing or wrong' in result.stderr
  assert 'AADB label lists: none of imgListFiles_label' in result.stderr
  assert 'VGG16 ImageNet weights not found' in result.stderr
  assert not os.path.exists(tmp_path / 'w')


BUG_IN_A_MODE = """
import dataclasses, sys
sys.path.insert(0, {repo!r})
from absl import app
import run
from aesthetix.cli import modes

def shape_mismatch(config):
  raise ValueError('operands could not be broadcast together with shapes (3,) (4,)')

modes.MODES['audit'] = dataclasses.replace(modes.MODES['audit'], run=shape_mismatch)
sys.argv = ['run.py', '--mode=audit', '--config=configs/demo.py']
app.run(run.main, flags_parser=run.parse_flags)
"""


def test_a_bug_that_raises_value_error_is_a_traceback_and_exit_1(tmp_path):
  """Only errors.UserError is the user's mistake: a ValueError from a bug (a
  shape mismatch, say) keeps its traceback and exits 1, never 'error:' and 2."""
  result = subprocess.run([sys.executable, '-c', BUG_IN_A_MODE.format(repo=REPO)], cwd=REPO,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  assert 'Traceback (most recent call last)' in result.stderr
  assert 'ValueError: operands could not be broadcast' in result.stderr
  assert 'error: ' not in result.stderr


def test_the_readmes_reproduce_overrides_parse_without_a_config_from_any_folder(tmp_path):
  """Issue 24, item 1: `--config.datasets.aadb.manual_dir=...` without --config
  stopped at parsing; the reproduce mode's own config now takes the overrides,
  from the repository or any other folder. (--datasets=avdb stops the command
  before JAX loads; two processes, about 1 s each.)"""
  for cwd in (REPO, str(tmp_path)):
    result, seconds = run_py('--mode=reproduce', f'--workdir={tmp_path}/W', '--seeds=0,1,2,3,4',
                             '--config.datasets.aadb.manual_dir=/data/aadb',
                             '--config.datasets.eva.manual_dir=/data/eva', '--datasets=avdb',
                             cwd=cwd)
    assert result.returncode == 2, result.stderr
    assert only_error_line(result.stderr) == (
        'error: --datasets=avdb: avdb has no experiments in this reproduction; give some of '
        'aadb, eva (e.g. --datasets=aadb).')
    assert seconds < FAST_S, f'{seconds:.1f} s'
  assert not os.path.exists(tmp_path / 'W')


def test_only_a_mode_with_a_default_config_gets_it():
  from aesthetix.cli import checks  # pylint: disable=g-import-not-at-top
  from aesthetix.cli import modes  # pylint: disable=g-import-not-at-top
  defaults = modes.DEFAULT_CONFIGS
  assert defaults == {'reproduce': 'configs/reproduce.py'}
  given = ['run.py', '--mode', 'reproduce', '--config=configs/reproduce.py:demo']
  assert checks.with_default_config(given, defaults) == given
  assert checks.with_default_config(['run.py', '--mode=train'], defaults) == ['run.py',
                                                                              '--mode=train']
  inserted = checks.with_default_config(['run.py', '--mode', 'reproduce', '--workdir=W'],
                                        defaults)
  assert inserted[2:] == ['--mode', 'reproduce', '--workdir=W']
  assert os.path.samefile(inserted[1].split('=', 1)[1],
                          os.path.join(REPO, 'configs', 'reproduce.py'))
