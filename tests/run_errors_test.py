"""run.py on damaged or unwritable workdirs: one clear line naming the file, exit 2."""

import os
import shutil

from absl import flags
import pytest

from aesthetix.runtime import workdir as workdir_lib
from tests import trained_workdir
from tests import workdir_test


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  return trained_workdir.get(tmp_path_factory)


@pytest.fixture
def copy(trained, tmp_path):
  """A copy of the trained workdir to damage (its checkpoints hard-linked: a test
  that damages a checkpoint's bytes takes `copy_with_checkpoints`)."""
  path = str(tmp_path / 'run')
  trained_workdir.copy(trained[1], path)
  return path


@pytest.fixture
def copy_with_checkpoints(trained, tmp_path):
  """A copy of the trained workdir, its checkpoints' bytes too, to damage in place."""
  path = str(tmp_path / 'run')
  shutil.copytree(trained[1], path)
  return path


def run_py(capsys, *args):
  """(exit code, stderr) of run.py's main with `args`, in this process."""
  import run  # pylint: disable=g-import-not-at-top
  argv = flags.FLAGS(['run.py', *args])
  try:
    code = run.main(argv)
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr().err


def error_line(stderr):
  lines = [line for line in stderr.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1, stderr
  return lines[0]


def test_a_torn_last_metrics_line_is_skipped_and_a_bad_inner_line_named(copy, capsys):
  path = os.path.join(copy, workdir_lib.METRICS_FILE)
  with open(path, 'a') as f:
    f.write('{"stage": "stage2", "epo')  # A kill mid-write.
  assert run_py(capsys, '--mode=report', f'--workdir={copy}')[0] == 0
  lines = open(path).read().splitlines()
  lines.insert(1, '{"stage": "stage1", "epo')
  open(path, 'w').write('\n'.join(lines) + '\n')
  code, stderr = run_py(capsys, '--mode=report', f'--workdir={copy}')
  assert code == 2
  assert f'{path}, line 2, is not a JSON record' in error_line(stderr)


def test_a_truncated_predictions_file_is_named_with_the_fix(copy, capsys):
  path = workdir_lib.prediction_path(copy, 'stage2', 'test')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 3])
  code, stderr = run_py(capsys, '--mode=report', f'--workdir={copy}')
  assert code == 2
  assert f'{path} is damaged' in error_line(stderr) and 'Rerun the train command' in stderr


@pytest.mark.parametrize('mode', ['report', 'predict', 'evaluate'])
def test_an_invalid_config_json_is_named(copy, capsys, mode, tmp_path):
  path = os.path.join(copy, workdir_lib.CONFIG_FILE)
  text = open(path).read()
  open(path, 'w').write(text[:len(text) // 2])
  extra = [f'--images={path}'] if mode == 'predict' else []
  code, stderr = run_py(capsys, f'--mode={mode}', f'--workdir={copy}', *extra)
  assert code == 2
  assert f'{path} is not valid JSON' in error_line(stderr)


@pytest.mark.parametrize('how', workdir_test.READ_ONLY_WAYS)
def test_a_read_only_workdir_is_one_line(copy, capsys, how, monkeypatch):
  undo = workdir_test.read_only(copy, how, monkeypatch)
  try:
    code, stderr = run_py(capsys, '--mode=report', f'--workdir={copy}')
  finally:
    undo()
  assert code == 2
  assert f'Cannot write {copy}/' in error_line(stderr)


def test_evaluate_on_missing_other_data_names_the_flag_that_mode_takes(trained, capsys,
                                                                       tmp_path):
  code, stderr = run_py(capsys, '--mode=evaluate', f'--workdir={trained[1]}',
                        '--eval_dataset=eva', f'--data_dir={tmp_path / "data"}',
                        f'--manual_dir={tmp_path / "nothing"}')
  assert code == 2
  assert '--manual_dir=DIR (--mode=evaluate)' in error_line(stderr)
