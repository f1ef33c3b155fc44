"""The workdir guard: checkpoints of another config are refused, nothing else is."""

import json
import os

import pytest

from aesthetix.runtime import workdir
from aesthetix.training import train
from configs import aadb
from tests import tiny


def claim(path, config):
  """The training run's claim of a workdir for `config`."""
  return train.claim_workdir(tiny.plan(config), str(path))


def test_config_without_checkpoints_is_replaced(tmp_path):
  claim(tmp_path, aadb.get_config())
  changed = aadb.get_config()
  changed.model.backbone_weights = 'random'  # The fix after a failed start.
  claim(tmp_path, changed)
  with open(tmp_path / workdir.CONFIG_FILE) as f:
    assert json.load(f)['model']['backbone_weights'] == 'random'


def test_checkpoints_of_another_config_are_refused(tmp_path):
  claim(tmp_path, aadb.get_config())
  os.makedirs(tmp_path / workdir.CHECKPOINT_DIR / '3')
  changed = aadb.get_config()
  changed.stage1.learning_rate = 1e-2
  with pytest.raises(workdir.IncompatibleWorkdirError, match='stage1.learning_rate'):
    claim(tmp_path, changed)
  resumable = aadb.get_config()
  resumable.dataset.data_dir = '/elsewhere'  # Moving the data does not change the run.
  claim(tmp_path, resumable)
  with open(tmp_path / workdir.CONFIG_FILE) as f:
    assert json.load(f)['stage2']['learning_rate'] == 1e-4


def test_stage2_fields_may_change_until_stage2_has_finished(tmp_path):
  config = aadb.get_config()
  claim(tmp_path, config)
  stage1_end = config.stage1.epochs
  for n in (stage1_end - 1, stage1_end, stage1_end + 1):
    os.makedirs(tmp_path / workdir.CHECKPOINT_DIR / str(n) / 'params')
  changed = aadb.get_config()
  changed.stage2.learning_rate = 1e-5
  change = claim(tmp_path, changed)
  assert change['fields'] == {'stage2.learning_rate': [1e-4, 1e-5]}
  assert change['from_checkpoint'] == stage1_end and change['superseded'] == [stage1_end + 1]
  # The stage-2 checkpoint of the old settings is kept, out of the way.
  assert workdir.checkpoint_numbers(str(tmp_path)) == [stage1_end - 1, stage1_end]
  assert os.listdir(change['moved_to']) == [str(stage1_end + 1)]
  assert workdir.stored_config(str(tmp_path)).stage2.learning_rate == 1e-5
  assert [c['fields'] for c in workdir.stored_changes(str(tmp_path))] == [change['fields']]

  # Once stage 2 has finished, its results stand: the change is refused.
  predictions = workdir.prediction_path(str(tmp_path), 'stage2', config.dataset.test_split)
  os.makedirs(os.path.dirname(predictions))
  open(predictions, 'wb').close()
  again = aadb.get_config()
  again.stage2.learning_rate = 3e-5
  with pytest.raises(workdir.IncompatibleWorkdirError, match='until stage2 has finished'):
    claim(tmp_path, again)


def test_an_invalid_config_json_is_named(tmp_path):
  (tmp_path / workdir.CONFIG_FILE).write_text('{"seed": 0,')
  with pytest.raises(workdir.WorkdirError, match=f'{tmp_path}/config.json is not valid JSON'):
    workdir.trained_config(str(tmp_path))
