"""The persistent compilation cache: where it lives, that a second process reads
what the first compiled (with the XLA options aesthetix compiles with), and
that it can be turned off."""

import json
import os
import subprocess
import sys

from aesthetix.runtime import compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A process that sets the cache up as run.py does, compiles two programs the way
# aesthetix compiles (parallel.Program: XLA options, a mesh) and prints its counts.
PROGRAMS = '''
import json, sys
import numpy as np
from aesthetix.runtime import compilation_cache, parallel
compilation_cache.setup()
program = parallel.per_device(lambda x: parallel.psum(x * 2.0 + 1.0),
                              in_specs=(parallel.SHARDED,), out_specs=parallel.REPLICATED)
program(parallel.put_batch({'x': np.ones((4, 3), np.float32)})['x'])
program(parallel.put_batch({'x': np.ones((8, 3), np.float32)})['x'])
print(json.dumps(compilation_cache.summary({})))
'''


def test_the_folder_follows_the_environment():
  home = os.path.expanduser('~')
  assert compilation_cache.default_directory({}) == os.path.join(home, '.cache', 'aesthetix',
                                                                 'jax')
  assert compilation_cache.default_directory({'XDG_CACHE_HOME': '/x'}) == '/x/aesthetix/jax'
  assert compilation_cache.default_directory(
      {'XDG_CACHE_HOME': '/x', 'JAX_COMPILATION_CACHE_DIR': '/j'}) == '/j'
  assert compilation_cache.default_directory(
      {'AESTHETIX_CACHE_DIR': '/a', 'JAX_COMPILATION_CACHE_DIR': '/j'}) == '/a/jax'
  assert compilation_cache.enabled_by_environment({})
  assert not compilation_cache.enabled_by_environment({'AESTHETIX_COMPILATION_CACHE': 'Off'})


def run_programs(cache_root, **env):
  env = dict(os.environ, AESTHETIX_CACHE_DIR=str(cache_root), PYTHONPATH=REPO, **env)
  for name in ('JAX_COMPILATION_CACHE_DIR', 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS',
               'JAX_COMPILATION_CACHE_MAX_SIZE'):
    env.pop(name, None)  # As a user's shell has it: the set-up alone decides.
  out = subprocess.run([sys.executable, '-c', PROGRAMS], env=env, capture_output=True,
                       text=True, timeout=300, cwd=REPO)
  assert out.returncode == 0, out.stderr
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_compiles_nothing_the_first_compiled(tmp_path):
  first = run_programs(tmp_path)
  assert first['directory'] == str(tmp_path / 'jax')
  assert first['programs'] >= 2 and first['from_cache'] == 0
  assert first['written'] == first['compiled'] == first['programs']
  assert first['entries'] == first['written']
  # The bound is set, so JAX locks the folder around its reads and writes.
  assert os.path.exists(tmp_path / 'jax' / '.lockfile')
  second = run_programs(tmp_path)
  assert second['programs'] == first['programs']
  assert second['from_cache'] == second['programs'] and second['compiled'] == 0
  assert second['entries'] == first['entries'] and second['bytes'] > 0


def test_switched_off_it_reads_and_writes_nothing(tmp_path):
  off = run_programs(tmp_path, AESTHETIX_COMPILATION_CACHE='0')
  assert off['directory'] is None and off['from_cache'] == 0 and off['written'] == 0
  assert off['compiled'] == off['programs'] >= 2
  assert not os.path.exists(tmp_path / 'jax')
