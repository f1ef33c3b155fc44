"""The workdir guard: checkpoints of another config are refused, nothing else is."""

import json
import os

import pytest

from aesthetix import checkpoint
from configs import aadb


def test_config_without_checkpoints_is_replaced(tmp_path):
  checkpoint.claim_workdir(str(tmp_path), aadb.get_config())
  changed = aadb.get_config()
  changed.model.backbone_weights = 'random'  # The fix after a failed start.
  checkpoint.claim_workdir(str(tmp_path), changed)
  with open(tmp_path / checkpoint.CONFIG_FILE) as f:
    assert json.load(f)['model']['backbone_weights'] == 'random'


def test_checkpoints_of_another_config_are_refused(tmp_path):
  checkpoint.claim_workdir(str(tmp_path), aadb.get_config())
  os.makedirs(tmp_path / checkpoint.CHECKPOINT_DIR / '3')
  changed = aadb.get_config()
  changed.stage2.learning_rate = 1e-3
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match='stage2.learning_rate'):
    checkpoint.claim_workdir(str(tmp_path), changed)
  resumable = aadb.get_config()
  resumable.dataset.data_dir = '/elsewhere'  # Moving the data does not change the run.
  checkpoint.claim_workdir(str(tmp_path), resumable)
  with open(tmp_path / checkpoint.CONFIG_FILE) as f:
    assert json.load(f)['stage2']['learning_rate'] == 1e-4
