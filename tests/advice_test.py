"""Every refusal's advice is a command that works (issue 24).

Where an error message suggests a flag or a command, a test triggers the
error, takes the suggestion as the message gives it, applies it as a user
would (the flag parsed by run.py's own parser, the command run) and sees it
get past that error. ADVICE_SITES names, for each message of the library that
suggests a flag or command, the test that does this; a guard test reads every
string of the library and fails on a suggestion that no test follows, so a
message added later gets its test too.
"""

import ast
import importlib
import os
import re
import shlex
import subprocess
import sys

from absl import flags
import jax
import pytest
import tensorflow_datasets as tfds

from aesthetix.cli import checks
from aesthetix.cli import flags as cli_flags
from aesthetix.cli import modes
from aesthetix.data import datasets
from aesthetix.data import spec as data_spec
from aesthetix.model import multitask as model_lib
from aesthetix.results import evaluate
from aesthetix.runtime import errors
from aesthetix.runtime import parallel
from aesthetix.runtime import preflight
from aesthetix.training import plan as plan_lib
from tests import fixtures_data
from tests import readme_commands_test
from tests import run_py
from tests import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A string of the library that suggests a flag or a command.
SUGGESTS = re.compile(r'--config[.=]|--manual_dir|--datasets|--overwrite|python run\.py|'
                      r'tfds build')
# (file, a piece of the message) -> the test that follows its advice.
ADVICE_SITES = {
    ('aesthetix/runtime/preflight.py', 'train first: python run.py'):
        'advice_test::test_train_first_trains_what_predict_needs',
    ('aesthetix/data/datasets.py', '--config.dataset.manual_dir=DIR (training) or '):
        'advice_test::test_the_manual_dir_flags_of_training_and_evaluate_find_the_data',
    ('aesthetix/data/datasets.py', 'Build it once before a multi-process run: tfds build'):
        'advice_test::test_the_tfds_build_command_prepares_a_multi_process_run',
    ('aesthetix/data/datasets.py', ' --manual_dir=DIR'):
        'advice_test::test_the_tfds_build_command_prepares_a_multi_process_run',
    ('aesthetix/data/spec.py', 'dataset.json with --config.dataset.manual_dir=DIR'):
        'advice_test::test_a_rated_photos_run_without_its_folder_is_told_the_flag',
    ('aesthetix/model/keras_weights.py', 'pass a file with --config.model.backbone_weights'):
        'advice_test::test_the_weights_flags_get_past_missing_imagenet_weights',
    ('aesthetix/model/multitask.py', '--config.model.backbone_weights='):
        'advice_test::test_the_weights_flags_get_past_missing_imagenet_weights',
    ('aesthetix/runtime/parallel.py', '(--config.stage1.batch_size, --config.stage2.'):
        'advice_test::test_an_even_batch_size_splits_over_the_devices',
    ('aesthetix/training/plan.py', '--config.'):
        'advice_test::test_a_value_the_plan_refuses_is_named_with_the_values_it_takes',
    ('aesthetix/training/train.py', 'Lower the learning rate (--config.'):
        'train_test::test_collapsed_predictions_stop_the_run_and_a_stage2_change_resumes_'
        'from_stage1',
    ('aesthetix/cli/checks.py', ': no such field in --config='):
        'advice_test::test_an_unknown_override_names_the_fields_of_the_config',
    ('aesthetix/cli/modes.py', 'exists: give a new folder, or --overwrite'):
        'advice_test::test_overwrite_gets_past_an_existing_export',
    ('aesthetix/serving/export.py', 'exists: give a new --output, or --overwrite'):
        'advice_test::test_overwrite_gets_past_an_existing_export',
    ('aesthetix/results/reproduce.py', '--config.backbone=shared_random'):
        'reproduce_selection_test::test_the_reproduce_flags_advice_for_missing_weights_works',
    ('aesthetix/results/reproduce.py', '--config.datasets.'):
        'reproduce_selection_test::test_a_cross_tests_data_is_checked_at_its_own_folders_'
        'before_anything_runs',
    ('aesthetix/results/selection.py', '--datasets'):
        'reproduce_selection_test::test_with_aadb_alone_the_refusal_names_what_works_and_'
        'datasets_aadb_runs',
    ('data_builders/manual_files.py', '(--config.dataset.skip_unreadable=True)'):
        'advice_test::test_skip_unreadable_reaches_the_builders',
    ('data_builders/rated_photos/rated_photos_dataset_builder.py',
     '(--config.dataset.skip_unreadable=True)'):
        'advice_test::test_skip_unreadable_reaches_the_builders',
    ('data_builders/rated_photos/rated_photos_dataset_builder.py', 'tfds build data_builders'):
        'rated_photos_test::test_tfds_build_command_with_the_folder_as_config',
    ('data_builders/rated_photos/rated_photos_dataset_builder.py', ' --config=\'{"manual_dir"'):
        'rated_photos_test::test_tfds_build_command_with_the_folder_as_config',
    ('data_builders/rated_photos/ratings.py', '(--config.dataset.skip_unreadable=True)'):
        'rated_photos_test::test_the_skip_unreadable_advice_gets_past_the_check',
}
# Strings that name a flag but give no advice: (file, piece) -> why.
NOT_ADVICE = {
    ('aesthetix/runtime/preflight.py', '--config.init_from='):
        "the user's own --config.init_from value, quoted back with what is wrong with it "
        '(transfer_test::test_a_w_of_another_size_or_architecture_is_refused_before_jax_loads)',
    ('aesthetix/runtime/preflight.py', ' (--config.'):
        'the field in which the run and its --config.init_from workdir differ (the same test)',
    # A full disk's ways on: faults_test checks each message and that the rerun
    # after space is freed is bit-identical; no test yet follows these two flags.
    ('aesthetix/training/checkpoint.py', '(--config.checkpoint_max_to_keep=N)'):
        'a way on after a full disk (faults_test checks the line; the flag is not followed)',
    ('aesthetix/training/feature_cache.py', '(--config.feature_cache_dir=DIR)'):
        'a way on after a full disk (faults_test checks the line; the flags are not followed)',
    ('aesthetix/cli/checks.py', '--config.'): 'the prefix the command line is read by',
    ('aesthetix/cli/checks.py', '--config='): 'how --config is found in the command line',
    ('aesthetix/cli/checks.py', 'flag --config'): 'how absl names a config error',
    ('aesthetix/results/experiment.py', '`python run.py --mode=report'):
        'a log line after a finished run, not a refusal (the README\'s report commands run '
        'in readme_commands_test)',
}


def library_strings():
  """(file, line, text) of every string of the library and the builders that
  suggests a flag or command; docstrings left out."""
  for folder in ('aesthetix', 'data_builders'):
    for root, _, files in os.walk(os.path.join(REPO, folder)):
      for name in sorted(files):
        if not name.endswith('.py'):
          continue
        path = os.path.join(root, name)
        tree = ast.parse(open(path, encoding='utf-8').read(), path)
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
          if (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and SUGGESTS.search(node.value)):
            yield os.path.relpath(path, REPO), node.lineno, node.value


def test_every_suggestion_of_the_library_has_a_test_that_follows_it():
  claimed = {**ADVICE_SITES, **NOT_ADVICE}
  unclaimed = [f'{path}:{line}: {text!r}' for path, line, text in library_strings()
               if not any(path == p and piece in text for p, piece in claimed)]
  assert not unclaimed, ('Messages that suggest a flag or command with no test that follows '
                         'the advice (add one to ADVICE_SITES):\n' + '\n'.join(unclaimed))
  strings = list(library_strings())
  stale = [key for key in claimed if not any(p == key[0] and key[1] in t for p, _, t in strings)]
  assert not stale, f'Entries that match no message any more: {stale}'
  for where in set(ADVICE_SITES.values()):
    module, test = where.split('::')
    assert hasattr(importlib.import_module(f'tests.{module}'), test), where


def parsed_config(args, monkeypatch):
  """The ConfigDict that run.py's parser makes of `args` (a user's flags)."""
  import run  # pylint: disable=g-import-not-at-top
  argv = ['run.py', *args]
  monkeypatch.setattr(sys, 'argv', argv)
  try:
    run.parse_flags(argv)
    return cli_flags.CONFIG.value
  finally:
    run_py.forget_flags()


def in_check(args, monkeypatch, check):
  """`check()` (a mode's path check) with run.py's flags parsed from `args`."""
  import run  # pylint: disable=g-import-not-at-top
  argv = ['run.py', *args]
  monkeypatch.setattr(sys, 'argv', argv)
  try:
    run.parse_flags(argv)
    return check()
  finally:
    run_py.forget_flags()


def test_train_first_trains_what_predict_needs(tmp_path, monkeypatch):
  """The advice of a predict on a workdir that is not there: the demo's train
  command, run as given (tiny: the demo's data built small where TFDS keeps
  it, 32 px, 1 + 1 epochs; about 10 s)."""
  tfds_home = tmp_path / 'tensorflow_datasets'
  datasets.builder(tiny.plan(tiny.config(tfds_home)).data)
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', str(tfds_home))
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'keras'))  # Random weights, as logged.
  monkeypatch.chdir(REPO)
  workdir = str(tmp_path / 'mine')
  problem = preflight.trained_workdir_problem(workdir)
  command, = re.findall(r'train first: (python run\.py [^)]*)\)', problem)
  args = shlex.split(command)[2:]
  code, stderr = run_py.in_process(args + readme_commands_test.tiny_args(args), monkeypatch)
  assert code == 0, stderr[-3000:]
  assert preflight.trained_workdir_problem(workdir) is None


def aadb_downloads(tmp_path):
  """A tiny copy of AADB's downloads; returns their folder."""
  fixtures_data.make_aadb(tmp_path / 'aadb')
  return tmp_path / 'aadb'


def test_the_manual_dir_flags_of_training_and_evaluate_find_the_data(tmp_path, monkeypatch):
  data_dir = tmp_path / 'data'
  config = parsed_config(['--config=configs/aadb.py', f'--config.dataset.data_dir={data_dir}'],
                         monkeypatch)
  problem = datasets.data_problem(plan_lib.resolve_data(config.dataset))
  assert problem.endswith('give their folder with --config.dataset.manual_dir=DIR (training) '
                          'or --manual_dir=DIR (--mode=evaluate)')
  downloads = aadb_downloads(tmp_path)
  config = parsed_config(['--config=configs/aadb.py', f'--config.dataset.data_dir={data_dir}',
                          f'--config.dataset.manual_dir={downloads}'], monkeypatch)
  assert datasets.data_problem(plan_lib.resolve_data(config.dataset)) is None
  # --mode=evaluate of a model trained on the synthetic set, tested on AADB.
  trained = plan_lib.resolve_data(parsed_config(['--config=configs/demo.py'], monkeypatch).dataset)
  assert datasets.data_problem(evaluate.evaluation_data(trained, 'aadb', str(data_dir))) == problem
  assert datasets.data_problem(evaluate.evaluation_data(trained, 'aadb', str(data_dir),
                                                        str(downloads))) is None


def test_the_tfds_build_command_prepares_a_multi_process_run(tmp_path, monkeypatch):
  """A multi-process run refuses to build; the tfds command it gives (DIR: the
  downloads) builds the data, and the run gets past. (One tfds process: ~8 s.)"""
  downloads = aadb_downloads(tmp_path)
  data = data_spec.DataSpec(targets=data_spec.dataset_targets('aadb'), image_size=32,
                            data_dir=str(tmp_path / 'data'))
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  with pytest.raises(datasets.DataError) as raised:
    datasets.builder(data)
  command, = re.findall(r'(tfds build \S+ --data_dir=\S+ --manual_dir=DIR)', str(raised.value))
  tokens = shlex.split(command.replace('--manual_dir=DIR', f'--manual_dir={downloads}'))
  tfds_cli = os.path.join(os.path.dirname(sys.executable), 'tfds')
  result = subprocess.run([tfds_cli, *tokens[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
  assert result.returncode == 0, result.stderr[-3000:]
  assert datasets.builder(data).is_prepared()


def test_a_rated_photos_run_without_its_folder_is_told_the_flag(tmp_path, monkeypatch):
  config = parsed_config(['--config=configs/rated_photos.py'], monkeypatch)
  problem = data_spec.folder_problem(config.dataset.name, config.dataset.manual_dir)
  assert problem.endswith('with --config.dataset.manual_dir=DIR')
  with pytest.raises(errors.ConfigError, match='--config.dataset.manual_dir=DIR'):
    plan_lib.resolve_data(config.dataset)
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  config = parsed_config(['--config=configs/rated_photos.py',
                          f'--config.dataset.manual_dir={photos}'], monkeypatch)
  assert data_spec.folder_problem(config.dataset.name, config.dataset.manual_dir) is None
  assert plan_lib.resolve_data(config.dataset).targets.output_names == tuple(
      fixtures_data.RATED_OUTPUTS)


def test_the_weights_flags_get_past_missing_imagenet_weights(tmp_path, monkeypatch):
  monkeypatch.setenv('KERAS_HOME', str(tmp_path / 'keras'))
  problem = model_lib.weights_problem('imagenet', download=False)
  flags_given = re.findall(r'--config\.model\.backbone_weights=(\w+)', problem)
  assert flags_given == ['PATH', 'random'], problem
  weights = tmp_path / 'vgg16.msgpack'
  weights.write_bytes(b'converted weights')
  for value in (str(weights), 'random'):
    config = parsed_config(['--config=configs/aadb.py',
                            f'--config.model.backbone_weights={value}'], monkeypatch)
    assert model_lib.weights_problem(config.model.backbone_weights, download=False) is None
  missing = model_lib.weights_problem(str(tmp_path / 'nowhere.h5'))
  assert missing.endswith('or imagenet, or random)') and '--config.model.backbone_weights=' \
      in missing


def test_an_even_batch_size_splits_over_the_devices(monkeypatch):
  odd = 2 * jax.device_count() + 1
  with pytest.raises(errors.ConfigError) as raised:
    parallel.host_batch_size(odd)
  assert '(--config.stage1.batch_size, --config.stage2.batch_size)' in str(raised.value)
  multiple = int(re.search(r'give a multiple of (\d+)', str(raised.value)).group(1))
  config = parsed_config(['--config=configs/demo.py', f'--config.stage1.batch_size={multiple}',
                          f'--config.stage2.batch_size={multiple}'], monkeypatch)
  for stage in (config.stage1, config.stage2):
    # This process's rows: its devices' share of the global batch.
    assert parallel.host_batch_size(stage.batch_size) == (
        multiple // jax.device_count() * jax.local_device_count())


def test_a_value_the_plan_refuses_is_named_with_the_values_it_takes(monkeypatch):
  config = parsed_config(['--config=configs/demo.py', '--config.model.tasks=both'], monkeypatch)
  with pytest.raises(errors.ConfigError) as raised:
    plan_lib.resolve(config, backend='cpu')
  field, values = re.match(r"--config\.(\S+)='both' is not one of (.*)\.$",
                           str(raised.value)).groups()
  for value in re.findall(r"'(\w+)'", values):
    config = parsed_config(['--config=configs/demo.py', f'--config.{field}={value}'],
                           monkeypatch)
    assert plan_lib.resolve(config, backend='cpu').model.tasks == value
  config = parsed_config(['--config=configs/demo.py',
                          "--config.stage2.trainable_layers=('block4_conv9',)"], monkeypatch)
  with pytest.raises(errors.ConfigError) as raised:
    plan_lib.resolve(config, backend='cpu')
  known = str(raised.value).split('block4_conv9 are not VGG16 layers; known: ')[1]
  layer = known.rstrip('.').split(', ')[-1]
  config = parsed_config(['--config=configs/demo.py',
                          f"--config.stage2.trainable_layers=('{layer}',)"], monkeypatch)
  assert plan_lib.resolve(config, backend='cpu').stages[1].trainable_layers == (layer,)


def test_an_unknown_override_names_the_fields_of_the_config():
  """The fallback for an override that absl did not register: the config's own
  fields (it used to send the user to --helpfull, which does not list them)."""
  error = checks.flag_error(flags.UnrecognizedFlagError('config.modell.dropout'),
                            ['run.py', '--config=configs/demo.py'])
  assert error == ("--config.modell.dropout: configs/demo.py has no field 'modell' (did you "
                   "mean 'model'?).")
  error = checks.flag_error(flags.UnrecognizedFlagError('config.seed'),
                            ['run.py', '--config=configs/nowhere.py'])
  assert error == '--config.seed: no such field in --config=configs/nowhere.py.'


def test_overwrite_gets_past_an_existing_export(tmp_path, monkeypatch):
  output = tmp_path / 'model'
  output.mkdir()
  args = ['--mode=export', f'--workdir={tmp_path}', f'--output={output}', '--format=stablehlo']
  exists = f'--output={output} exists: give a new folder, or --overwrite to replace it'
  assert exists in in_check(args, monkeypatch, modes.check_export)
  assert exists not in in_check(args + ['--overwrite'], monkeypatch, modes.check_export)


def test_skip_unreadable_reaches_the_builders(tmp_path, monkeypatch):
  """The flag the builders' messages name is the one their skip_unreadable
  takes (data_builders_test and rated_photos_test build with it)."""
  photos, _ = fixtures_data.make_rated(tmp_path / 'photos', n_images=10)
  for config_file, extra in (('configs/aadb.py', []),
                             ('configs/rated_photos.py', [f'--config.dataset.manual_dir={photos}'])):
    config = parsed_config([f'--config={config_file}', *extra,
                            f'--config.dataset.data_dir={tmp_path / "data"}',
                            '--config.dataset.skip_unreadable=True'], monkeypatch)
    assert datasets.new_builder(plan_lib.resolve_data(config.dataset)).skip_unreadable is True
