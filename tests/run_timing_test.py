"""What a training run says about its time: the phase table (results.json,
metrics.jsonl, the end of the log), TensorBoard's event files (read back with
TensorBoard's own reader, equal to metrics.jsonl) and the profiler's traces.

One tiny run of run.py serves every test here: the session's shared user run
(tests/trained_workdir.py: a folder of rated photos, 1 + 1 epochs of 3 steps
at 32x32, --config.profile_steps=2), which transfer_test reads too.
"""

import glob
import json
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from aesthetix.runtime import phases
from aesthetix.runtime import workdir as workdir_lib
from tests import tiny
from tests import trained_workdir

PROFILE_STEPS = trained_workdir.PROFILE_STEPS
# 24 training photos of the user run's 30 (the default split), in batches of 8.
STEPS_PER_EPOCH = 3
# Every phase this run goes through (it builds its dataset, computes its caches).
EXPECTED_PHASES = (phases.STARTUP, phases.DATASET, phases.MODEL, phases.CACHE_PASS,
                   phases.TRACING, phases.XLA_COMPILE, phases.TRAIN_STEPS, phases.INPUT_WAIT,
                   phases.VALIDATION, phases.CHECKPOINTS, phases.TEST, phases.REPORT,
                   phases.OTHER)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """(workdir, run.py's stderr) of the shared user run."""
  _, workdir, stderr = trained_workdir.user_run(tmp_path_factory)
  return workdir, stderr


def test_the_run_has_the_steps_per_epoch_counted_on_below(run):
  workdir, _ = run
  with open(workdir_lib.split_list_path(workdir, 'train')) as f:
    assert -(-len(f.read().split()) // tiny.BATCH_SIZE) == STEPS_PER_EPOCH


def records(workdir):
  return workdir_lib.read_jsonl(workdir_lib.metrics_path(workdir))


def test_the_phase_table_adds_up_to_the_wall_time(run):
  workdir, _ = run
  timing = json.load(open(workdir_lib.results_path(workdir)))['timing']
  assert tuple(timing['phases']) == EXPECTED_PHASES
  assert sum(timing['phases'].values()) == pytest.approx(timing['wall_seconds'], abs=0.02)
  for phase in (phases.STARTUP, phases.DATASET, phases.CACHE_PASS, phases.TRAIN_STEPS,
                phases.VALIDATION, phases.TEST, phases.TRACING, phases.XLA_COMPILE):
    assert timing['phases'][phase] > 0, phase
  cache = timing['compilation_cache']
  assert cache['programs'] == cache['from_cache'] + cache['compiled'] > 0
  assert cache['directory'] == os.path.join(os.environ['AESTHETIX_CACHE_DIR'], 'jax')
  assert cache['entries'] > 0 and cache['bytes'] > 0
  # metrics.jsonl keeps the same record, so that --mode=report rebuilds it.
  assert [r['run_timing'] for r in records(workdir) if 'run_timing' in r] == [timing]


def test_the_log_ends_with_the_table(run):
  workdir, stderr = run
  timing = json.load(open(workdir_lib.results_path(workdir)))['timing']
  tail = stderr[stderr.rindex('Where the time went'):]
  for phase, seconds in timing['phases'].items():
    assert f'| {phase} | {seconds:.1f} |' in tail
  assert f"| **wall time** | **{timing['wall_seconds']:.1f}** | 100% |" in tail
  cache = timing['compilation_cache']
  assert (f"{cache['programs']} programs: {cache['from_cache']} read from the persistent "
          f"cache, {cache['compiled']} compiled") in tail


def scalars(workdir):
  acc = event_accumulator.EventAccumulator(workdir_lib.tensorboard_dir(workdir),
                                           size_guidance={event_accumulator.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


def f32(x):
  return float(np.float32(x))


def test_tensorboard_holds_what_metrics_jsonl_holds(run):
  workdir, _ = run
  got = scalars(workdir)
  epochs = [r for r in records(workdir) if 'validation' in r]
  assert [r['stage'] for r in epochs] == ['stage1', 'stage2']
  for i, r in enumerate(epochs):  # Epoch i ends at step 3 (i + 1).
    step = STEPS_PER_EPOCH * (i + 1)
    for key in ('train_loss', 'images_per_second', 'epoch_seconds', 'input_wait_seconds'):
      assert got[f'epoch/{key}'][i] == (step, f32(r[key])), key
    for name, m in r['validation'].items():
      assert got[f'validation/rho/{name}'][i] == (step, f32(m['spearman'])), name
  tests = [r['test'] for r in records(workdir) if 'test' in r]
  for i, test in enumerate(tests):
    for name, m in test.items():
      want = f32(m['spearman'])
      value = got[f'test/rho/{name}'][i]
      assert value[0] == STEPS_PER_EPOCH * (i + 1)
      assert value[1] == want or (np.isnan(want) and np.isnan(value[1])), name
  timing = json.load(open(workdir_lib.results_path(workdir)))['timing']
  for phase, seconds in timing['phases'].items():
    assert got[f'timing/{phase}'] == [(2 * STEPS_PER_EPOCH, pytest.approx(seconds, abs=1e-3))]


def test_tensorboard_has_the_loss_and_the_learning_rate_of_each_step_logged(run):
  workdir, _ = run
  got = scalars(workdir)
  config = workdir_lib.trained_config(workdir)
  # log_every_steps (50) exceeds an epoch: one point per epoch, at its last step.
  assert config.log_every_steps > STEPS_PER_EPOCH
  assert [s for s, _ in got['train/loss']] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
  epochs = [r for r in records(workdir) if 'validation' in r]
  # An epoch's mean loss is its only logged interval's.
  assert [v for _, v in got['train/loss']] == pytest.approx(
      [r['train_loss'] for r in epochs], rel=1e-6)
  s2 = config.stage2
  # Stage 1: constant; stage 2: Keras' ExponentialDecay at its third update (index 2).
  want = [config.stage1.learning_rate,
          s2.learning_rate * s2.decay_rate ** ((STEPS_PER_EPOCH - 1) / s2.decay_steps)]
  assert [v for _, v in got['train/learning_rate']] == [f32(w) for w in want]


def test_profile_steps_leave_a_trace_per_stage(run):
  workdir, stderr = run
  traces = glob.glob(os.path.join(workdir_lib.tensorboard_dir(workdir), 'plugins', 'profile',
                                  '*', '*.xplane.pb'))
  assert len(traces) == 2 and all(os.path.getsize(t) > 0 for t in traces)
  assert stderr.count(f'Traced {PROFILE_STEPS} training steps into') == 2
