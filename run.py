"""aesthetix: the one entry point.

  python run.py --config=configs/aadb.py --workdir=W              # train + evaluate
  python run.py --config=configs/aadb.py --mode=audit             # Table 2
  python run.py --mode=evaluate --workdir=W [--eval_dataset=eva]  # test split again
  python run.py --mode=convert_weights --keras_h5=IN.h5 --out=OUT.msgpack
  python run.py --mode=predict --workdir=W --images=PHOTOS --output=scores.csv  # or .json
  python run.py --mode=gradcam --workdir=W --images=PHOTOS --output=DIR [--target=Light]
  python run.py --mode=report --workdir=W                         # report.md + figures
  python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4     # the paper: PAPER.md
  python run.py --mode=reproduce --config=configs/reproduce.py:demo --workdir=W
  python run.py --mode=export --workdir=W --output=DIR --format=saved_model  # or stablehlo, tflite

Exit status: 0 done; 2 a mistake of the command line, the set-up or the data
(one line saying what and how to fix it); 3 the audit found counts that differ
from the paper's; 1 a bug (a traceback). --verbosity=1 shows the traceback of
a status-2 error too. Flags, paths and the config are checked before JAX or
TensorFlow load, so a mistake is reported within a second or two.
"""

import difflib
import glob
import logging as std_logging
import os
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from aesthetix import errors
from aesthetix import preflight

USAGE_EXIT = 2
AUDIT_MISMATCH_EXIT = 3
BUG_EXIT = 1

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/aadb.py or configs/aadb.py:single_task.',
    lock_config=True)
_MODE = flags.DEFINE_enum('mode', 'train', ('train', 'evaluate', 'audit', 'convert_weights',
                                            'predict', 'gradcam', 'report', 'reproduce',
                                            'export'),
                          'What to do.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.')
_KERAS_H5 = flags.DEFINE_string('keras_h5', None, 'convert_weights: Keras weights file.')
_OUT = flags.DEFINE_string('out', None, 'convert_weights: output .msgpack file.')
_EVAL_DATASET = flags.DEFINE_string(
    'eval_dataset', None, 'evaluate: another dataset to test on (cross-dataset, '
    'overall score only), e.g. eva for a model trained on aadb.')
_IMAGES = flags.DEFINE_string(
    'images', None, 'predict, gradcam: an image file, a folder (searched '
    "recursively) or a quoted glob such as 'photos/**/*.jpg'.")
_OUTPUT = flags.DEFINE_string(
    'output', None, 'predict: the scores file, JSON when it ends in .json, else CSV '
    '(default: CSV on stdout); gradcam: the folder for the PNGs; export: the folder of '
    'the model.')
_TARGET = flags.DEFINE_string(
    'target', None, 'gradcam: the output to explain, e.g. Light (default: the overall score).')
_LAYER = flags.DEFINE_string(
    'layer', None, 'gradcam: the VGG16 layer of the maps, e.g. block4_conv3 '
    '(default: block5_conv3, the last convolutional layer).')
_BATCH_SIZE = flags.DEFINE_integer(
    'batch_size', None, 'predict, gradcam: images per step (default: the config\'s '
    'eval_batch_size, rounded up to a multiple of the devices).')
_FORMAT = flags.DEFINE_enum('format', None, ('saved_model', 'stablehlo', 'tflite'),
                            'export: saved_model (TF Serving), stablehlo (JAX servers) or '
                            'tflite (LiteRT).')
_QUANTIZE = flags.DEFINE_enum('quantize', None, ('float16', 'dynamic_int8'),
                              'export --format=tflite: store the weights in 16 or 8 bits.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'export: replace an existing --output.')
_SEEDS = flags.DEFINE_list('seeds', None, 'reproduce: the seeds, e.g. 0,1,2,3,4 (default: '
                           "the reproduction config's).")
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'evaluate: TFDS data_dir of the test data.')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, 'evaluate: manual dir of the test data.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Multi-process runs: HOST:PORT of process 0 (the '
    'same for every process). Without the three flags, a cluster that JAX detects '
    '(SLURM, Open MPI, Cloud TPU) starts one; otherwise the run is single-process.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Multi-process runs: how many processes in all.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'Multi-process runs: this process, 0 .. num_processes-1.')
_INIT_TIMEOUT = flags.DEFINE_integer(
    'init_timeout', 300, 'Multi-process runs: seconds to wait for every process to join.')
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    'heartbeat_timeout', 30, 'Multi-process runs: seconds without a heartbeat after '
    'which a process counts as dead and the others stop.')

MULTI_PROCESS_FLAGS = ('coordinator_address', 'num_processes', 'process_id', 'init_timeout',
                       'heartbeat_timeout')
# Per mode: (flags it needs, flags it also reads); it warns about the others.
MODES = {
    'train': (('config', 'workdir'), MULTI_PROCESS_FLAGS),
    'evaluate': (('workdir',), ('eval_dataset', 'data_dir', 'manual_dir') + MULTI_PROCESS_FLAGS),
    'audit': (('config',), ()),
    'convert_weights': (('keras_h5', 'out'), ()),
    'predict': (('workdir', 'images'), ('output', 'batch_size') + MULTI_PROCESS_FLAGS),
    'gradcam': (('workdir', 'images', 'output'),
                ('target', 'layer', 'batch_size') + MULTI_PROCESS_FLAGS),
    'report': (('workdir',), ()),
    'reproduce': (('workdir',), ('config', 'seeds') + MULTI_PROCESS_FLAGS),
    'export': (('workdir', 'output', 'format'), ('quantize', 'overwrite')),
}
# What each flag takes, for the message of one that is missing.
FLAG_VALUES = {
    'config': 'configs/aadb.py (or eva.py, demo.py)',
    'workdir': "W (the run's folder)",
    'images': "PHOTOS (a file, a folder or a quoted glob 'photos/*.jpg')",
    'output': 'DIR (a folder: the figures, or the exported model)',
    'keras_h5': 'IN.h5 (a Keras weights file)',
    'format': 'saved_model (or stablehlo, tflite)',
    'out': 'OUT.msgpack',
}
# Config files that are not a run's config.
_NOT_CONFIGS = ('common.py', 'paper_numbers.py', '__init__.py')

# Processes of this run; more than one once `start_devices` joined them.
_PROCESSES = [1]


# ----------------------------------------------------------------- checking


def _given(name):
  return flags.FLAGS[name].present


def _config_argument():
  """The --config value as typed (the flag object keeps only the loaded config)."""
  value = None
  args = sys.argv[1:]
  for i, arg in enumerate(args):
    if arg.startswith('--config='):
      value = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(args):
      value = args[i + 1]
  return value


def config_files():
  here = os.path.dirname(os.path.abspath(__file__))
  return sorted(os.path.relpath(p, here) for p in glob.glob(os.path.join(here, 'configs', '*.py'))
                if os.path.basename(p) not in _NOT_CONFIGS)


def _error_chain(error):
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__


def config_error(error):
  """One line for a config file that does not load, or an override that does not fit."""
  argument = _config_argument() or '?'
  for e in _error_chain(error):
    if isinstance(e, FileNotFoundError) or 'No such file' in str(e):
      return (f'--config={argument}: no such file. Config files: '
              f'{", ".join(config_files())} (a variant after a colon, e.g. '
              'configs/aadb.py:single_task).')
    if isinstance(e, (AttributeError, KeyError)):
      return _unknown_field(str(e), argument)
  last = list(_error_chain(error))[-1]
  text = (str(last).strip().splitlines() or [''])[-1]
  return f'--config={argument} does not load ({type(last).__name__}: {text}).'


def _unknown_field(text, argument):
  """ml_collections' message for an override of a field that does not exist
  ("'x' Did you mean "y" instead of "x"?"), as one sentence naming the flag."""
  match = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
  wrong = match[2] if match else re.sub(r'\W', '', text.split('\\n')[0])
  flag = next((a.split('=')[0] for a in sys.argv[1:] if a.startswith('--config.')
               and wrong in a.split('=')[0].split('.')[1:]), '--config.' + wrong)
  return (f'{flag}: {argument} has no field {wrong!r}'
          + (f' (did you mean {match[1]!r}?)' if match else '') + '.')


def load_config():
  """The --config, loaded (ml_collections defers a failed load to its first use)."""
  try:
    config = _CONFIG.value
    if config is not None:
      config.keys()
  except Exception as e:  # pylint: disable=broad-except
    raise errors.UserError(config_error(e)) from e
  return config


def check_flags(mode):
  """The flags `mode` needs are given; a warning for each one it ignores."""
  needed, read = MODES[mode]
  missing = [n for n in needed if n != 'config' and not flags.FLAGS[n].value]
  if 'config' in needed and not _given('config'):
    missing.insert(0, 'config')
  if missing:
    raise errors.UserError(f'--mode={mode} needs ' + ' and '.join(
        f'--{n}={FLAG_VALUES.get(n, n.upper())}' for n in missing) + '.')
  ours = {n for m in MODES.values() for n in m[0] + m[1]}
  for name in sorted(ours - set(needed) - set(read)):
    if _given(name):
      why = (' (it uses the workdir\'s own config.json)' if name == 'config'
             and mode in ('predict', 'gradcam', 'evaluate', 'report') else '')
      print(f'warning: --mode={mode} ignores --{name}{why}.', file=sys.stderr)
  overrides = [n for n in flags.FLAGS if n.startswith('config.') and _given(n)]
  if overrides and 'config' not in needed:
    print(f'warning: --mode={mode} ignores {", ".join("--" + n for n in overrides)}.',
          file=sys.stderr)


def check_paths(mode):
  """What the mode reads exists and what it writes can be written (no JAX yet)."""
  problems = []
  if mode == 'export':
    if os.path.exists(_OUTPUT.value) and not _OVERWRITE.value:
      problems.append(f'--output={_OUTPUT.value} exists: give a new folder, or --overwrite '
                      'to replace it')
    problems.append(preflight.writable_problem(_OUTPUT.value, 'folder'))
  if mode in ('evaluate', 'predict', 'gradcam', 'report', 'export'):
    problems.append(preflight.trained_workdir_problem(_WORKDIR.value,
                                                      need_checkpoint=mode != 'report'))
  if mode in ('predict', 'gradcam'):
    try:
      preflight.find_images(_IMAGES.value)
    except FileNotFoundError as e:
      problems.append(f'--images: {str(e).rstrip(".")}')
  if mode == 'predict' and _OUTPUT.value not in (None, '-'):
    problems.append(preflight.writable_problem(_OUTPUT.value, 'file'))
  if mode == 'gradcam':
    problems.append(preflight.writable_problem(_OUTPUT.value, 'folder'))
  if mode in ('train', 'reproduce'):
    problems.append(preflight.writable_problem(_WORKDIR.value, 'folder'))
  if mode == 'convert_weights':
    if not os.path.isfile(_KERAS_H5.value):
      problems.append(f'--keras_h5={_KERAS_H5.value}: no such file')
    problems.append(preflight.writable_problem(_OUT.value, 'file'))
  if _BATCH_SIZE.value is not None and _BATCH_SIZE.value < 1:
    problems.append(f'--batch_size={_BATCH_SIZE.value} must be at least 1')
  preflight.raise_if_any(problems)


# -------------------------------------------------------------------- modes


def audit(config):
  from aesthetix import audit as audit_lib  # pylint: disable=g-import-not-at-top
  _, table, mismatches, summary = audit_lib.run_audit(config)
  print(f'Table 2 of Soydaner & Wagemans vs this model ({config.dataset.name}, '
        f'tasks={config.model.tasks}, output_layers={config.model.output_layers})\n')
  print(table)
  print(f'\n{summary}')
  return AUDIT_MISMATCH_EXIT if mismatches else 0


def convert_weights():
  from aesthetix import keras_weights  # pylint: disable=g-import-not-at-top
  layers = keras_weights.convert(_KERAS_H5.value, _OUT.value)
  print(f'Wrote {len(layers)} layers from {_KERAS_H5.value} to {_OUT.value}.')
  return 0


def start_devices():
  """Starts the processes of a multi-process run, if asked for; before any JAX work."""
  from aesthetix import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                      timeout_s=_INIT_TIMEOUT.value,
                      heartbeat_timeout_s=_HEARTBEAT_TIMEOUT.value)
  _PROCESSES[0] = parallel.process_count()
  return parallel


def evaluate():
  from aesthetix import report  # pylint: disable=g-import-not-at-top
  from aesthetix import train  # pylint: disable=g-import-not-at-top
  parallel = start_devices()
  result, path = train.evaluate_workdir(_WORKDIR.value, _EVAL_DATASET.value, _DATA_DIR.value,
                                        _MANUAL_DIR.value)
  if not parallel.is_main_process():
    return 0
  print(f"Trained on {result['trained_on']}, tested on {result['evaluated_on']} "
        f"({result['split']} split):\n")
  print(report.metrics_table(result['metrics']))
  print(f'\nWritten to {path}')
  return 0


def predict():
  from aesthetix import predict as predict_lib  # pylint: disable=g-import-not-at-top
  output = _OUTPUT.value or '-'
  parallel = start_devices()
  summary = predict_lib.predict_workdir(_WORKDIR.value, _IMAGES.value, output,
                                        batch_size=_BATCH_SIZE.value)
  if not parallel.is_main_process():
    return 0
  steady = summary['steady_images_per_second']
  print(f"Scored {summary['scored']} image(s) in {summary['seconds']:.1f} s: "
        f"{summary['images_per_second']:.1f} images/s in all, compilation included"
        + (f', {steady:.1f} images/s after the first batch' if steady else '')
        + f"; {summary['failed']} file(s) could not be read"
        + (f'. Written to {output}' if output != '-' else '') + '.', file=sys.stderr)
  return 0


def gradcam():
  from aesthetix import gradcam as gradcam_lib  # pylint: disable=g-import-not-at-top
  parallel = start_devices()
  written, failed = gradcam_lib.gradcam_workdir(_WORKDIR.value, _IMAGES.value, _OUTPUT.value,
                                                _TARGET.value, _LAYER.value,
                                                batch_size=_BATCH_SIZE.value)
  for path, reason in failed.items():  # Each process names the files it could not read.
    print(f'skipped {path}: {reason}', file=sys.stderr)
  written = int(parallel.gather_processes(len(written)).sum())
  if parallel.is_main_process():
    print(f'Wrote {written} Grad-CAM figure(s) to {_OUTPUT.value}.')
  return 0


def report():
  from aesthetix import checkpoint  # pylint: disable=g-import-not-at-top
  from aesthetix import figures  # pylint: disable=g-import-not-at-top
  from aesthetix import report as report_lib  # pylint: disable=g-import-not-at-top
  config = checkpoint.trained_config(_WORKDIR.value)
  paths = figures.write_all(config, _WORKDIR.value)
  report_lib.write(config, _WORKDIR.value)
  print(f'Wrote {os.path.join(_WORKDIR.value, "report.md")} with {len(paths)} figure(s).')
  return 0


def reproduce(config):
  from aesthetix import reproduce as reproduce_lib  # pylint: disable=g-import-not-at-top
  from configs import reproduce as reproduce_config  # pylint: disable=g-import-not-at-top
  if config is None:
    config = reproduce_config.get_config()
  if 'experiments' not in config:
    raise errors.UserError(f'--config={_config_argument()} is not a reproduction config; '
                           'use configs/reproduce.py or configs/reproduce.py:demo.')
  try:
    seeds = [int(s) for s in _SEEDS.value] if _SEEDS.value else None
  except ValueError as e:
    raise errors.UserError(f'--seeds={",".join(_SEEDS.value)}: give integers, e.g. '
                           '--seeds=0,1,2.') from e
  parallel = start_devices()
  summary = reproduce_lib.run(config, _WORKDIR.value, seeds)
  if parallel.is_main_process():
    counts = {}
    for c in summary['claims']:
      counts[c['verdict']] = counts.get(c['verdict'], 0) + 1
    print(f'Wrote {os.path.join(_WORKDIR.value, reproduce_lib.PAPER_MD)}: '
          f'{len(summary["runs"])} runs, {len(summary["claims"])} claims ('
          + ', '.join(f'{n} {v}' for v, n in sorted(counts.items())) + ').')
  return 0


def export():
  from aesthetix import export as export_lib  # pylint: disable=g-import-not-at-top
  info = export_lib.export(_WORKDIR.value, _OUTPUT.value, _FORMAT.value,
                           overwrite=_OVERWRITE.value, quantize=_QUANTIZE.value)
  print(f'Wrote {_OUTPUT.value}: {info["format"]} of {", ".join(info["outputs"])} '
        f'({info["dataset"]} scale), input {info["input"]}; see '
        f'{os.path.join(_OUTPUT.value, export_lib.METADATA)}.')
  return 0


def train(config):
  start_devices()
  from aesthetix import train as train_lib  # pylint: disable=g-import-not-at-top
  return train_lib.train_and_evaluate(config, _WORKDIR.value)


def dispatch(argv):
  if len(argv) > 1:
    raise errors.UserError(f'Unexpected arguments {argv[1:]}: every option is a --flag '
                           '(python run.py --helpshort lists them).')
  mode = _MODE.value
  check_flags(mode)
  config = load_config() if mode in ('train', 'audit', 'reproduce') else None
  check_paths(mode)
  if mode == 'audit':
    return audit(config)
  if mode == 'train':
    return train(config)
  if mode == 'reproduce':
    return reproduce(config)
  return {'evaluate': evaluate, 'convert_weights': convert_weights, 'predict': predict,
          'gradcam': gradcam, 'report': report, 'export': export}[mode]()


# ---------------------------------------------------------------- exit codes


# Errors that describe the user's input (a missing file, a malformed label
# line, a foreign workdir, a diverged loss): a message, not a traceback.
USER_ERRORS = (errors.UserError, FileNotFoundError, ValueError, FloatingPointError)


def _verbose():
  return flags.FLAGS['verbosity'].value >= 1


def main(argv):
  try:
    code = dispatch(argv)
  except USER_ERRORS as e:
    if _verbose():
      traceback.print_exc()
    print(f'error: {e}', file=sys.stderr)
    code = USAGE_EXIT
  except Exception:  # pylint: disable=broad-except
    if _PROCESSES[0] == 1:
      raise
    traceback.print_exc()
    code = BUG_EXIT
  if code and _PROCESSES[0] > 1:
    # A failed multi-process run cannot shut down cleanly: JAX's exit handlers
    # would wait for peers that may be dead. Leave now; checkpoints on disk are whole.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  return code


def flag_error(error):
  """One line for a flag absl could not parse, with the nearest flag name."""
  text = str(error).strip().splitlines()[0]
  unknown = getattr(error, 'flagname', None)
  if isinstance(error, flags.UnrecognizedFlagError) and unknown:
    if unknown.startswith('config.') and _config_argument() is None:
      return f'--{unknown} overrides a config field, but no --config is given.'
    if unknown.startswith('config.'):
      return (f'--{unknown}: no such field in --config={_config_argument()} '
              '(python run.py --config=... --helpfull lists the fields).')
    near = difflib.get_close_matches(unknown, list(flags.FLAGS), n=1)
    return f'Unknown flag --{unknown}' + (f'; did you mean --{near[0]}?' if near else '.')
  return text.replace('flag --', '--', 1)


def parse_flags(argv):
  """absl's parsing; a flag it cannot parse is one line and exit 2."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:  # The last two: unknown config fields.
    config = (isinstance(e, (AttributeError, KeyError))
              or str(e).startswith(('flag --config=', 'flag --config ')))
    print(f'error: {config_error(e) if config else flag_error(e)}', file=sys.stderr)
    sys.exit(USAGE_EXIT)


# Log lines that tell a user nothing (a library's inner steps, read-only notes
# about a workdir that is only read): kept out of the run's log.
_QUIET = (
    ('/orbax/', std_logging.WARNING, ('Given directory is read only',
                                      'CheckpointManagerOptions.read_only=True')),
    ('/tensorflow_datasets/', std_logging.WARNING, ('has no dataset_info.json',
                                                    'Using custom data configuration')),
    ('/jax/_src/xla_bridge.py', std_logging.WARNING, ()),
)


def _keep(record):
  for where, level, drop in _QUIET:
    if where in record.pathname:
      message = str(record.msg)
      return record.levelno >= level and not any(m in message for m in drop)
  return True


def _quiet_library_logs():
  logging.get_absl_handler().addFilter(_keep)


if __name__ == '__main__':
  # TensorFlow only feeds data here: its C++ start-up notes are noise in a run's log.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  logging.set_verbosity(logging.INFO)
  _quiet_library_logs()
  app.run(main, flags_parser=parse_flags)
