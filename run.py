"""aesthetix: the one entry point.

  python run.py --config=configs/aadb.py --workdir=W              # train + evaluate
  python run.py --config=configs/aadb.py --mode=audit             # Table 2
  python run.py --mode=evaluate --workdir=W [--eval_dataset=eva]  # test split again
  python run.py --mode=convert_weights --keras_h5=IN.h5 --out=OUT.msgpack
  python run.py --mode=predict --workdir=W --images=PHOTOS --output=scores.csv  # or .json
  python run.py --mode=gradcam --workdir=W --images=PHOTOS --output=DIR [--target=Light]
  python run.py --mode=report --workdir=W                         # report.md + figures
"""

import logging as std_logging
import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from aesthetix import errors

MODES = ('train', 'evaluate', 'audit', 'convert_weights', 'predict', 'gradcam',
         'report')

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/aadb.py or configs/aadb.py:single_task.',
    lock_config=True)
_MODE = flags.DEFINE_enum('mode', 'train', MODES, 'What to do.')
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
    '(default: CSV on stdout); gradcam: the folder for the PNGs.')
_TARGET = flags.DEFINE_string(
    'target', None, 'gradcam: the output to explain, e.g. Light (default: the overall score).')
_LAYER = flags.DEFINE_string(
    'layer', None, 'gradcam: the VGG16 layer of the maps, e.g. block4_conv3 '
    '(default: block5_conv3, the last convolutional layer).')
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

# Processes of this run; more than one once `start_devices` joined them.
_PROCESSES = [1]


def _require(value, flag):
  if not value:
    raise app.UsageError(f'--mode={_MODE.value} needs --{flag}.')
  return value


def audit(config):
  from aesthetix import audit as audit_lib  # pylint: disable=g-import-not-at-top
  counts, table, mismatches = audit_lib.run_audit(config)
  print(f'Table 2 of Soydaner & Wagemans vs this model ({config.dataset.name}, '
        f'tasks={config.model.tasks}, output_layers={config.model.output_layers})\n')
  print(table)
  if mismatches:
    print(f'\nMISMATCH with the paper: {", ".join(mismatches)}')
    return 1
  print('\nAll counts match the paper.')
  return 0


def convert_weights():
  from aesthetix import keras_weights  # pylint: disable=g-import-not-at-top
  src, dst = _require(_KERAS_H5.value, 'keras_h5'), _require(_OUT.value, 'out')
  layers = keras_weights.convert(src, dst)
  print(f'Wrote {len(layers)} layers from {src} to {dst}.')
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
  workdir = _require(_WORKDIR.value, 'workdir')
  parallel = start_devices()
  result, path = train.evaluate_workdir(workdir, _EVAL_DATASET.value, _DATA_DIR.value,
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
  workdir, images = _require(_WORKDIR.value, 'workdir'), _require(_IMAGES.value, 'images')
  parallel = start_devices()
  summary = predict_lib.predict_workdir(workdir, images, output)
  if not parallel.is_main_process():
    return 0
  print(f"Scored {summary['scored']} image(s) in {summary['seconds']:.1f} s "
        f"({summary['images_per_second']:.1f} images/s, compilation included); "
        f"{summary['failed']} file(s) could not be read"
        + (f'. Written to {output}' if output != '-' else '') + '.', file=sys.stderr)
  return 0


def gradcam():
  from aesthetix import gradcam as gradcam_lib  # pylint: disable=g-import-not-at-top
  workdir, images = _require(_WORKDIR.value, 'workdir'), _require(_IMAGES.value, 'images')
  output = _require(_OUTPUT.value, 'output')
  parallel = start_devices()
  written, failed = gradcam_lib.gradcam_workdir(workdir, images, output, _TARGET.value,
                                                _LAYER.value)
  for path, reason in failed.items():  # Each process names the files it could not read.
    print(f'skipped {path}: {reason}', file=sys.stderr)
  written = int(parallel.gather_processes(len(written)).sum())
  if parallel.is_main_process():
    print(f'Wrote {written} Grad-CAM figure(s) to {output}.')
  return 0


def report():
  from aesthetix import checkpoint  # pylint: disable=g-import-not-at-top
  from aesthetix import figures  # pylint: disable=g-import-not-at-top
  from aesthetix import report as report_lib  # pylint: disable=g-import-not-at-top
  workdir = _require(_WORKDIR.value, 'workdir')
  config = checkpoint.trained_config(workdir)
  paths = figures.write_all(config, workdir)
  report_lib.write(config, workdir)
  print(f'Wrote {os.path.join(workdir, "report.md")} with {len(paths)} figure(s).')
  return 0


# Errors that describe the user's input (a missing file, a malformed label
# line, a foreign workdir, a diverged loss): a message, not a traceback.
USER_ERRORS = (errors.UserError, FileNotFoundError, ValueError, FloatingPointError)


def main(argv):
  try:
    code = dispatch(argv)
  except USER_ERRORS as e:
    logging.debug('Traceback:', exc_info=True)
    print(f'error: {e}\n(--verbosity=1 shows the traceback)', file=sys.stderr)
    code = 2
  except Exception:  # pylint: disable=broad-except
    if _PROCESSES[0] == 1:
      raise
    traceback.print_exc()
    code = 1
  if code and _PROCESSES[0] > 1:
    # A failed multi-process run cannot shut down cleanly: JAX's exit handlers
    # would wait for peers that may be dead. Leave now; checkpoints on disk are whole.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  return code


def dispatch(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  mode = _MODE.value
  if mode == 'convert_weights':
    return convert_weights()
  if mode == 'evaluate':
    return evaluate()
  if mode in ('predict', 'gradcam', 'report'):
    return {'predict': predict, 'gradcam': gradcam, 'report': report}[mode]()
  config = _CONFIG.value
  if config is None:
    raise app.UsageError(f'--mode={mode} needs --config (e.g. configs/aadb.py).')
  if mode == 'audit':
    return audit(config)
  workdir = _require(_WORKDIR.value, 'workdir')
  start_devices()
  from aesthetix import train  # pylint: disable=g-import-not-at-top
  return train.train_and_evaluate(config, workdir)


def _quiet_library_logs():
  """Keeps Orbax's per-file INFO lines out of the run log (warnings still show)."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING
      or '/orbax/' not in record.pathname)


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  _quiet_library_logs()
  app.run(main)
