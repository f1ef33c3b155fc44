"""Multi-process runs for real: run.py processes on 127.0.0.1 with gloo collectives.

Two processes with one CPU device each must train, checkpoint, resume and
evaluate exactly as one process with two devices: the same global batches
reach the same two device programs, and a sum over two devices is the same
in either order, so the results are bit-identical (not merely close).
Every launch is bounded in time and killed if it overruns.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aesthetix.data import datasets
from aesthetix.data import input_pipeline
from aesthetix.results import experiment
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import trained as trained_lib
from tests import tiny
from tests import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCESSES = 2
LAUNCH_TIMEOUT_S = 300  # A whole tiny run on a loaded 2-core machine takes under 1 min.
PEER_DEATH_LIMIT_S = 60  # The bound: a dead peer stops the others within a minute.
# One stage-1 epoch (its checkpoint, then stage 2's two: the kill lands
# between them): tests/tiny_config.py's other epoch adds nothing here.
STAGE1_EPOCHS = 1


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def child_env(**extra):
  """The test's environment, with one CPU device per process (conftest forces two)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2', **extra)
  env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                              if 'xla_force_host_platform_device_count' not in f)
  return env


def run_py_args(data_dir, workdir, *flags):
  return [sys.executable, 'run.py', '--config=tests/tiny_config.py',
          f'--config.dataset.data_dir={data_dir}', f'--config.stage1.epochs={STAGE1_EPOCHS}',
          f'--workdir={workdir}', *flags]


def launch(args, port, count=PROCESSES, env=None):
  """Starts `count` processes of `args` joined at 127.0.0.1:port; returns the Popens."""
  return [subprocess.Popen(
      args + [f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={count}',
              f'--process_id={i}'],
      cwd=REPO, env=env or child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(count)]


def finish(procs, timeout=LAUNCH_TIMEOUT_S):
  """(return codes, outputs) once all exit; kills them all past `timeout`."""
  deadline = time.time() + timeout
  outputs = []
  for p in procs:
    try:
      out, _ = p.communicate(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail(f'run.py did not finish within {timeout} s')
    outputs.append(out)
  return [p.returncode for p in procs], outputs


def final_params(workdir):
  return jax.tree_util.tree_leaves(trained_lib.load_trained(workdir)[2])


def assert_same_params(a, b):
  for x, y in zip(final_params(a), final_params(b)):
    np.testing.assert_array_equal(x, y)


def stage2_predictions(workdir):
  with np.load(os.path.join(workdir, 'predictions', 'stage2_test.npz'),
               allow_pickle=True) as f:
    return {k: f[k] for k in f.files}


def config_for(data_dir):
  """The config that run_py_args' processes run."""
  config = tiny_config.get_config()
  config.dataset.data_dir = str(data_dir)
  config.stage1.epochs = STAGE1_EPOCHS
  return config


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """Built once, before the processes start (a multi-process run needs it built)."""
  path = tmp_path_factory.mktemp('mp_data')
  datasets.builder(tiny.plan(config_for(path)).data)
  return path


@pytest.fixture(scope='module')
def two_processes(data_dir, tmp_path_factory):
  """(workdir, outputs) of an uninterrupted run on two processes of one device."""
  workdir = tmp_path_factory.mktemp('mp_two') / 'run'
  codes, outputs = finish(launch(run_py_args(data_dir, workdir), free_port()))
  assert codes == [0] * PROCESSES, outputs
  return str(workdir), outputs


@pytest.fixture(scope='module')
def one_process(data_dir, tmp_path_factory):
  """The same config on this process's two devices."""
  workdir = str(tmp_path_factory.mktemp('mp_one') / 'run')
  assert jax.process_count() == 1 and jax.local_device_count() == 2
  experiment.run(config_for(data_dir), workdir)
  return workdir


def test_two_processes_train_what_one_process_with_two_devices_trains(
    two_processes, one_process, data_dir):
  workdir, outputs = two_processes
  assert 'process 0 of 2, 1 local device(s), 2 global device(s)' in outputs[0]
  assert '[process 1/2]' in outputs[1]
  # One writer: the same files as the single-process run, each written once.
  assert sorted(os.listdir(workdir)) == sorted(os.listdir(one_process))
  with open(os.path.join(workdir, workdir_lib.METRICS_FILE)) as f, \
       open(os.path.join(one_process, workdir_lib.METRICS_FILE)) as g:
    assert len(f.readlines()) == len(g.readlines())
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == sorted(
      os.listdir(os.path.join(one_process, 'checkpoints')))
  assert outputs[0].count('| score |') == 1 and '| score |' not in outputs[1]
  cache = os.listdir(os.path.join(workdir, 'feature_cache'))
  assert {n.rsplit('-', 1)[1] for n in cache} == {'0of2.npy', '1of2.npy', '0of2.npy.json',
                                                   '1of2.npy.json'}

  assert_same_params(workdir, one_process)
  two, one = stage2_predictions(workdir), stage2_predictions(one_process)
  np.testing.assert_array_equal(two['pred'], one['pred'])
  # 7 test examples over 2 processes (4 + 3): each id once, in the split's order.
  config = config_for(data_dir)
  assert two['ids'].tolist() == input_pipeline.split_ids(tiny.plan(config).data, 'test')
  assert len(two['ids']) == tiny_config.SPLIT_SIZES['test']
  # The training photos' predictions, gathered from both processes, and their quantiles.
  assert (workdir_lib.read_score_quantiles(workdir) == workdir_lib.read_score_quantiles(
      one_process) and workdir_lib.read_score_quantiles(workdir)['examples']
          == tiny_config.SPLIT_SIZES['train'])


def test_a_killed_process_stops_the_other_and_both_resume_to_the_same_params(
    two_processes, data_dir, tmp_path):
  workdir = tmp_path / 'killed'
  procs = launch(run_py_args(data_dir, workdir), free_port())
  first_stage2 = os.path.join(workdir, 'checkpoints', str(STAGE1_EPOCHS + 1))
  deadline = time.time() + LAUNCH_TIMEOUT_S
  while not os.path.isdir(first_stage2):  # Stage 2's first epoch is saved.
    assert time.time() < deadline and all(p.poll() is None for p in procs)
    time.sleep(0.02)
  procs[1].send_signal(signal.SIGKILL)
  killed = time.time()
  codes, outputs = finish(procs, timeout=PEER_DEATH_LIMIT_S + 30)
  assert codes[1] == -signal.SIGKILL
  assert codes[0] != 0 and time.time() - killed < PEER_DEATH_LIMIT_S, outputs[0][-3000:]

  codes, outputs = finish(launch(run_py_args(data_dir, workdir), free_port()))
  assert codes == [0] * PROCESSES, outputs
  assert 'Resuming from checkpoint' in outputs[0]
  assert_same_params(str(workdir), two_processes[0])


def test_evaluate_on_two_processes_gives_the_single_process_numbers(two_processes,
                                                                    tmp_path):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(two_processes[0], workdir)
  codes, outputs = finish(launch([sys.executable, 'run.py', '--mode=evaluate',
                                  f'--workdir={workdir}'], free_port()))
  assert codes == [0] * PROCESSES, outputs
  with open(os.path.join(workdir, 'evaluation_synthetic_aesthetics_test.json')) as f:
    evaluated = json.load(f)['metrics']
  with open(os.path.join(workdir, 'results.json')) as f:
    assert evaluated == json.load(f)['stages']['stage2']
  assert 'Trained on synthetic_aesthetics' in outputs[0] and 'Trained on' not in outputs[1]


@pytest.mark.parametrize('flags, message', [
    (['--num_processes=2', '--process_id=1', '--init_timeout=3',
      '--coordinator_address=127.0.0.1:{port}'], 'nothing answers at 127.0.0.1'),
    (['--process_id=0', '--coordinator_address=127.0.0.1:{port}'],
     'needs --num_processes as well'),
    ([], 'needs --num_processes, --process_id as well (JAX_COORDINATOR_ADDRESS is set)'),
])
def test_multi_process_asked_for_but_not_startable_exits_2_writing_nothing(
    data_dir, tmp_path, flags, message):
  port = free_port()
  workdir = tmp_path / 'never'
  env = child_env(**({} if flags else {'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}'}))
  result = subprocess.run(run_py_args(data_dir, workdir, *(f.format(port=port) for f in flags)),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr
  assert not workdir.exists()
