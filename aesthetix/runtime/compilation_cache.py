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

Whole executables. JAX's cache is keyed by the lowered program, so a process
still traces and lowers every program before it finds it there (0.4 s of a
warm `--mode=predict` on the development machine, more than the rest of its
work). A program made with a name (`parallel.per_device(..., name=...)`: the
scoring programs) is also kept whole, compiled, in `<dir>/executables/`
(`jax.experimental.serialize_executable`), under a key of everything that
decides what it compiles to: its name (the model's configuration), its input
signature, the sha256 of aesthetix's own source files, the versions of JAX,
jaxlib and Flax, the backend and its devices, XLA_FLAGS and JAX's settings
(but those of caches and logs). A process that
finds its key loads the executable without tracing, and runs it once
waiting for its result: an entry that does not load or does not run is
removed (with a warning) and the program compiled again. Only an executable
compiled in the process is kept: one JAX read from its own cache does not
serialize whole (on XLA:CPU it loads, then misses its fused kernels), so a
named program that JAX's cache held is compiled once more, under an option
at its default value that gives it another key there, and that one is kept. At most
MAX_EXECUTABLES entries are kept, the least recently used removed first; a
single process writes and reads them (a multi-process run compiles as usual).
"""

import collections
import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
import tempfile

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

# Whole executables: their folder inside JAX's, file suffix, and how many are kept.
EXECUTABLES_SUBDIR = 'executables'
EXECUTABLE_SUFFIX = '.executable'
MAX_EXECUTABLES = 256
# The distributions whose code decides what a program compiles to.
COMPILER_DISTRIBUTIONS = ('jax', 'jaxlib', 'flax')
# JAX settings whose names hold these words do not change a program.
IGNORED_SETTING_WORDS = ('cache', 'log')
# The counter of executables loaded whole.
LOADED = 'loaded'

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
  """{'programs', 'from_cache', 'compiled', 'written', 'loaded'} of this
  process so far: programs this process compiled or read from the persistent
  cache (those found in JAX's in-memory caches are not counted), how many of
  them came from the cache, how many were compiled, how many were written to
  it, and how many executables were loaded whole (not traced, not counted in
  the programs)."""
  programs, hits = _COUNTS[PROGRAM_EVENT], _COUNTS[HIT_EVENT]
  return dict(programs=programs, from_cache=hits, compiled=programs - hits,
              written=_COUNTS[WRITE_EVENT], loaded=_COUNTS[LOADED])


def cache_hits():
  """Programs read from JAX's persistent cache so far in this process (counted
  from the first call on)."""
  count_programs()
  return _COUNTS[HIT_EVENT]


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
    if name == EXECUTABLES_SUBDIR:  # Counted by executables_size.
      continue
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
  executables, executable_bytes = executables_size(executables_directory())
  return dict(since(before), directory=directory, entries=entries, bytes=size_bytes,
              executables=executables, executable_bytes=executable_bytes)


def executables_size(directory):
  """(entries, bytes) of the folder of whole executables; (0, 0) when absent."""
  entries, total = 0, 0
  try:
    found = list(os.scandir(directory)) if directory else []
  except OSError:
    return 0, 0
  for entry in found:
    if entry.name.endswith(EXECUTABLE_SUFFIX):
      try:
        total += entry.stat().st_size
      except OSError:  # Evicted by another process meanwhile.
        continue
      entries += 1
  return entries, total


def summary_line(s):
  """One line for the log from `summary(...)`."""
  where = (f'persistent cache {s["directory"]}: {s["entries"]} programs, '
           f'{human_size(s["bytes"])}, {s.get("executables", 0)} whole executables, '
           f'{human_size(s.get("executable_bytes", 0))}'
           if s['directory'] else 'persistent cache off')
  loaded = f'; {s["loaded"]} loaded whole (not traced)' if s.get('loaded') else ''
  return (f'{s["programs"]} programs: {s["from_cache"]} read from the persistent cache, '
          f'{s["compiled"]} compiled ({s["written"]} written to it){loaded}; {where}.')


# ------------------------------------------------------------ whole executables


def executables_directory():
  """The folder of whole executables, or None when the persistent cache is off."""
  directory = current_directory()
  return os.path.join(directory, EXECUTABLES_SUBDIR) if directory else None


@functools.lru_cache(maxsize=1)
def code_digest():
  """sha256 (hex) of aesthetix's source files (relative path and bytes, in order)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  h = hashlib.sha256()
  for folder, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(f for f in files if f.endswith('.py')):
      path = os.path.join(folder, name)
      h.update(os.path.relpath(path, root).encode() + b'\0')
      with open(path, 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


def executable_key(name, signature):
  """The store's key of the program `name` compiled for `signature` (text) here."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  fields = dict(
      name=name, signature=signature, code=code_digest(),
      versions={d: importlib.metadata.version(d) for d in COMPILER_DISTRIBUTIONS},
      backend=jax.default_backend(), platform=devices[0].client.platform_version,
      devices=[d.device_kind for d in devices], processes=jax.process_count(),
      xla_flags=os.environ.get('XLA_FLAGS', ''), jax_config=traced_config(jax.config.values))
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def traced_config(values):
  """JAX's settings that can change a traced program (x64, matmul precision,
  ...): all of them but those of caches and logs, as text."""
  return {k: str(v) for k, v in sorted(values.items())
          if not any(word in k for word in IGNORED_SETTING_WORDS)}


def keeps_executables():
  """Whether this process keeps whole executables: the cache on, one process."""
  import jax  # pylint: disable=g-import-not-at-top
  return executables_directory() is not None and jax.process_count() == 1


def _executable_path(key):
  directory = executables_directory()
  return os.path.join(directory, key + EXECUTABLE_SUFFIX) if directory else None


def load_executable(key):
  """The executable stored under `key` (a jax.stages.Compiled), or None: none
  stored, or the cache off (callers ask `keeps_executables` first). One that
  does not load is removed, with a warning."""
  path = _executable_path(key)
  if path is None:
    return None
  try:
    with open(path, 'rb') as f:
      payload = f.read()
  except OSError:
    return None
  from jax.experimental import serialize_executable  # pylint: disable=g-import-not-at-top
  try:
    compiled = serialize_executable.deserialize_and_load(*pickle.loads(payload))
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('The stored executable %s does not load (%s: %s); compiling the program '
                    'again.', path, type(e).__name__, str(e)[:200])
    _remove(path)
    return None
  try:
    os.utime(path)  # Recently used.
  except OSError:
    pass
  _COUNTS[LOADED] += 1
  return compiled


def discard_executable(key, error):
  """Removes the entry of `key`, whose executable loaded but did not run (`error`)."""
  path = _executable_path(key)
  logging.warning('The stored executable %s did not run (%s: %s); compiling the program '
                  'again.', path, type(error).__name__, str(error)[:200])
  if path:
    _remove(path)


def store_executable(key, compiled):
  """Keeps `compiled` under `key` (nothing when the cache is off or the
  backend cannot serialize it); then at most MAX_EXECUTABLES entries stay.
  Callers ask `keeps_executables` first (one process only)."""
  path = _executable_path(key)
  if path is None:
    return
  from jax.experimental import serialize_executable  # pylint: disable=g-import-not-at-top
  try:
    payload = pickle.dumps(serialize_executable.serialize(compiled))
  except Exception as e:  # pylint: disable=broad-except
    logging.info('This executable cannot be kept whole (%s: %s).', type(e).__name__, e)
    return
  directory, tmp = os.path.dirname(path), None
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp')
    with os.fdopen(fd, 'wb') as f:
      f.write(payload)
    os.replace(tmp, path)  # Readers see the whole entry or none.
  except OSError as e:
    logging.info('The executable was not kept (%s).', e)
    if tmp:
      _remove(tmp)
    return
  _evict(directory)


def _remove(path):
  try:
    os.remove(path)
  except OSError:
    pass


def _evict(directory):
  """Removes the least recently used entries beyond MAX_EXECUTABLES."""
  entries = []
  for entry in os.scandir(directory):
    if entry.name.endswith(EXECUTABLE_SUFFIX):
      try:
        entries.append((entry.stat().st_mtime, entry.path))
      except OSError:
        continue
  for _, path in sorted(entries)[:-MAX_EXECUTABLES]:
    _remove(path)
