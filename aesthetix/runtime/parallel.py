"""All of the data-parallel plumbing: start-up, the device mesh, per-device programs,
global batches, replication, gathers and barriers.

The programming model is pmap's: a per-device function sees its slice of the
batch and reduces over the named axis `AXIS` (`psum`). It runs as `jax.jit`
over `jax.shard_map` on a one-axis mesh of every device of every process
(what `jax.pmap` itself lowers to since JAX 0.8), so one program serves one
process and many alike. A global batch of B examples is cut into equal
slices, one per device, process by process: process i of n feeds rows
[i B/n, (i+1) B/n) (every process has as many devices), and `put_batch` makes
the global array from them.

Everything that knows how work is spread over devices and processes lives
here, so that the rest of the code reads the same on a laptop and a pod.
"""

import functools
import os
import socket
import sys
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from aesthetix.runtime import compilation_cache
from aesthetix.runtime import errors

AXIS = 'batch'
REPLICATED = jax.P()
SHARDED = jax.P(AXIS)
# Batch entries that stay on the host (strings, not arrays for devices).
HOST_ONLY_KEYS = ('id',)
# XLA:CPU hands convolutions to YNNPACK fusions by default; with the option
# empty they go to its Eigen kernels, which ran the VGG16 forward 23% and the
# stage 2 step 20% faster at 224x224 on the development CPU (BENCHMARKS.md).
YNN_FUSION_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
# Seconds a process waits for all others to join before it gives up.
DEFAULT_INIT_TIMEOUT_S = 300
# Seconds without a heartbeat after which a process counts as dead and the
# others stop (JAX's default is 100 s; a killed process then holds a pod for
# minutes). Heartbeats come from a thread of their own, so a busy process
# still sends them.
DEFAULT_HEARTBEAT_TIMEOUT_S = 30
# JAX's own switch: a coordinator address in the environment asks for multi-process.
COORDINATOR_ENV = 'JAX_COORDINATOR_ADDRESS'


class DistributedError(errors.UserError, RuntimeError):
  """A multi-process run was asked for and cannot start as described."""


# ------------------------------------------------------------------ start-up


def detected_cluster():
  """The name of the cluster environment JAX would bootstrap from (SLURM, Open MPI,
  Cloud TPU, ...), or None where none is present.

  JAX keeps its detectors in a private registry; a JAX without it detects nothing
  here, and the explicit flags still work.
  """
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
    candidates = clusters.ClusterEnv._cluster_types  # pylint: disable=protected-access
  except (ImportError, AttributeError):
    return None
  for env in candidates:
    if getattr(env, 'opt_in_only_method', False):
      continue
    try:
      if env.is_env_present():
        return getattr(env, 'name', env.__name__)
    except Exception:  # pylint: disable=broad-except
      continue  # A detector that cannot tell (no metadata server, say): not present.
  return None


def _check_address(address):
  host, sep, port = address.rpartition(':')
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise DistributedError(
        f'--coordinator_address={address!r} is not HOST:PORT (e.g. 127.0.0.1:12355, '
        'the address of process 0 and a free port).')


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               timeout_s=DEFAULT_INIT_TIMEOUT_S,
               heartbeat_timeout_s=DEFAULT_HEARTBEAT_TIMEOUT_S):
  """Starts a multi-process run when one is asked for; returns `describe()`.

  Asked for by the three arguments (run.py's --coordinator_address,
  --num_processes, --process_id), by JAX_COORDINATOR_ADDRESS, or by a cluster
  environment that JAX detects (SLURM, Open MPI, Cloud TPU). Anything else is
  a single-process run. A run that was asked for and cannot start raises
  `DistributedError`; it never carries on as a single process.
  """
  explicit = {'--coordinator_address': coordinator_address or os.environ.get(COORDINATOR_ENV),
              '--num_processes': num_processes, '--process_id': process_id}
  if any(v is not None for v in explicit.values()):
    missing = [flag for flag, v in explicit.items() if v is None]
    if missing:
      given = [f'{flag}' for flag, v in explicit.items() if v is not None]
      source = (f'{COORDINATOR_ENV} is set' if os.environ.get(COORDINATOR_ENV)
                and coordinator_address is None else f'{", ".join(given)} given')
      raise DistributedError(
          f'A multi-process run needs {", ".join(missing)} as well ({source}). Give all '
          'three flags to every process, or none for a single-process run.')
    _check_address(explicit['--coordinator_address'])
    if not 0 <= process_id < num_processes:
      raise DistributedError(f'--process_id={process_id} must lie in [0, '
                             f'--num_processes={num_processes}).')
    kwargs = dict(coordinator_address=explicit['--coordinator_address'],
                  num_processes=num_processes, process_id=process_id,
                  cluster_detection_method='deactivate')
    how = (f'process {process_id} of {num_processes}, coordinator '
           f'{explicit["--coordinator_address"]}')
  else:
    cluster = detected_cluster()
    if cluster is None:
      logging.info(describe())
      return describe()
    kwargs, how = {}, f'{cluster} cluster detected by JAX'
  advice = (f'Check that every process got the same --coordinator_address and '
            f'--num_processes, that process 0 runs and its port is free and reachable, '
            f'and that all start within {int(timeout_s)} s (--init_timeout).')
  # JAX aborts the whole process (a native fatal error, no exception) when peers
  # do not join in time: stop first, with a message, before its deadline.
  watchdog = threading.Timer(timeout_s, _give_up, args=(how, kwargs, advice))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(
        initialization_timeout=int(timeout_s) + _JAX_DEADLINE_MARGIN_S,
        heartbeat_timeout_seconds=int(heartbeat_timeout_s), **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise DistributedError(
        f'Could not start the multi-process run ({how}): {first}. {advice}') from e
  finally:
    watchdog.cancel()
  if num_processes is not None and jax.process_count() != num_processes:
    raise DistributedError(f'Started {jax.process_count()} processes, not '
                           f'--num_processes={num_processes}.')
  if jax.process_count() > 1:
    _tag_log_lines(f'process {jax.process_index()}/{jax.process_count()}')
  logging.info(describe())
  return describe()


# JAX's own join deadline comes this long after ours, so that ours speaks first.
_JAX_DEADLINE_MARGIN_S = 30
# The exit status of a run that cannot start (run.py's user errors).
_USAGE_EXIT = 2


def _give_up(how, kwargs, advice):
  """Called when the processes did not join in time: one line, exit 2, at once."""
  address = kwargs.get('coordinator_address')
  cause = 'the processes did not all join'
  if address and kwargs.get('process_id'):
    host, _, port = address.rpartition(':')
    try:
      socket.create_connection((host.strip('[]'), int(port)), timeout=2).close()
      cause = 'process 0 answers at the coordinator address, but not every process joined'
    except OSError:
      cause = f'nothing answers at {address} (is process 0 running, on that host and port?)'
  sys.stderr.write(f'error: Could not start the multi-process run ({how}): {cause}. '
                   f'{advice}\n')
  sys.stderr.flush()
  os._exit(_USAGE_EXIT)  # pylint: disable=protected-access


def describe():
  """'process i of n, L local device(s), G global device(s) (platform)'."""
  return (f'process {jax.process_index()} of {jax.process_count()}, '
          f'{jax.local_device_count()} local device(s), {jax.device_count()} global '
          f'device(s) ({jax.default_backend()})')


class _ProcessTag:
  """A logging filter that prefixes each message with the process."""

  def __init__(self, tag):
    self.tag = tag

  def filter(self, record):
    if not getattr(record, '_process_tagged', False):
      record.msg = f'[{self.tag}] {record.msg}'
      record._process_tagged = True  # pylint: disable=protected-access
    return True


def _tag_log_lines(tag):
  logging.get_absl_handler().addFilter(_ProcessTag(tag))


def is_main_process():
  return jax.process_index() == 0


def process_count():
  return jax.process_count()


def process_index():
  return jax.process_index()


# ---------------------------------------------------------------------- mesh


@functools.cache
def mesh():
  """The one-axis mesh of all devices, process by process."""
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  if len(devices) != jax.local_device_count() * jax.process_count():
    raise DistributedError(
        f'{len(devices)} devices over {jax.process_count()} processes: every process '
        'must have as many devices (the batch is split evenly).')
  return jax.sharding.Mesh(np.array(devices), (AXIS,))


def device_count():
  """Devices over which a global batch is split (all processes)."""
  return mesh().size


def _local_positions(m):
  """Positions of this process's devices in the mesh: one contiguous run."""
  positions = [i for i, d in enumerate(m.devices.flat)
               if d.process_index == jax.process_index()]
  assert positions == list(range(positions[0], positions[-1] + 1)), positions
  return positions


def host_batch_size(global_batch_size):
  """This process's rows of a global batch; the batch must split evenly over devices."""
  n = device_count()
  if global_batch_size % n:
    raise errors.ConfigError(
        f'Batch size {global_batch_size} does not split evenly over '
        f'{jax.process_count()} process(es) x {n // jax.process_count()} device(s); give a '
        f'multiple of {n} (--config.stage1.batch_size, --config.stage2.batch_size).')
  return global_batch_size // n * len(_local_positions(mesh()))


def process_range(n):
  """[start, end) of this process's contiguous part of n items (evaluation, caches).

  Cut as `tfds.even_splits` cuts: the first n % processes parts have one more.
  """
  return split_range(n, jax.process_index(), jax.process_count())


def split_range(n, index, count):
  per, extra = divmod(n, count)
  return per * index + min(index, extra), per * (index + 1) + min(index + 1, extra)


# ---------------------------------------------------------------------- data


def process_batch_size(global_batch_size, count=None):
  """Rows of a global batch that each of `count` (default: all) processes feeds."""
  count = jax.process_count() if count is None else count
  per, rest = divmod(global_batch_size, count)
  if rest:
    raise errors.ConfigError(f'Batch size {global_batch_size} does not split evenly over '
                             f'{count} processes; give a multiple of {count}.')
  return per


def put_batch(batch):
  """This process's rows {k: [b, ...]} -> global arrays [B, ...] split over AXIS."""
  sharding = jax.sharding.NamedSharding(mesh(), SHARDED)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items() if k not in HOST_ONLY_KEYS}


def prefetch(batches, size=2):
  """Puts host batches on the devices, keeping `size` of them in flight.

  Yields (device batch, host batch) pairs; the host batch is the numpy dict as
  it came, for the rows' ids, masks and targets without a transfer back.
  """
  queue = []
  batches = iter(batches)

  def enqueue():
    batch = next(batches, None)
    if batch is not None:
      queue.append((put_batch(batch), batch))

  for _ in range(size):
    enqueue()
  while queue:
    item = queue.pop(0)
    enqueue()
    yield item


def replicate(tree):
  """Host values (the same on every process) -> global arrays with a copy per device."""
  sharding = jax.sharding.NamedSharding(mesh(), REPLICATED)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def unreplicate(tree):
  """Host numpy values of replicated arrays, read from the first local copy.

  No device program runs: indexing a global array would compile one with a
  collective over all devices.
  """
  return jax.tree_util.tree_map(
      lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


def local_rows(x):
  """A batch-split global array [B, ...] -> this process's rows [b, ...] on the host."""
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


# ------------------------------------------------------------------ programs


def compiler_options():
  """XLA options for the programs this module compiles: Eigen convolutions on CPU.

  None elsewhere, and when XLA_FLAGS sets the option itself (the user's choice).
  """
  if (jax.default_backend() != 'cpu'
      or YNN_FUSION_OPTION in os.environ.get('XLA_FLAGS', '')):
    return None
  return {YNN_FUSION_OPTION: ''}


# An XLA option at its default value: the same program, under another key of
# JAX's persistent cache (a fresh compile, for an executable kept whole).
KEPT_WHOLE_OPTIONS = {'xla_embed_ir_in_executable': False}


class Program:
  """A jitted function, compiled once per input signature with `compiler_options`.

  Called like the function; `compile(*args)` returns the executable those
  arguments run (for cost analysis and timing). With a `name` (text that,
  with aesthetix's code, fixes what the function computes: the model's
  configuration), the executable is also kept whole in the persistent cache
  and a later process loads it without tracing (compilation_cache.py).
  """

  def __init__(self, jitted, name=None):
    self._jitted = jitted
    self._name = name
    self._executables = {}
    self._untried = {}  # Signature -> store key of a loaded executable not yet run.

  @staticmethod
  def _signature(args):
    leaves, tree = jax.tree_util.tree_flatten(args)
    return (tree, tuple((np.shape(x), np.result_type(x), getattr(x, 'weak_type', False))
                        for x in leaves))

  def compile(self, *args):
    signature = self._signature(args)
    if signature not in self._executables:
      self._executables[signature] = self._load_or_compile(args, signature)
    return self._executables[signature]

  def _load_or_compile(self, args, signature):
    key = (compilation_cache.executable_key(self._name, repr((signature, compiler_options())))
           if self._name is not None and compilation_cache.keeps_executables() else None)
    executable = key and compilation_cache.load_executable(key)
    if executable is not None:
      self._untried[signature] = key
      return executable
    lowered = self._jitted.lower(*args)
    hits = compilation_cache.cache_hits()
    executable = compile_lowered(lowered)
    if key and compilation_cache.cache_hits() > hits:
      # An executable JAX read from its cache does not serialize whole (on
      # XLA:CPU it loads, then misses its fused kernels when run): compiled
      # once more, under options JAX's cache has no entry for, to be kept.
      hits = compilation_cache.cache_hits()
      executable = compile_lowered(lowered, KEPT_WHOLE_OPTIONS)
    if key and compilation_cache.cache_hits() == hits:
      compilation_cache.store_executable(key, executable)
    return executable

  def __call__(self, *args):
    executable = self.compile(*args)
    key = self._untried.pop(self._signature(args), None) if self._untried else None
    if key is None:
      return executable(*args)
    try:  # A loaded executable's first run: any failure falls back to compiling.
      return jax.block_until_ready(executable(*args))
    except jax.errors.JaxRuntimeError as e:
      compilation_cache.discard_executable(key, e)
      signature = self._signature(args)
      self._executables[signature] = compile_lowered(self._jitted.lower(*args))
      return self._executables[signature](*args)


def compile_lowered(lowered, extra=None):
  """Compiles a lowered program with `compiler_options` (and `extra`), or
  XLA's defaults (and `extra`) when this jaxlib lacks them."""
  options = {**(compiler_options() or {}), **(extra or {})}
  if not options:
    return lowered.compile()
  try:
    return lowered.compile(options)
  except jax.errors.JaxRuntimeError as e:  # A jaxlib without the option.
    if 'No such compile option' not in str(e):
      raise
    logging.warning('XLA has no %s option; compiling with its defaults.', YNN_FUSION_OPTION)
    return lowered.compile(extra) if extra else lowered.compile()


def _shardings(m, specs):
  return jax.tree_util.tree_map(lambda s: jax.sharding.NamedSharding(m, s), specs,
                                is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))


def per_device(fn, *, in_specs, out_specs, donate_argnums=(), name=None):
  """`fn` run on every device of the mesh, collectives over `AXIS`.

  in_specs / out_specs: per argument / output (tree prefixes), REPLICATED (the
  same value on every device: params, a train state, psum'd metrics) or
  SHARDED (split over devices along the first axis: batches, predictions).
  Inside `fn` a SHARDED array holds one device's rows, as under pmap.
  name: see `Program` (None: traced in every process).
  """
  m = mesh()
  mapped = jax.shard_map(fn, mesh=m, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)
  return Program(jax.jit(mapped, in_shardings=_shardings(m, in_specs),
                         out_shardings=_shardings(m, out_specs),
                         donate_argnums=donate_argnums), name=name)


def psum(x):
  return jax.lax.psum(x, AXIS)


def pmean(x):
  return jax.lax.pmean(x, AXIS)


def device_index():
  """This device's position in the mesh (global over processes)."""
  return jax.lax.axis_index(AXIS)


# -------------------------------------------------- across processes, on the host


def gather_processes(x):
  """A numeric host array of the same shape on every process -> [processes, *shape].

  The shapes are compared first (unequal ones would corrupt the exchange);
  strings never cross processes: gather indices and map them back on the host.
  """
  x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
    raise TypeError(f'Only numeric arrays cross processes, got {x.dtype}.')
  if jax.process_count() == 1:
    return x[None]
  shapes = np.asarray(multihost_utils.process_allgather(np.array(x.shape, np.int64)))
  if not (shapes == shapes[0]).all():
    raise RuntimeError(f'Processes hold arrays of different shapes {shapes.tolist()}; '
                       'each must send the same shape (pad to the largest part).')
  return np.asarray(multihost_utils.process_allgather(x))


def gather_examples(index, arrays, total):
  """Every process's rows of a split, in index order, each example once.

  index: int [n] positions in the split (-1 for padding), n the same on every
  process; arrays: {name: [n, ...]}. Returns {name: [total, ...]}, checked to
  hold each of the split's `total` examples exactly once.
  """
  index = gather_processes(np.asarray(index, np.int64)).reshape(-1)
  gathered = {k: gather_processes(v) for k, v in arrays.items()}
  gathered = {k: v.reshape((-1,) + v.shape[2:]) for k, v in gathered.items()}
  keep = index >= 0
  order = np.argsort(index[keep], kind='stable')
  if not np.array_equal(index[keep][order], np.arange(total)):
    raise RuntimeError(
        f'The processes returned {int(keep.sum())} rows for a split of {total} '
        'examples, not each example once; the input pipeline lost or repeated rows.')
  return {k: v[keep][order] for k, v in gathered.items()}


def agree(value):
  """Process 0's numeric `value`, on every process (a decision all must share)."""
  if jax.process_count() == 1:
    return value
  return type(value)(np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value))))


def sync(name):
  """A barrier: returns once every process has reached `sync(name)`."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
