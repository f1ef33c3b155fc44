"""JAX's persistent compilation cache: one set-up for every mode, on by default.

A run compiles the same programs as the run before it (the same config
again, an ablation that shares most of its programs, predict after predict);
with the cache they are read back from disk instead of compiled. Where:

  $AESTHETIX_CACHE_DIR/jax        when AESTHETIX_CACHE_DIR is set
  $JAX_COMPILATION_CACHE_DIR      else, when the user set JAX's own variable
  $XDG_CACHE_HOME/aesthetix/jax   else (default: ~/.cache/aesthetix/jax)

Off: `--config.compilation_cache=False` (train, reproduce) or
AESTHETIX_COMPILATION_CACHE=0 in the environment (every mode).

Every program is kept, however fast it compiled (predict's programs take
under a second, and they are what a user waits for), up to MAX_BYTES, the
least recently used evicted first. That bound also makes JAX hold a file lock
(`filelock`, on `<dir>/.lockfile`) around every read and write of the cache
(jax/_src/lru_cache.py, `LRUCache.get` and `.put`): processes that share the
folder never read an entry another one is still writing. Only process 0 of a
multi-process run writes entries (jax/_src/compiler.py, `_cache_write`); all
read. A cache entry that does not read back is compiled again, with JAX's
warning. The cache is trusted code: keep it in a folder only you can write.

`counts()` says how many programs this process compiled and how many came
from the cache (JAX's monitoring events), `size(directory)` what the folder
holds; a training run logs both at its end.
"""

import collections
import os

from absl import logging

CACHE_DIR_ENV = 'AESTHETIX_CACHE_DIR'
SWITCH_ENV = 'AESTHETIX_COMPILATION_CACHE'
JAX_DIR_ENV = 'JAX_COMPILATION_CACHE_DIR'
JAX_MAX_SIZE_ENV = 'JAX_COMPILATION_CACHE_MAX_SIZE'
# The folder of JAX's programs inside aesthetix's cache folder.
JAX_SUBDIR = 'jax'
# Values of SWITCH_ENV that turn the cache off.
OFF_VALUES = ('0', 'false', 'no', 'off')
# The cache's bound: a VGG16 program at 224x224 takes a few MB, so this holds
# hundreds of configs' programs.
MAX_BYTES = 4 * 2**30
# JAX's monitoring events: one per program compiled or read from the cache
# (a duration event around each), one per cache read that hit, one per entry written.
PROGRAM_EVENT = '/jax/core/compile/backend_compile_duration'
HIT_EVENT = '/jax/compilation_cache/cache_hits'
WRITE_EVENT = '/jax/compilation_cache/cache_misses'
# What the cache writes: entries and, with eviction on, their access times.
ENTRY_SUFFIX = '-cache'

_COUNTS = collections.Counter()
_LISTENING = []


def default_directory(environ=None):
  """The cache folder the environment names (the module docstring's order)."""
  environ = os.environ if environ is None else environ
  if environ.get(CACHE_DIR_ENV):
    return os.path.join(environ[CACHE_DIR_ENV], JAX_SUBDIR)
  if environ.get(JAX_DIR_ENV):
    return environ[JAX_DIR_ENV]
  base = environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'aesthetix', JAX_SUBDIR)


def enabled_by_environment(environ=None):
  """False when AESTHETIX_COMPILATION_CACHE turns the cache off."""
  environ = os.environ if environ is None else environ
  return environ.get(SWITCH_ENV, '1').strip().lower() not in OFF_VALUES


def setup(enabled=True, directory=None):
  """Points JAX's persistent cache at `directory` (default: `default_directory()`),
  or turns it off (`enabled` False, or the environment's switch); returns the
  folder, or None when off. Call before JAX compiles anything: JAX opens its
  cache at the first compilation and keeps it for the process."""
  import jax  # pylint: disable=g-import-not-at-top
  count_programs()
  if not (enabled and enabled_by_environment()):
    jax.config.update('jax_enable_compilation_cache', False)
    logging.info('Persistent compilation cache: off.')
    return None
  directory = os.path.abspath(directory or default_directory())
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    logging.warning('Persistent compilation cache: %s cannot be made (%s); compiling '
                    'without it. Set %s to a writable folder.', directory, e, CACHE_DIR_ENV)
    jax.config.update('jax_enable_compilation_cache', False)
    return None
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  if not os.environ.get(JAX_MAX_SIZE_ENV):  # Unless the user bounded it.
    jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
  entries, size_bytes = size(directory)
  logging.info('Persistent compilation cache: %s (%d programs, %s).', directory, entries,
               human_size(size_bytes))
  return directory


def human_size(n):
  """'12.3 MiB', or '45 KiB' below a MiB."""
  return f'{n / 2**20:.1f} MiB' if n >= 2**20 else f'{n / 2**10:.0f} KiB'


def count_programs():
  """Starts counting compilations and cache hits (once per process)."""
  if _LISTENING:
    return
  from jax import monitoring  # pylint: disable=g-import-not-at-top

  def on_event(event, **_):
    if event in (HIT_EVENT, WRITE_EVENT):
      _COUNTS[event] += 1

  def on_duration(event, _, **__):
    if event == PROGRAM_EVENT:
      _COUNTS[event] += 1

  monitoring.register_event_listener(on_event)
  monitoring.register_event_duration_secs_listener(on_duration)
  _LISTENING.append(True)


def counts():
  """{'programs', 'from_cache', 'compiled', 'written'} of this process so far:
  programs this process compiled or read from the persistent cache (those
  found in JAX's in-memory caches are not counted), how many of them came
  from the cache, how many were compiled, and how many were written to it."""
  programs, hits = _COUNTS[PROGRAM_EVENT], _COUNTS[HIT_EVENT]
  return dict(programs=programs, from_cache=hits, compiled=programs - hits,
              written=_COUNTS[WRITE_EVENT])


def since(before):
  """`counts()` minus an earlier `counts()`."""
  now = counts()
  return {k: now[k] - before.get(k, 0) for k in now}


def size(directory):
  """(entries, bytes) of a cache folder; (0, 0) when it does not exist."""
  entries, total = 0, 0
  try:
    names = os.listdir(directory)
  except OSError:
    return 0, 0
  for name in names:
    try:
      total += os.path.getsize(os.path.join(directory, name))
    except OSError:  # Evicted by another process meanwhile.
      continue
    entries += name.endswith(ENTRY_SUFFIX)
  return entries, total


def current_directory():
  """The folder JAX's persistent cache uses in this process, or None when off."""
  import jax  # pylint: disable=g-import-not-at-top
  if not jax.config.jax_enable_compilation_cache:
    return None
  return jax.config.jax_compilation_cache_dir


def summary(before):
  """What a run did with the cache since `counts()` was `before`: the counts,
  and the folder with its entries and bytes (JSON-ready)."""
  directory = current_directory()
  entries, size_bytes = size(directory) if directory else (0, 0)
  return dict(since(before), directory=directory, entries=entries, bytes=size_bytes)


def summary_line(s):
  """One line for the log from `summary(...)`."""
  where = (f'persistent cache {s["directory"]}: {s["entries"]} programs, '
           f'{human_size(s["bytes"])}' if s['directory'] else 'persistent cache off')
  return (f'{s["programs"]} programs: {s["from_cache"]} read from the persistent cache, '
          f'{s["compiled"]} compiled ({s["written"]} written to it); {where}.')
