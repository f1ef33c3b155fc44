"""The persistent compilation cache: where it lives, that a second process reads
what the first compiled (with the XLA options aesthetix compiles with), that
it can be turned off, and the whole executables kept of named programs
(loaded without tracing, keyed by name and code, replaced when damaged,
bounded)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from aesthetix.runtime import compilation_cache
from aesthetix.runtime import parallel

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


# ------------------------------------------------------------ whole executables


def doubling(name, offset):
  """A named per-device program (a new Program: nothing compiled in it yet).
  Each test takes offsets of its own: the session's persistent cache must not
  hold its programs yet (only an executable compiled in the process is kept)."""
  return parallel.per_device(lambda x: parallel.psum(x * 2.0 + offset),
                             in_specs=(parallel.SHARDED,), out_specs=parallel.REPLICATED,
                             name=name)


def batch(rows=4):
  return parallel.put_batch({'x': np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)})['x']


def expected(offset, rows=4):
  """What `doubling` gives for `batch(rows)`: each device's rows, doubled plus
  the offset, summed over the devices."""
  x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) * 2 + offset
  return x.reshape(parallel.device_count(), -1, 3).sum(0)


def entries(folder):
  return sorted(p.name for p in folder.glob('*' + compilation_cache.EXECUTABLE_SUFFIX))


@pytest.fixture
def store(tmp_path, monkeypatch):
  """The folder of whole executables, a fresh one."""
  folder = tmp_path / compilation_cache.EXECUTABLES_SUBDIR
  monkeypatch.setattr(compilation_cache, 'executables_directory', lambda: str(folder))
  compilation_cache.count_programs()
  return folder


def test_a_named_program_is_loaded_whole_by_the_next_and_computes_the_same(store):
  before = compilation_cache.counts()
  first = np.asarray(doubling('doubling', 1.0)(batch()))
  assert compilation_cache.since(before)['loaded'] == 0
  assert len(entries(store)) == 1
  before = compilation_cache.counts()
  second = np.asarray(doubling('doubling', 1.0)(batch()))
  done = compilation_cache.since(before)
  assert done['loaded'] == 1 and done['programs'] == 0  # Neither traced nor compiled.
  np.testing.assert_array_equal(second, first)
  np.testing.assert_array_equal(first, expected(1.0))
  # Another input signature is another program, kept beside the first.
  doubling('doubling', 1.0)(batch(8))
  assert len(entries(store)) == 2


def test_the_key_follows_the_name_the_code_and_jaxs_settings(store, monkeypatch):
  doubling('doubling', 2.0)(batch())
  doubling('tripling', 3.0)(batch())
  assert len(entries(store)) == 2
  before = compilation_cache.counts()
  monkeypatch.setattr(compilation_cache, 'code_digest', lambda: 'edited source')
  doubling('doubling', 2.0)(batch())
  assert compilation_cache.since(before)['loaded'] == 0
  monkeypatch.undo()
  monkeypatch.setattr(compilation_cache, 'executables_directory', lambda: str(store))
  with jax.default_matmul_precision('highest'):  # Can change what is traced.
    doubling('doubling', 2.0)(batch())
  assert compilation_cache.since(before)['loaded'] == 0
  doubling('doubling', 2.0)(batch())  # As it was: found.
  assert compilation_cache.since(before)['loaded'] == 1
  # The cache's own settings do not count.
  settings = dict(jax.config.values, jax_compilation_cache_dir='/elsewhere')
  assert (compilation_cache.traced_config(settings)
          == compilation_cache.traced_config(jax.config.values))


def test_a_program_jaxs_cache_held_is_compiled_again_to_be_kept(store):
  doubling('compiled here', 4.0)(batch())
  before = compilation_cache.counts()
  out = np.asarray(doubling('read from the cache', 4.0)(batch()))  # The same program.
  done = compilation_cache.since(before)
  # Read from JAX's cache (an executable that would not run when loaded back),
  # then compiled once more: that one is kept.
  assert done['from_cache'] == 1 and done['compiled'] == 1 and done['loaded'] == 0
  np.testing.assert_array_equal(out, expected(4.0))
  assert len(entries(store)) == 2
  before = compilation_cache.counts()
  out = np.asarray(doubling('read from the cache', 4.0)(batch()))
  assert compilation_cache.since(before)['loaded'] == 1
  np.testing.assert_array_equal(out, expected(4.0))


def test_an_entry_that_does_not_load_is_compiled_again_and_replaced(store, caplog):
  doubling('doubling', 5.0)(batch())
  (entry,) = entries(store)
  (store / entry).write_bytes(b'not an executable')
  before = compilation_cache.counts()
  with caplog.at_level('WARNING'):
    out = np.asarray(doubling('doubling', 5.0)(batch()))
  assert compilation_cache.since(before)['loaded'] == 0
  assert any('does not load' in r.getMessage() and entry in r.getMessage()
             for r in caplog.records)
  np.testing.assert_array_equal(out, expected(5.0))
  # Replaced by a fresh compile (JAX's cache held the program: see above).
  assert len(entries(store)) == 1


def test_an_entry_that_loads_but_does_not_run_is_compiled_again(store, monkeypatch, caplog):
  doubling('doubling', 6.0)(batch())
  (entry,) = entries(store)

  def broken(*unused_args):
    raise jax.errors.JaxRuntimeError('NOT_FOUND: Function broadcast_add_fusion not found')

  monkeypatch.setattr(compilation_cache, 'load_executable', lambda key: broken)
  with caplog.at_level('WARNING'):
    out = np.asarray(doubling('doubling', 6.0)(batch()))
  np.testing.assert_array_equal(out, expected(6.0))
  assert any('did not run' in r.getMessage() and entry in r.getMessage()
             for r in caplog.records)
  assert entries(store) == []


def test_the_least_recently_used_go_beyond_the_bound(store, monkeypatch):
  monkeypatch.setattr(compilation_cache, 'MAX_EXECUTABLES', 2)
  for i, name in enumerate(('a', 'b', 'c')):
    doubling(name, 7.0 + i)(batch())
    for path in store.glob('*' + compilation_cache.EXECUTABLE_SUFFIX):  # Distinct times.
      os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 10))
  assert len(entries(store)) == 2
  before = compilation_cache.counts()
  doubling('a', 7.0)(batch())  # The oldest went.
  assert compilation_cache.since(before)['loaded'] == 0
  doubling('c', 9.0)(batch())
  assert compilation_cache.since(before)['loaded'] == 1


def test_with_the_cache_off_nothing_is_kept(tmp_path, monkeypatch):
  monkeypatch.setattr(compilation_cache, 'current_directory', lambda: None)
  assert compilation_cache.executables_directory() is None
  before = compilation_cache.counts()
  doubling('doubling', 10.0)(batch())
  doubling('doubling', 10.0)(batch())
  assert compilation_cache.since(before)['loaded'] == 0
