"""Every mode of run.py, each declared once: the flags it needs and reads, the
checks of its paths (made before JAX loads) and the function that runs it.

A mode's function returns the exit status; what it raises is mapped to one by
run.py (`errors.UserError`: 2, anything else: a bug, 1). The library is
imported inside the functions, so that a mistake on the command line is
reported before JAX or TensorFlow load.
"""

import dataclasses
import os
import sys
from typing import Callable

from aesthetix.cli import flags as cli_flags
from aesthetix.runtime import errors
from aesthetix.runtime import preflight
from aesthetix.runtime import workdir as workdir_lib

value = cli_flags.value
AUDIT_MISMATCH_EXIT = 3
MULTI_PROCESS = cli_flags.MULTI_PROCESS


@dataclasses.dataclass(frozen=True)
class Mode:
  """A mode of run.py.

  needs: flags it cannot run without; reads: flags it also uses (the others
  draw a warning); check: () -> [problem or None], the path checks; run:
  (config or None) -> exit status; config: whether --config is loaded for it;
  default_config: the config file (in the repository) it takes when no
  --config is given, or None; uses_workdir_config: it reads the workdir's
  config.json instead of --config.
  """
  name: str
  needs: tuple
  reads: tuple
  check: Callable
  run: Callable
  config: bool = False
  default_config: str = None
  uses_workdir_config: bool = False

  @property
  def ignored(self):
    """Flags of other modes that this one does not use."""
    return sorted(ALL_FLAGS - set(self.needs) - set(self.reads))


def _batch_size_problem():
  n = value('batch_size')
  return f'--batch_size={n} must be at least 1' if n is not None and n < 1 else None


def _images_problem():
  from aesthetix.data import image_files  # pylint: disable=g-import-not-at-top
  try:
    image_files.find_images(value('images'))
  except errors.UserError as e:
    return f'--images: {str(e).rstrip(".")}'
  return None


def start_devices(config=None):
  """Sets up the persistent compilation cache (off with
  --config.compilation_cache=False or AESTHETIX_COMPILATION_CACHE=0), then starts
  the processes of a multi-process run, if asked for; before any JAX work."""
  start_compilation_cache(config)
  from aesthetix.runtime import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize(value('coordinator_address'), value('num_processes'),
                      value('process_id'), timeout_s=value('init_timeout'),
                      heartbeat_timeout_s=value('heartbeat_timeout'))
  return parallel


def start_compilation_cache(config=None):
  """JAX's persistent compilation cache for this process (one set-up, every mode)."""
  from aesthetix.runtime import compilation_cache  # pylint: disable=g-import-not-at-top
  enabled = True if config is None else bool(config.get('compilation_cache', True))
  return compilation_cache.setup(enabled)


def log_compilations():
  """One log line: the programs this process compiled or read from the cache."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from aesthetix.runtime import compilation_cache  # pylint: disable=g-import-not-at-top
  logging.info(compilation_cache.summary_line(compilation_cache.summary({})))


# --------------------------------------------------------------------- train


def check_train():
  return [preflight.writable_problem(value('workdir'), 'folder'), _folder_problem()]


def _folder_problem():
  """Every problem of a user's folder of rated photos (its dataset.json, ratings
  and photos), read here in pure Python: found before JAX loads and before the
  workdir is made."""
  from aesthetix.data import spec as data_spec  # pylint: disable=g-import-not-at-top
  dataset = cli_flags.CONFIG.value.dataset
  return data_spec.folder_problem(dataset.name, dataset.get('manual_dir'),
                                  bool(dataset.get('skip_unreadable', False)))


def train(config):
  start_devices(config)
  from aesthetix.results import experiment  # pylint: disable=g-import-not-at-top
  from aesthetix.runtime import phases  # pylint: disable=g-import-not-at-top
  # The run's phase table counts from the process's start: imports and checks too.
  experiment.run(config, value('workdir'), since=phases.process_start())
  return 0


# ------------------------------------------------------------------ evaluate


def check_trained_workdir(need_checkpoint=True):
  return [preflight.trained_workdir_problem(value('workdir'), need_checkpoint)]


def evaluate(_):
  parallel = start_devices()
  from aesthetix.results import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from aesthetix.results import report  # pylint: disable=g-import-not-at-top
  result, path = evaluate_lib.evaluate_workdir(value('workdir'), value('eval_dataset'),
                                               value('data_dir'), value('manual_dir'))
  log_compilations()
  if parallel.is_main_process():
    print(f"Trained on {result['trained_on']}, tested on {result['evaluated_on']} "
          f"({result['split']} split):\n")
    print(report.metrics_table(result['metrics']))
    print(f'\nWritten to {path}')
  return 0


# --------------------------------------------------------------------- audit


def audit(config):
  from aesthetix.model import audit as audit_lib  # pylint: disable=g-import-not-at-top
  from aesthetix.training import plan as plan_lib  # pylint: disable=g-import-not-at-top
  plan = plan_lib.resolve(config, backend='cpu')  # The counts need no device.
  _, table, mismatches, summary = audit_lib.run_audit(plan.model, plan.data.image_size,
                                                      plan.table2, plan.table2_pan)
  print(f'Table 2 of Soydaner & Wagemans vs this model ({plan.data.name}, '
        f'tasks={plan.model.tasks}, output_layers={plan.model.output_layers})\n')
  print(table)
  print(f'\n{summary}')
  return AUDIT_MISMATCH_EXIT if mismatches else 0


# ----------------------------------------------------------- convert_weights


def check_convert_weights():
  return [None if os.path.isfile(value('keras_h5'))
          else f'--keras_h5={value("keras_h5")}: no such file',
          preflight.writable_problem(value('out'), 'file')]


def convert_weights(_):
  from aesthetix.model import keras_weights  # pylint: disable=g-import-not-at-top
  layers = keras_weights.convert(value('keras_h5'), value('out'))
  print(f'Wrote {len(layers)} layers from {value("keras_h5")} to {value("out")}.')
  return 0


# ------------------------------------------------------------------- predict


def check_predict():
  output = value('output')
  return check_trained_workdir() + [
      _images_problem(), _batch_size_problem(),
      preflight.writable_problem(output, 'file') if output not in (None, '-') else None]


def predict(_):
  from aesthetix.serving import predict as predict_lib  # pylint: disable=g-import-not-at-top
  output = value('output') or '-'
  parallel = start_devices()
  summary = predict_lib.predict_workdir(value('workdir'), value('images'), output,
                                        batch_size=value('batch_size'))
  log_compilations()
  if not parallel.is_main_process():
    return 0
  steady = summary['steady_images_per_second']
  print(f"Scored {summary['scored']} image(s) in {summary['seconds']:.1f} s: "
        f"{summary['images_per_second']:.1f} images/s in all, compilation included"
        + (f', {steady:.1f} images/s after the first batch' if steady else '')
        + f"; {summary['failed']} file(s) could not be read"
        + (f'. Written to {output}' if output != '-' else '') + '.', file=sys.stderr)
  return 0


# ------------------------------------------------------------------- gradcam


def check_gradcam():
  return check_trained_workdir() + [
      _images_problem(), _batch_size_problem(),
      preflight.writable_problem(value('output'), 'folder')]


def gradcam(_):
  from aesthetix.serving import gradcam as gradcam_lib  # pylint: disable=g-import-not-at-top
  parallel = start_devices()
  written, failed = gradcam_lib.gradcam_workdir(value('workdir'), value('images'),
                                                value('output'), value('target'),
                                                value('layer'), batch_size=value('batch_size'))
  log_compilations()
  for path, reason in failed.items():  # Each process names the files it could not read.
    print(f'skipped {path}: {reason}', file=sys.stderr)
  written = int(parallel.gather_processes(len(written)).sum())
  if parallel.is_main_process():
    print(f'Wrote {written} Grad-CAM figure(s) to {value("output")}.')
  return 0


# -------------------------------------------------------------------- report


def report(_):
  from aesthetix.results import figures  # pylint: disable=g-import-not-at-top
  from aesthetix.results import report as report_lib  # pylint: disable=g-import-not-at-top
  from aesthetix.training import plan as plan_lib  # pylint: disable=g-import-not-at-top
  workdir = value('workdir')
  plan = plan_lib.resolve(workdir_lib.trained_config(workdir), backend='cpu')
  paths = figures.write_all(plan, workdir)
  report_lib.write(plan, workdir)
  print(f'Wrote {workdir_lib.report_path(workdir)} with {len(paths)} figure(s).')
  return 0


# ----------------------------------------------------------------- reproduce


REPRODUCE_CONFIG = 'configs/reproduce.py'


def check_reproduce():
  return [preflight.writable_problem(value('workdir'), 'folder')]


def reproduce(config):
  from aesthetix.results import selection  # pylint: disable=g-import-not-at-top
  if 'experiments' not in config:
    raise errors.UserError(f'--config is not a reproduction config; use '
                           f'{REPRODUCE_CONFIG} or {REPRODUCE_CONFIG}:demo.')
  seeds = value('seeds')
  try:
    seeds = [int(s) for s in seeds] if seeds else None
  except ValueError as e:
    raise errors.UserError(f'--seeds={",".join(value("seeds"))}: give integers, e.g. '
                           '--seeds=0,1,2.') from e
  preflight.raise_if_any([selection.datasets_problem(config, value('datasets'))])
  from aesthetix.results import reproduce as reproduce_lib  # pylint: disable=g-import-not-at-top
  parallel = start_devices(config)
  summary = reproduce_lib.run(config, value('workdir'), seeds, value('datasets'))
  if parallel.is_main_process():
    print(f'Wrote {os.path.join(value("workdir"), workdir_lib.PAPER_MD)}: '
          f'{reproduce_lib.verdict_line(summary)}.')
  return 0


# -------------------------------------------------------------------- export


def check_export():
  output = value('output')
  exists = (f'--output={output} exists: give a new folder, or --overwrite to replace it'
            if os.path.exists(output) and not value('overwrite') else None)
  return [exists, preflight.writable_problem(output, 'folder')] + check_trained_workdir()


def export(_):
  from aesthetix.serving import export as export_lib  # pylint: disable=g-import-not-at-top
  start_compilation_cache()
  output = value('output')
  info = export_lib.export(value('workdir'), output, value('format'),
                           overwrite=value('overwrite'), quantize=value('quantize'))
  print(f'Wrote {output}: {info["format"]} of {", ".join(info["outputs"])} '
        f'({info["dataset"]} scale), input {info["input"]}; see '
        f'{os.path.join(output, export_lib.METADATA)}.')
  return 0


MODES = {m.name: m for m in (
    Mode('train', ('config', 'workdir'), MULTI_PROCESS, check_train, train, config=True),
    Mode('evaluate', ('workdir',), ('eval_dataset', 'data_dir', 'manual_dir') + MULTI_PROCESS,
         check_trained_workdir, evaluate, uses_workdir_config=True),
    Mode('audit', ('config',), (), lambda: [], audit, config=True),
    Mode('convert_weights', ('keras_h5', 'out'), (), check_convert_weights, convert_weights),
    Mode('predict', ('workdir', 'images'), ('output', 'batch_size') + MULTI_PROCESS,
         check_predict, predict, uses_workdir_config=True),
    Mode('gradcam', ('workdir', 'images', 'output'),
         ('target', 'layer', 'batch_size') + MULTI_PROCESS, check_gradcam, gradcam,
         uses_workdir_config=True),
    Mode('report', ('workdir',), (), lambda: check_trained_workdir(need_checkpoint=False),
         report, uses_workdir_config=True),
    Mode('reproduce', ('workdir',), ('config', 'seeds', 'datasets') + MULTI_PROCESS,
         check_reproduce, reproduce, config=True, default_config=REPRODUCE_CONFIG),
    Mode('export', ('workdir', 'output', 'format'), ('quantize', 'overwrite'), check_export,
         export, uses_workdir_config=True),
)}
ALL_FLAGS = {n for m in MODES.values() for n in m.needs + m.reads}
# The config each mode takes when the command line gives none (run.py inserts it).
DEFAULT_CONFIGS = {m.name: m.default_config for m in MODES.values() if m.default_config}
