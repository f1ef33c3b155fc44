"""The GPU check's CPU rehearsal: the script as a GPU run would take it, at tiny sizes.

A GPU machine is lent rarely and for minutes, so the script must be known to
work before one is: this runs every step of bench/device_check.sh on the CPU
with the test's own interpreter. The packages it runs with are CI's (.ci/run
installs requirements-test.txt into a fresh venv and runs the suite there),
and they are what the script's fresh venv installs: test_make_venv_* check
that the script names the same files as CI and that make_venv installs both
of its files into an isolated venv whose python the check then runs (tiny
local wheels, no index). The rehearsal in a fresh venv itself (a 2.8 GB
install, minutes) stays on demand: DEVICE_CHECK_CPU=1 DEVICE_CHECK_FRESH_VENV=1
bash bench/device_check.sh.
"""

import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'bench', 'device_check.sh')
CI_SCRIPT = os.path.join(REPO, '.ci', 'run')
# A backstop above the script's own limits together (tests 120 s, measuring
# 360 s), so that a slow run ends with the script's one line.
LIMIT_S = 600
# Making a venv (ensurepip included) and installing a local wheel: seconds.
VENV_LIMIT_S = 300
STEPS = ('devices', 'rates', 'schedule_prefix_on', 'schedule_prefix_off', 'keras')
# A skipped step raises before doing anything: far under this.
SKIPPED_STEP_S = 1.0
# A step's line as it ends (after a progress bar's last '\r' on the same line).
STEP_LINE = re.compile(r'device_check: (\w+): [^\r\n]* \((\d+) s\)$', re.MULTILINE)
# The CUDA build's own line: what the GPU path installs beyond CI's packages.
CUDA_REQUIREMENTS = 'requirements-cuda.txt'


def script_env(tmp_path, **extra):
  """The environment a user starts the script with, its output under tmp_path."""
  env = dict(os.environ, OUT=str(tmp_path / 'out'), PYTHON=sys.executable,
             DEVICE_CHECK_WORK=str(tmp_path / 'work'))
  env.update(extra)
  env.pop('XLA_FLAGS', None)  # As a user starts it: one CPU device.
  env.pop('PYTHONPATH', None)  # Nothing of this venv's may reach a fresh one.
  return env


def run_rehearsal(tmp_path):
  """(the finished script, its wall time in seconds), with this interpreter."""
  start = time.monotonic()
  result = subprocess.run(['bash', SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env=script_env(tmp_path, DEVICE_CHECK_CPU='1'), timeout=LIMIT_S)
  return result, time.monotonic() - start


def sourced(tmp_path, commands, **env):
  """`commands` run in bash after sourcing the script (its functions, not its run)."""
  (tmp_path / 'out').mkdir(parents=True, exist_ok=True)
  return subprocess.run(['bash', '-c', f'. {shlex.quote(SCRIPT)} && {commands}'],
                        cwd=REPO, capture_output=True, text=True,
                        env=script_env(tmp_path, **env), timeout=VENV_LIMIT_S)


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


def test_the_rehearsal_runs_every_step_and_writes_the_table(tmp_path):
  result, wall_s = run_rehearsal(tmp_path)
  out = tmp_path / 'out'
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert f'jax 0.10.2 in {sys.executable} ' in result.stdout  # The interpreter it was given.
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


def requirement_lines(path):
  """The requirements a pip install of `path` reads: its lines and those of
  the files it includes (-r), comments and blank lines aside."""
  lines = set()
  for line in open(path).read().splitlines():
    line = line.split('#', 1)[0].strip()
    if line.startswith('-r '):
      lines |= requirement_lines(os.path.join(os.path.dirname(path), line[3:].strip()))
    elif line:
      lines.add(line)
  return lines


def installed_by(files):
  return set().union(*(requirement_lines(os.path.join(REPO, f)) for f in files))


def ci_install_files():
  """The files .ci/run's pip install names (-r), from its command line."""
  [command] = [l for l in open(CI_SCRIPT).read().splitlines() if 'pip install' in l]
  words = shlex.split(command)
  start = words.index('pip')
  end = words.index('&&', start)
  return command, [words[i + 1] for i in range(start, end) if words[i] == '-r']


def make_venv_files(tmp_path, **env):
  """The files main hands make_venv (and its $TEST_REQUIREMENTS), as it runs:
  make_venv replaced by one that names them and stops."""
  result = sourced(tmp_path, 'make_venv() { echo "make_venv: $1 $TEST_REQUIREMENTS"; '
                   'exit 0; }; main', DEVICE_CHECK_FRESH_VENV='1', **env)
  assert result.returncode == 0, result.stderr[-2000:]
  [line] = [l for l in result.stdout.splitlines() if l.startswith('make_venv: ')]
  return line.split()[1:]


def test_make_venv_installs_what_ci_installs(tmp_path):
  command, ci_files = ci_install_files()
  readme = open(os.path.join(REPO, 'README.md')).read()
  assert command.strip() in readme.splitlines()  # .ci/run runs the README's test command.
  ci = installed_by(ci_files)
  assert {'jax==0.10.2', 'pytest==9.2.0', 'pytest-xdist==3.8.0'} <= ci
  rehearsal = make_venv_files(tmp_path / 'cpu', DEVICE_CHECK_CPU='1')
  assert installed_by(rehearsal) == ci
  # The GPU path: the same, and the CUDA build of the same JAX.
  gpu = make_venv_files(tmp_path / 'gpu')
  assert CUDA_REQUIREMENTS in gpu
  cuda_own = {l for l in requirement_lines(os.path.join(REPO, CUDA_REQUIREMENTS))
              if l not in requirement_lines(os.path.join(REPO, 'requirements.txt'))}
  assert cuda_own == {'jax[cuda12]==0.10.2'}
  assert installed_by(gpu) == ci | cuda_own


def write_wheel(folder, name):
  """A pure-Python wheel of one module `name` (NAME = name); its path."""
  dist = f'{name}-0.1.dist-info'
  files = {f'{name}.py': f'NAME = {name!r}\n',
           f'{dist}/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n',
           f'{dist}/WHEEL': 'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n'
                            'Tag: py3-none-any\n'}
  record = []
  for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=')
    record.append(f'{path},sha256={digest.decode()},{len(text.encode())}')
  files[f'{dist}/RECORD'] = '\n'.join(record + [f'{dist}/RECORD,,']) + '\n'
  path = folder / f'{name}-0.1-py3-none-any.whl'
  with zipfile.ZipFile(path, 'w') as z:
    for name_in_zip, text in files.items():
      z.writestr(name_in_zip, text)
  return path


def test_make_venv_installs_both_files_into_an_isolated_venv_it_then_runs(tmp_path):
  main, test = tmp_path / 'main.txt', tmp_path / 'test.txt'
  main.write_text(f'{write_wheel(tmp_path, "tiny_main")}\n')
  test.write_text(f'{write_wheel(tmp_path, "tiny_test")}\n')
  probe = ('"$PY" -c "import sys, tiny_main, tiny_test; print(\'runs\', sys.executable)"; '
           '"$PY" -c "import jax" 2> /dev/null || echo "no jax"')
  result = sourced(tmp_path, f'TEST_REQUIREMENTS={test}; make_venv {main} && {probe}')
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  venv = tmp_path / 'work' / 'venv'
  assert f'installing {main} and {test} into the venv {venv}\n' in result.stdout
  assert re.search(r'^device_check: installed in \d+ s$', result.stdout, re.MULTILINE)
  # Made by the script, isolated from the test's venv, and the one it then runs.
  assert 'include-system-site-packages = false' in (venv / 'pyvenv.cfg').read_text()
  assert f'runs {venv / "bin" / "python"}\nno jax\n' in result.stdout
  # A failed install stops the check with pip's own error, in one line.
  main.write_text(f'{tmp_path / "missing-0.1-py3-none-any.whl"}\n')
  # (Into the same folder: a second venv there costs half of a first.)
  failed = sourced(tmp_path, f'TEST_REQUIREMENTS={test}; make_venv {main}; echo carried on')
  assert failed.returncode == 1 and 'carried on' not in failed.stdout
  [line] = [l for l in failed.stdout.splitlines() if 'FAILED' in l]
  assert re.match(rf'device_check: FAILED after \d+ s: pip install -r {main} -r {test} '
                  rf'failed \(see {tmp_path}/out/pip.log\): ERROR: .*missing-0.1', line), line
