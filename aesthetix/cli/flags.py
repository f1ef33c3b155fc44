"""The command line's flags (absl), each defined once, and what each one takes.

Defining them is all this module does at import: run.py's quick checks run
before JAX or TensorFlow load.
"""

from absl import flags
from ml_collections import config_flags

MODES = ('train', 'evaluate', 'audit', 'convert_weights', 'predict', 'gradcam', 'report',
         'reproduce', 'export')
FORMATS = ('saved_model', 'stablehlo', 'tflite')
QUANTIZATIONS = ('float16', 'dynamic_int8')

CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/aadb.py or configs/aadb.py:single_task.',
    lock_config=True)
flags.DEFINE_enum('mode', 'train', MODES, 'What to do.')
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.')
flags.DEFINE_string('keras_h5', None, 'convert_weights: Keras weights file.')
flags.DEFINE_string('out', None, 'convert_weights: output .msgpack file.')
flags.DEFINE_string(
    'eval_dataset', None, 'evaluate: another dataset to test on (cross-dataset, '
    'overall score only), e.g. eva for a model trained on aadb.')
flags.DEFINE_string(
    'images', None, 'predict, gradcam: an image file, a folder (searched '
    "recursively) or a quoted glob such as 'photos/**/*.jpg'.")
flags.DEFINE_string(
    'output', None, 'predict: the scores file, JSON when it ends in .json, else CSV '
    '(default: CSV on stdout); gradcam: the folder for the PNGs; export: the folder of '
    'the model.')
flags.DEFINE_string(
    'target', None, 'gradcam: the output to explain, e.g. Light (default: the overall score).')
flags.DEFINE_string(
    'layer', None, 'gradcam: the VGG16 layer of the maps, e.g. block4_conv3 '
    '(default: block5_conv3, the last convolutional layer).')
flags.DEFINE_integer(
    'batch_size', None, 'predict, gradcam: images per step (default: the config\'s '
    'eval_batch_size, rounded up to a multiple of the devices).')
flags.DEFINE_enum('format', None, FORMATS, 'export: saved_model (TF Serving), stablehlo '
                  '(JAX servers) or tflite (LiteRT).')
flags.DEFINE_enum('quantize', None, QUANTIZATIONS,
                  'export --format=tflite: store the weights in 16 or 8 bits.')
flags.DEFINE_bool('overwrite', False, 'export: replace an existing --output.')
flags.DEFINE_list('seeds', None, 'reproduce: the seeds, e.g. 0,1,2,3,4 (default: the '
                  "reproduction config's).")
flags.DEFINE_list(
    'datasets', None, 'reproduce: only the experiments of these datasets, e.g. aadb '
    '(default: all of the reproduction config); cross-dataset tests that need another '
    'are left out, as the log and PAPER.md say.')
flags.DEFINE_string('data_dir', None, 'evaluate: TFDS data_dir of the test data.')
flags.DEFINE_string('manual_dir', None, 'evaluate: manual dir of the test data.')
flags.DEFINE_string(
    'coordinator_address', None, 'Multi-process runs: HOST:PORT of process 0 (the '
    'same for every process). Without the three flags, a cluster that JAX detects '
    '(SLURM, Open MPI, Cloud TPU) starts one; otherwise the run is single-process.')
flags.DEFINE_integer('num_processes', None, 'Multi-process runs: how many processes in all.')
flags.DEFINE_integer('process_id', None,
                     'Multi-process runs: this process, 0 .. num_processes-1.')
flags.DEFINE_integer(
    'init_timeout', 300, 'Multi-process runs: seconds to wait for every process to join.')
flags.DEFINE_integer(
    'heartbeat_timeout', 30, 'Multi-process runs: seconds without a heartbeat after '
    'which a process counts as dead and the others stop.')

MULTI_PROCESS = ('coordinator_address', 'num_processes', 'process_id', 'init_timeout',
                 'heartbeat_timeout')
# What each flag takes, for the message of one that is missing.
VALUES = {
    'config': 'configs/aadb.py (or eva.py, demo.py)',
    'workdir': "W (the run's folder)",
    'images': "PHOTOS (a file, a folder or a quoted glob 'photos/*.jpg')",
    'output': 'DIR (a folder: the figures, or the exported model)',
    'keras_h5': 'IN.h5 (a Keras weights file)',
    'format': 'saved_model (or stablehlo, tflite)',
    'out': 'OUT.msgpack',
}


def value(name):
  return flags.FLAGS[name].value


def given(name):
  return flags.FLAGS[name].present


def config_overrides():
  """The --config.x.y flags given on the command line."""
  return [n for n in flags.FLAGS if n.startswith('config.') and given(n)]
