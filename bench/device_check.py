"""The measurements of bench/device_check.sh: the GPU table, in one short run.

  python -m bench.device_check --out=DIR [--rehearsal]

Steps, each timed and recorded (a result, or 'skipped' and why):
  devices   jax.devices(), the backend and the device kind;
  rates     backbone forward and stage-2 train step, images/s, float32 and
            bfloat16, the step on images and on the block4_conv1 prefix
            (random weights and pixels: speed does not depend on them);
  schedule  the paper's whole schedule (5 + 3 epochs, batch 64, 224x224) on a
            synthetic dataset sized to fit the time, with the prefix cache on
            and off: stage and whole times, and the share of each epoch the
            host spent waiting for its batches (input_wait_seconds);
  keras     `bench.keras_vs_aesthetix --paper --keras_gpu`, when TensorFlow
            sees a GPU and the time left allows.
It prints one Markdown table ready for BENCHMARKS.md and writes it, with the
same numbers as JSON, to DIR. --rehearsal runs every step at tiny sizes on
the CPU (what CI checks).
"""

import dataclasses
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

from absl import app
from absl import flags
import jax
import numpy as np

from bench import rates

RESULTS_JSON = 'device_check.json'
RESULTS_MD = 'device_check.md'


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one check measures on; the rehearsal's are tiny."""
  image_size: int
  batch_size: int
  timed_steps: int
  # The synthetic dataset of the schedule: examples per split and stored pixels.
  split_sizes: dict
  stored_size: int
  # Epochs of the schedule's stages (the paper's 5 and 3 on the GPU).
  epochs: tuple
  # Seconds of the check's budget after which the Keras comparison is skipped.
  keras_if_started_before_s: float


GPU_SIZES = Sizes(image_size=224, batch_size=64, timed_steps=20,
                  split_sizes={'train': 768, 'validation': 128, 'test': 128},
                  stored_size=160, epochs=(5, 3), keras_if_started_before_s=240)
# The rehearsal checks that every step runs, not its numbers: the least work
# that still runs each (32 px passes every VGG16 block; 2 stage-2 epochs give
# the steady rate an epoch after the first; 2 batches of 4 an epoch).
REHEARSAL_SIZES = Sizes(image_size=32, batch_size=4, timed_steps=2,
                        split_sizes={'train': 8, 'validation': 4, 'test': 4},
                        stored_size=32, epochs=(1, 2), keras_if_started_before_s=0)
DTYPES = ('float32', 'bfloat16')


def check_config(sizes, dtype='float32'):
  """The demo config at the check's sizes: the paper's schedule and head."""
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  config.dataset.image_size = sizes.image_size
  config.model.backbone_weights = 'random'
  config.model.dtype = dtype
  config.stage1.batch_size = config.stage2.batch_size = sizes.batch_size
  config.eval_batch_size = sizes.batch_size
  return config


def random_batch(plan, sizes, seed=0):
  """A global batch of random pixels and targets (speed does not depend on them)."""
  rng = np.random.default_rng(seed)
  s = sizes.image_size
  n_out = len(plan.output_names)
  return {'image': rng.integers(0, 256, (sizes.batch_size, s, s, 3), np.uint8),
          'target': rng.random((sizes.batch_size, n_out), np.float32),
          'mask': np.ones(sizes.batch_size, bool),
          'index': np.arange(sizes.batch_size, dtype=np.int32)}


def measure_rates(sizes):
  """{dtype: {forward, step_images, step_prefix (images/s), flops...}}."""
  from aesthetix.model import multitask as model_lib  # pylint: disable=g-import-not-at-top
  from aesthetix.training import plan as plan_lib  # pylint: disable=g-import-not-at-top
  from aesthetix.training import steps  # pylint: disable=g-import-not-at-top
  out = {}
  for dtype in DTYPES:
    plan = plan_lib.resolve(check_config(sizes, dtype))
    model = model_lib.build_model(plan.model)
    state = steps.initial_state(plan, model, jax.random.PRNGKey(0))
    batch = random_batch(plan, sizes)
    forward, forward_flops = rates.forward_rate(model, state['params'], batch['image'],
                                                sizes.timed_steps)
    step, step_flops = rates.stage2_step_rate(plan, model, state, batch, sizes.timed_steps)
    prefix, prefix_flops = rates.stage2_step_rate(plan, model, state, batch,
                                                  sizes.timed_steps, from_prefix=True)
    out[dtype] = dict(forward_images_per_s=forward, forward_gflops_per_image=forward_flops / 1e9,
                      step_images_per_s=step, step_gflops_per_image=step_flops / 1e9,
                      step_prefix_images_per_s=prefix,
                      step_prefix_gflops_per_image=prefix_flops / 1e9)
  return out


def run_schedule(sizes, work, prefix_cache):
  """The paper's schedule on the synthetic set; its times and input waits."""
  from aesthetix.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from aesthetix.results import experiment  # pylint: disable=g-import-not-at-top
  from aesthetix.runtime import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = check_config(sizes)
  config.dataset.data_dir = os.path.join(work, 'data')
  config.dataset.builder_kwargs = {'split_sizes': dict(sizes.split_sizes),
                                   'image_size': sizes.stored_size}
  config.prefix_cache = prefix_cache
  config.stage1.epochs, config.stage2.epochs = sizes.epochs
  input_pipeline.clear_cache()
  workdir = os.path.join(work, f'schedule_prefix_{"on" if prefix_cache else "off"}')
  start = time.perf_counter()
  experiment.run(config, workdir)
  whole = time.perf_counter() - start
  records = workdir_lib.read_jsonl(os.path.join(workdir, workdir_lib.METRICS_FILE))
  out = dict(whole_seconds=whole)
  for stage in ('stage1', 'stage2'):
    timing = [r['timing'] for r in records if r.get('stage') == stage and 'timing' in r]
    epochs = [r for r in records if r.get('stage') == stage and 'epoch' in r]
    seconds = sum(r['epoch_seconds'] for r in epochs)
    waited = sum(r['input_wait_seconds'] for r in epochs)
    out[stage] = dict(seconds=timing[-1]['seconds'] if timing else None,
                      cache_seconds=timing[-1]['feature_cache_seconds'] if timing else None,
                      epoch_seconds=seconds, input_wait_share=waited / seconds if seconds else None,
                      steady_images_per_s=_steady(epochs))
  return out


def _steady(epochs):
  rates_ = [r['images_per_second'] for r in epochs[1:]]
  return len(rates_) / sum(1 / r for r in rates_) if rates_ else None


def run_keras(out_dir):
  """The Keras side by side at the paper's sizes, as a subprocess (TF on the GPU)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.config.list_physical_devices('GPU'):
    raise Skipped('TensorFlow sees no GPU (tensorflow-cpu is installed: Keras would run '
                  'on the CPU, which says nothing about the GPU)')
  path = os.path.join(out_dir, 'keras_vs_aesthetix.md')
  subprocess.run([sys.executable, '-m', 'bench.keras_vs_aesthetix', '--paper', '--keras_gpu',
                  f'--output={path}'], check=True, timeout=240)
  with open(path) as f:
    return dict(table=f.read())


class Skipped(Exception):
  """A step that cannot run here; the message says why."""


def machine():
  d = jax.devices()[0]
  return dict(devices=[str(x) for x in jax.devices()], backend=jax.default_backend(),
              device_kind=d.device_kind, device_count=jax.device_count(),
              cpu=rates.cpu_model(), cpu_count=os.cpu_count(), jax=jax.__version__,
              python=platform.python_version())


def step(results, name, fn, *args):
  """Runs one step, recording its result (or why it was skipped or failed) and time."""
  start = time.perf_counter()
  try:
    results[name] = dict(result=fn(*args))
  except Skipped as e:
    results[name] = dict(skipped=str(e))
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    results[name] = dict(failed=f'{type(e).__name__}: {e}'.splitlines()[0][:300])
  results[name]['seconds'] = time.perf_counter() - start
  print(f'device_check: {name}: {"ok" if "result" in results[name] else next(iter(results[name].values()))} '
        f'({results[name]["seconds"]:.0f} s)', flush=True)


def _n(x, digits=0):
  if x is None:
    return 'n/a'
  return f'{x:,.{digits}f}'


def markdown(results, sizes, rehearsal):
  m = results['devices']['result']
  rows = [f'GPU check on {m["device_count"]} x {m["device_kind"]} ({m["backend"]}), '
          f'{m["cpu"]} host with {m["cpu_count"]} cores; JAX {m["jax"]}'
          + ('. CPU REHEARSAL at tiny sizes: not GPU numbers.' if rehearsal else '.'), '',
          '| Measure | float32 | bfloat16 |', '|---|---:|---:|']
  r = results.get('rates', {}).get('result')
  if r:
    for key, label in (('forward_images_per_s', f'Backbone forward, images/s ({sizes.image_size}px, batch {sizes.batch_size})'),
                       ('step_images_per_s', 'Stage-2 step on images, images/s'),
                       ('step_prefix_images_per_s', 'Stage-2 step on the block4_conv1 prefix, images/s')):
      rows.append(f'| {label} | {_n(r["float32"][key])} | {_n(r["bfloat16"][key])} |')
  else:
    rows.append(f'| Rates | {_why(results.get("rates"))} | |')
  rows += ['', f'Schedule ({sizes.epochs[0]} + {sizes.epochs[1]} epochs, batch {sizes.batch_size}, {sizes.image_size}px) on '
           f'{sizes.split_sizes["train"]} synthetic training images stored at '
           f'{sizes.stored_size}px, float32:', '',
           '| | prefix cache on | prefix cache off |', '|---|---:|---:|']
  on, off = (results.get(f'schedule_prefix_{k}', {}).get('result') for k in ('on', 'off'))
  if on and off:
    for label, get in (('Whole schedule, s', lambda x: _n(x['whole_seconds'], 1)),
                       ('Stage 1 (cache pass included), s', lambda x: _n(x['stage1']['seconds'], 1)),
                       ('Stage 2, s', lambda x: _n(x['stage2']['seconds'], 1)),
                       ('Stage 2 steady images/s', lambda x: _n(x['stage2']['steady_images_per_s'])),
                       ('Stage 2: share of epoch time waiting for input',
                        lambda x: _n(100 * (x['stage2']['input_wait_share'] or 0), 1) + '%')):
      rows.append(f'| {label} | {get(on)} | {get(off)} |')
  else:
    rows.append(f'| Schedule | {_why(results.get("schedule_prefix_on"))} | '
                f'{_why(results.get("schedule_prefix_off"))} |')
  keras = results.get('keras', {})
  rows += ['', 'Keras side by side: ' + (keras['result']['table'] if 'result' in keras
                                         else _why(keras))]
  return '\n'.join(rows) + '\n'


def _why(record):
  if not record:
    return 'not run'
  return record.get('skipped') or record.get('failed') or 'n/a'


_OUT = flags.DEFINE_string('out', None, 'Folder for device_check.json and .md.')
_WORK = flags.DEFINE_string('work', None, 'Folder for data and runs (default: a temporary one).')
_REHEARSAL = flags.DEFINE_bool('rehearsal', False, 'Tiny sizes on the CPU.')
_SKIP = flags.DEFINE_list('skip', [], 'Steps to skip: rates, schedule, keras.')


def main(argv):
  del argv
  began = time.perf_counter()
  sizes = REHEARSAL_SIZES if _REHEARSAL.value else GPU_SIZES
  work = _WORK.value or tempfile.mkdtemp(prefix='device_check_')
  os.makedirs(_OUT.value, exist_ok=True)
  results = dict(sizes=dataclasses.asdict(sizes), rehearsal=_REHEARSAL.value)
  step(results, 'devices', machine)
  no_data = _missing_data_packages()
  step(results, 'rates', _unless('rates', measure_rates), sizes)
  for on in (True, False):
    run = _unless('schedule', run_schedule, no_data)
    step(results, f'schedule_prefix_{"on" if on else "off"}', run, sizes, work, on)
  elapsed = time.perf_counter() - began
  too_late = (f'{elapsed:.0f} s spent, over the {sizes.keras_if_started_before_s:.0f} s '
              'after which it would not fit the budget' if elapsed >
              sizes.keras_if_started_before_s else None)
  step(results, 'keras', _unless('keras', run_keras, 'rehearsal' if _REHEARSAL.value
                                 else no_data or too_late), _OUT.value)
  results['seconds'] = time.perf_counter() - began
  table = markdown(results, sizes, _REHEARSAL.value)
  from aesthetix.runtime import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  with open(os.path.join(_OUT.value, RESULTS_JSON), 'w') as f:
    f.write(workdir_lib.dumps(results, indent=2, default=str))  # Strict JSON: null, not NaN.
  with open(os.path.join(_OUT.value, RESULTS_MD), 'w') as f:
    f.write(table)
  print(table)
  failed = [k for k, v in results.items() if isinstance(v, dict) and 'failed' in v]
  return 1 if failed else 0


def _missing_data_packages():
  """Why the steps that read data cannot run here, or None."""
  if importlib.util.find_spec('tensorflow_datasets') is None:
    return 'TensorFlow Datasets is not installed (it reads the data): install requirements-cuda.txt'
  return None


def _unless(name, fn, reason=None):
  """`fn`, or a step that is skipped for `reason` or for --skip=name."""
  reason = f'--skip={name}' if name in _SKIP.value else reason
  if reason is None:
    return fn

  def skip(*unused):
    raise Skipped(reason)

  return skip


if __name__ == '__main__':
  flags.mark_flag_as_required('out')
  app.run(main)
