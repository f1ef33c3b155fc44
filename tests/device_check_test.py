"""The GPU check's CPU rehearsal: the script as a GPU run would take it, at tiny sizes.

A GPU machine is lent rarely and for minutes, so the script must be known to
work before one is: this runs every step of bench/device_check.sh on the CPU.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S = 300  # The bound for the rehearsal is 3 minutes; this one is a backstop.


def test_the_rehearsal_runs_every_step_and_writes_the_table(tmp_path):
  out = tmp_path / 'out'
  env = dict(os.environ, DEVICE_CHECK_CPU='1', OUT=str(out), PYTHON=sys.executable,
             DEVICE_CHECK_WORK=str(tmp_path / 'work'))
  env.pop('XLA_FLAGS', None)  # As a user starts it: one CPU device.
  result = subprocess.run(['bash', 'bench/device_check.sh'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=LIMIT_S)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert 'device_check: tests passed' in result.stdout
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
    assert schedule['whole_seconds'] > 0
    assert 0 <= schedule['stage2']['input_wait_share'] <= 1
  assert results['keras'] == {'skipped': 'rehearsal', 'seconds': results['keras']['seconds']}
  table = (out / 'device_check.md').read_text()
  assert 'CPU REHEARSAL' in table and '| Stage-2 step on images, images/s |' in table
  assert '| Stage 2: share of epoch time waiting for input |' in table
  assert table in result.stdout  # Printed, ready to paste.
