"""A reproduction of what one's data allows (issue 24, items 2 and 3).

Most users have one of the two datasets. With AADB's downloads and no EVA,
`--mode=reproduce` refuses before anything runs, naming EVA's own folders and
the flags that work; `--datasets=aadb` then runs AADB's experiments, leaves
out the cross-dataset tests that need EVA, and says so in the log and in
PAPER.md. A cross test's data is checked at its own folders, never at the
training data's.
"""

import json
import logging
import os

import pytest
import tensorflow_datasets as tfds

from aesthetix.data import spec as data_spec
from aesthetix.data import targets
from aesthetix.results import evaluate
from aesthetix.results import experiment
from aesthetix.results import reproduce
from aesthetix.results import selection
from aesthetix.runtime import errors
from aesthetix.runtime import preflight
from configs import reproduce as reproduce_config
from tests import fixtures_data
from tests import readme_commands_test
from tests import reproduce_test
from tests import run_py

AADB_EXPERIMENTS = tuple(e for e in reproduce_config.PAPER_EXPERIMENTS if e[1] == 'aadb')


def test_select_keeps_one_datasets_experiments_and_says_what_it_left_out():
  spec = reproduce_config.get_config()
  everything = selection.select(spec)
  assert everything.experiments == reproduce_config.PAPER_EXPERIMENTS
  assert everything.cross == reproduce_config.PAPER_CROSS and not everything.skipped
  aadb = selection.select(spec, ['aadb'])
  assert aadb.datasets == ('aadb',) and aadb.experiments == AADB_EXPERIMENTS
  assert aadb.cross == ()
  assert aadb.skipped == (
      'The eva experiments (eva_multi, eva_single): eva is not among --datasets=aadb.',
      'The cross-dataset test of aadb_multi on eva (Table 11): it needs eva\'s test data, '
      'and eva is not among --datasets=aadb.',
      'The cross-dataset test of eva_multi on aadb (Table 11): eva_multi is not trained in '
      'this reproduction.')
  with pytest.raises(errors.UserError, match=r'--datasets=aadb,ava: ava has no experiments '
                                             r'in this reproduction; give some of aadb, eva'):
    selection.select(spec, ['aadb', 'ava'])


# The documented commands of a user with AADB alone: the paper's, refused; the
# README's --datasets=aadb; run.py's usage line, which reads it back.
PAPER_COMMAND = reproduce_test.README_COMMAND
AADB_COMMAND = readme_commands_test.documented(
    'README.md', 'python run.py --mode=reproduce --workdir=W --datasets=aadb')
AADB_USAGE = readme_commands_test.documented(
    'run.py', 'python run.py --mode=reproduce --workdir=W --datasets=aadb')


def test_with_aadb_alone_the_refusal_names_what_works_and_datasets_aadb_runs(
    tmp_path, monkeypatch, caplog):
  """What the issue's user did: AADB's downloads at /data/aadb, no EVA, the
  README open. 3 tiny runs (seed 0), then a read-back."""
  aadb, data = tmp_path / 'aadb', tmp_path / 'data'
  fixtures_data.make_aadb(aadb, n_train=8, n_val=4, n_test=6, n_overlap=1)
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', str(data))
  places = {'W': str(tmp_path / 'W'), '/data/aadb': str(aadb), '/data/eva': str(tmp_path / 'eva')}
  appended = dict(zip(('seeds', 'overrides', 'backbone'), reproduce_test.APPENDED))
  args = lambda command: [a for a in reproduce_test.command_args(command, places)
                          if a != appended['seeds']] + ['--seeds=0']
  code, stderr = run_py.in_process(args(PAPER_COMMAND), monkeypatch)
  assert code == 2
  error = run_py.error_line(stderr)
  # EVA is looked for at its own folders, and the message names the flags that work.
  assert error.startswith(f'error: eva is not built in {data}/eva/1.0.0, and its downloads '
                          'are not in the manual dir: EVA votes: none of data/votes_filtered.csv')
  assert f'in {tmp_path / "eva"}' in error and f'in {aadb}' not in error
  assert 'give their folder with --config.datasets.eva.manual_dir=DIR' in error
  assert error.endswith('Or reproduce what your data allows: --datasets=aadb (PAPER.md then '
                        'says what was left out).')
  assert not (tmp_path / 'W').exists()

  caplog.set_level(logging.INFO)
  code, stderr = run_py.in_process(args(AADB_COMMAND), monkeypatch)
  assert code == 0, stderr[-4000:]
  paper = json.loads((tmp_path / 'W' / 'paper.json').read_text())
  assert [r['experiment'] for r in paper['runs']] == [e[0] for e in AADB_EXPERIMENTS]
  assert paper['datasets'] == ['aadb']
  assert paper['left_out'] == list(selection.select(reproduce_config.get_config(),
                                                    ['aadb']).skipped)
  text = (tmp_path / 'W' / reproduce.PAPER_MD).read_text()
  left_out = text.split('## Left out\n\n')[1].split('\n\n')[0].splitlines()
  assert left_out == [f'- {line}' for line in paper['left_out']]
  assert '## Table 11' not in text and '## Table 6\n' in text
  logged = [r.getMessage() for r in caplog.records if 'left out' in r.getMessage()]
  assert logged == [f'Reproduction: left out: {line}' for line in paper['left_out']]

  code, stderr = run_py.in_process(args(AADB_USAGE), monkeypatch)  # The data at TFDS' default.
  assert code == 0, stderr[-4000:]
  paper = json.loads((tmp_path / 'W' / 'paper.json').read_text())
  assert [r['read_back'] for r in paper['runs']] == [True] * len(AADB_EXPERIMENTS)


def test_a_cross_tests_data_is_checked_at_its_own_folders_before_anything_runs(
    tmp_path, monkeypatch):
  """The issue's item 3: the AADB experiments alone (as a user rewrote
  --config.experiments) keep the cross test on EVA, whose data must be found
  before the 72 s of training, at EVA's folders."""
  spec = reproduce_config.get_config()
  spec.experiments = AADB_EXPERIMENTS
  spec.backbone = 'shared_random'
  aadb, data, eva = tmp_path / 'aadb', tmp_path / 'data', tmp_path / 'eva_downloads'
  fixtures_data.make_aadb(aadb)
  spec.datasets.aadb.manual_dir, spec.datasets.aadb.data_dir = str(aadb), str(data)
  spec.datasets.eva.manual_dir, spec.datasets.eva.data_dir = str(eva), str(tmp_path / 'eva_data')
  monkeypatch.setattr(experiment, 'run', lambda *a: pytest.fail('trained before the check'))
  with pytest.raises(preflight.PreflightError) as raised:
    reproduce.run(spec, str(tmp_path / 'W'), seeds=[0])
  message = str(raised.value)
  assert message.startswith(f'eva is not built in {tmp_path / "eva_data"}/eva/1.0.0, and its '
                            'downloads are not in the manual dir: EVA votes: none of '
                            f'data/votes_filtered.csv, votes_filtered.csv in {eva}')
  assert message.endswith('Or reproduce what your data allows: --datasets=aadb (PAPER.md '
                          'then says what was left out).')
  assert not (tmp_path / 'W').exists()
  # The advice works: EVA's downloads where the flag says gets past the check.
  fixtures_data.make_eva(eva)
  reproduce.preflight(spec, str(tmp_path / 'W'), selection.select(spec))


def test_a_cross_dataset_is_read_from_its_own_folders_not_the_training_datas():
  trained = data_spec.DataSpec(targets=targets.spec('aadb'), image_size=32,
                               data_dir='/tfds/aadb_home', manual_dir='/downloads/aadb')
  cross = evaluate.evaluation_data(trained, 'eva')
  assert (cross.name, cross.data_dir, cross.manual_dir) == ('eva', None, None)  # TFDS defaults.
  cross = evaluate.evaluation_data(trained, 'eva', '/tfds/eva_home', '/downloads/eva')
  assert (cross.data_dir, cross.manual_dir, cross.image_size) == ('/tfds/eva_home',
                                                                   '/downloads/eva', 32)
  same = evaluate.evaluation_data(trained, None, manual_dir='/elsewhere')
  assert (same.name, same.data_dir, same.manual_dir) == ('aadb', '/tfds/aadb_home',
                                                          '/elsewhere')


def test_the_reproduce_flags_advice_for_missing_weights_works(tmp_path, monkeypatch):
  """Without ImageNet's file a reproduction offers --config.backbone=shared_random
  (its own flag, not a training command's), which gets past that problem. (The
  data is missing too, so that nothing tries to download the weights.)"""
  spec = reproduce_config.get_config()
  spec.datasets.aadb.data_dir = str(tmp_path / 'd')
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'no_keras'))
  chosen = selection.select(spec, ['aadb'])
  with pytest.raises(preflight.PreflightError) as raised:
    reproduce.preflight(spec, str(tmp_path / 'W'), chosen)
  assert '2 things are missing or wrong' in str(raised.value)
  assert "VGG16 ImageNet weights not found (not in Keras' cache)" in str(raised.value)
  assert str(raised.value).endswith('or reproduce from one random VGG16 shared by every run '
                                    '(as the demo does) with --config.backbone=shared_random.')
  assert '--config.model.backbone_weights' not in str(raised.value)
  spec.backbone = 'shared_random'
  with pytest.raises(preflight.PreflightError) as raised:
    reproduce.preflight(spec, str(tmp_path / 'W'), chosen)
  assert 'VGG16' not in str(raised.value) and 'aadb is not built' in str(raised.value)
  assert not os.path.exists(tmp_path / 'W')
