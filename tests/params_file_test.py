"""The params file: training leaves W/params.npz, the newest checkpoint's params
as plain arrays; a trained model is read from it (no Orbax) only while it is
that checkpoint's copy, from the checkpoint otherwise (an older or other
copy, a damaged file), and `refresh` writes it again."""

import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import checkpoint
from aesthetix.training import digests
from aesthetix.training import params_file
from aesthetix.training import trained as trained_lib
from tests import trained_workdir


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture
def copy(trained, tmp_path):
  """A workdir of the shared run's config, params file and (read-only, linked)
  checkpoints: what the loader reads, the one file these tests change their own."""
  _, workdir = trained
  target = tmp_path / 'run'
  target.mkdir()
  for name in (workdir_lib.CONFIG_FILE, workdir_lib.PARAMS_FILE):
    shutil.copy(os.path.join(workdir, name), target / name)
  os.symlink(workdir_lib.checkpoint_dir(workdir), workdir_lib.checkpoint_dir(str(target)))
  return str(target)


def checkpoint_params(workdir, plan):
  """The newest checkpoint's params, read by Orbax."""
  like = model_lib.param_shapes(model_lib.build_model(plan.model), plan.data.image_size)
  return checkpoint.restore_params(workdir, like)


def assert_same(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(x).dtype == np.asarray(y).dtype


def rewrite(workdir, params=None, **record):
  """Rewrites W/params.npz with other `params` and/or record fields (as a
  differing writer would have left it)."""
  path = workdir_lib.params_file_path(workdir)
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  old = json.loads(str(arrays.pop(params_file.RECORD_KEY)))
  if params is not None:
    arrays = params_file.flatten(params)
  arrays[params_file.RECORD_KEY] = np.array(json.dumps(dict(old, **record)))
  np.savez(path, **arrays)


def test_training_leaves_a_copy_of_the_newest_checkpoints_params(trained):
  plan, workdir = trained
  reading = params_file.read(workdir)
  assert reading.why is None and not reading.damaged
  assert_same(reading.params, checkpoint_params(workdir, plan))
  with np.load(workdir_lib.params_file_path(workdir)) as f:
    record = json.loads(str(f[params_file.RECORD_KEY]))
  assert record['checkpoint'] == trained_workdir.STAGE1_EPOCHS + trained_workdir.STAGE2_EPOCHS
  assert record['checkpoint'] == params_file.newest_checkpoint(workdir)
  assert record['params_digest'] == digests.tree_digest(reading.params)
  # The one the loader returns.
  assert_same(trained_lib.load_trained(workdir)[2], reading.params)


def test_a_copy_of_an_older_checkpoint_is_not_read(trained, copy, caplog):
  plan, _ = trained
  newest = params_file.newest_checkpoint(copy)
  rewrite(copy, checkpoint=newest - 1)
  reading = params_file.read(copy)
  assert reading.params is None and not reading.damaged
  assert f'copies checkpoint {newest - 1}, the newest is {newest}' in reading.why
  with caplog.at_level(logging.INFO, logger='absl'):
    params = trained_lib.load_trained(copy)[2]
  assert_same(params, checkpoint_params(copy, plan))
  assert any('reading the newest checkpoint instead' in r.getMessage() and
             r.levelno == logging.INFO for r in caplog.records)


def test_other_params_under_the_newest_number_are_not_read(trained, copy):
  """A last stage started again writes checkpoints of the same numbers."""
  plan, _ = trained
  other = jax.tree_util.tree_map(lambda x: np.asarray(x) * 2, params_file.read(copy).params)
  rewrite(copy, other, params_digest=digests.tree_digest(other))
  reading = params_file.read(copy)
  assert reading.params is None and not reading.damaged
  assert 'is not a copy of checkpoint' in reading.why
  assert_same(trained_lib.load_trained(copy)[2], checkpoint_params(copy, plan))


@pytest.mark.parametrize('damage', ['flipped', 'truncated'])
def test_a_damaged_file_is_a_warning_the_checkpoint_serves_and_refresh_mends_it(
    trained, copy, caplog, damage):
  plan, _ = trained
  path = workdir_lib.params_file_path(copy)
  data = bytearray(open(path, 'rb').read())
  if damage == 'flipped':  # One bit inside the arrays: only the digest sees it.
    data[len(data) // 2] ^= 1
  else:
    data = data[:len(data) // 3]
  open(path, 'wb').write(bytes(data))
  reading = params_file.read(copy)
  assert reading.params is None and reading.damaged and path in reading.why
  with caplog.at_level(logging.INFO, logger='absl'):
    params = trained_lib.load_trained(copy)[2]
  want = checkpoint_params(copy, plan)
  assert_same(params, want)
  assert any(r.levelno == logging.WARNING and path in r.getMessage() for r in caplog.records)
  assert params_file.refresh(copy, want)
  assert_same(params_file.read(copy).params, want)


def test_refresh_writes_only_what_is_not_there_and_only_the_newest(trained, copy):
  plan, _ = trained
  path = workdir_lib.params_file_path(copy)
  params = checkpoint_params(copy, plan)
  before = os.stat(path).st_mtime_ns
  assert not params_file.refresh(copy, params)  # Already its copy.
  assert os.stat(path).st_mtime_ns == before
  os.remove(path)
  assert params_file.read(copy).why == f'{path} does not exist'
  other = jax.tree_util.tree_map(lambda x: np.asarray(x) + 1, params)
  assert not params_file.refresh(copy, other)  # Not the newest checkpoint's.
  assert not os.path.exists(path)
  assert params_file.refresh(copy, params)
  assert_same(params_file.read(copy).params, params)


def test_a_full_disk_leaves_no_file_and_a_warning(trained, copy, monkeypatch, caplog):
  plan, _ = trained
  path = workdir_lib.params_file_path(copy)
  os.remove(path)
  before = sorted(os.listdir(copy))
  monkeypatch.setattr(workdir_lib, 'free_bytes', lambda _: 1000)
  with caplog.at_level(logging.WARNING, logger='absl'):
    assert not params_file.refresh(copy, checkpoint_params(copy, plan))
  assert sorted(os.listdir(copy)) == before  # No file, no temporary.
  assert any('the params file' in r.getMessage() and 'reads the checkpoint' in r.getMessage()
             for r in caplog.records)
