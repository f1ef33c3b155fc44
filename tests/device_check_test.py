"""The GPU check's CPU rehearsal: the script as a GPU run would take it, at tiny sizes.

A GPU machine is lent rarely and for minutes, so the script must be known to
work before one is: this runs every step of bench/device_check.sh on the CPU,
in a fresh venv that the script installs as its GPU path installs its own
(requirements.txt instead of requirements-cuda.txt), so that a package the
check runs but does not install fails here, not on the GPU. The install needs
the package index, as CI's own install does just before.
"""

import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A backstop above the script's own limits together (install 900 s, tests
# 120 s, measuring 360 s), so that a slow run ends with the script's one line.
LIMIT_S = 1500
STEPS = ('devices', 'rates', 'schedule_prefix_on', 'schedule_prefix_off', 'keras')
# A skipped step raises before doing anything: far under this.
SKIPPED_STEP_S = 1.0
# A step's line as it ends (after a progress bar's last '\r' on the same line).
STEP_LINE = re.compile(r'device_check: (\w+): [^\r\n]* \((\d+) s\)$', re.MULTILINE)


def run_fresh_venv_rehearsal(tmp_path):
  """(the finished script, its wall time in seconds, its venv's folder)."""
  work = tmp_path / 'work'
  env = dict(os.environ, DEVICE_CHECK_CPU='1', DEVICE_CHECK_FRESH_VENV='1',
             OUT=str(tmp_path / 'out'), PYTHON=sys.executable, DEVICE_CHECK_WORK=str(work))
  env.pop('XLA_FLAGS', None)  # As a user starts it: one CPU device.
  env.pop('PYTHONPATH', None)  # Nothing of this venv's may reach the fresh one.
  start = time.monotonic()
  result = subprocess.run(['bash', 'bench/device_check.sh'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=LIMIT_S)
  return result, time.monotonic() - start, work / 'venv'


def check_step_seconds(results, stdout, wall_s):
  """Each step's seconds against clocks that are not its own."""
  steps = {k: v for k, v in results.items() if isinstance(v, dict) and 'seconds' in v}
  assert sorted(steps) == sorted(STEPS)
  # The steps run one after another inside main's timed span, which runs
  # inside the script, timed here.
  assert 0 < sum(s['seconds'] for s in steps.values()) <= results['seconds'] <= wall_s
  for on in ('on', 'off'):  # A schedule's own clock runs inside its step's.
    assert 0 < steps[f'schedule_prefix_{on}']['result']['whole_seconds'] <= (
        steps[f'schedule_prefix_{on}']['seconds'])
  assert 0 <= steps['keras']['seconds'] < SKIPPED_STEP_S
  printed = dict(STEP_LINE.findall(stdout))  # The log line each step printed as it ended.
  assert {name: int(printed[name]) for name in STEPS} == {
      name: round(steps[name]['seconds']) for name in STEPS}


def test_the_rehearsal_in_a_fresh_venv_runs_every_step_and_writes_the_table(tmp_path):
  result, wall_s, venv = run_fresh_venv_rehearsal(tmp_path)
  out = tmp_path / 'out'
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  # Made by the script, isolated from the test's venv, and the one JAX ran in.
  assert 'include-system-site-packages = false' in (venv / 'pyvenv.cfg').read_text()
  assert f'jax 0.10.2 in {venv / "bin" / "python"} ' in result.stdout
  assert 'device_check: tests passed: 1 passed' in result.stdout
  results = json.loads((out / 'device_check.json').read_text())
  assert results['rehearsal'] is True
  assert results['devices']['result']['backend'] == 'cpu'
  for dtype in ('float32', 'bfloat16'):
    rates = results['rates']['result'][dtype]
    assert rates['forward_images_per_s'] > 0 and rates['step_images_per_s'] > 0
    assert rates['step_prefix_images_per_s'] > 0
    # The prefix skips blocks 1-4's forward and every backward below block4_conv2.
    assert rates['step_prefix_gflops_per_image'] < rates['step_gflops_per_image']
  for on in ('on', 'off'):
    schedule = results[f'schedule_prefix_{on}']['result']
    assert 0 <= schedule['stage2']['input_wait_share'] <= 1
  assert sorted(results['keras']) == ['seconds', 'skipped']
  assert results['keras']['skipped'] == 'rehearsal'
  check_step_seconds(results, result.stdout, wall_s)
  table = (out / 'device_check.md').read_text()
  assert 'CPU REHEARSAL' in table and '| Stage-2 step on images, images/s |' in table
  assert '| Stage 2: share of epoch time waiting for input |' in table
  assert table in result.stdout  # Printed, ready to paste.
