"""All of the data-parallel plumbing: pmap, collectives, batch sharding, replication.

Everything that knows how work is spread over devices lives here, so that a
move from `pmap` to `jit` over a device mesh is a change to this file alone.
A host batch [B, ...] is split into [local devices, B / devices, ...].
"""

import collections
import itertools
import os

from absl import logging
import flax.jax_utils
import jax
import numpy as np

AXIS = 'batch'
# Batch entries that stay on the host (strings, not arrays for devices).
HOST_ONLY_KEYS = ('id',)
# XLA:CPU hands convolutions to YNNPACK fusions by default; with the option
# empty they go to its Eigen kernels, which ran the VGG16 forward 23% and the
# stage 2 step 20% faster at 224x224 on the development CPU (BENCHMARKS.md).
YNN_FUSION_OPTION = 'xla_cpu_experimental_ynn_fusion_type'


def initialize_distributed():
  """Starts multi-host JAX when the environment describes a cluster.

  On a single host (no coordinator configured) this does nothing; on Cloud
  TPU pods and SLURM/Open MPI clusters `jax.distributed.initialize()` finds its
  peers by itself.
  """
  try:
    jax.distributed.initialize()
    logging.info('Process %d of %d.', jax.process_index(), jax.process_count())
  except (ValueError, RuntimeError) as e:
    # Raised when no cluster environment is detected: a single-process run.
    logging.info('Single process run (%s).', str(e).splitlines()[0])


def device_count():
  return jax.local_device_count()


def local_devices(count=None):
  """The first `count` local devices (default all), in pmap's order."""
  devices = jax.local_devices()
  return devices if count is None else devices[:count]


def host_batch_size(global_batch_size):
  """This process's share of a global batch; must split evenly over devices."""
  per_host, rest = divmod(global_batch_size, jax.process_count())
  if rest or per_host % device_count():
    raise ValueError(
        f'Batch size {global_batch_size} does not split evenly over '
        f'{jax.process_count()} process(es) x {device_count()} device(s).')
  return per_host


def shard(batch, num_devices=None):
  """Host batch {k: [B, ...]} -> {k: [devices, B / devices, ...]} numpy."""
  n = num_devices or device_count()
  return {k: np.reshape(v, (n, -1) + np.shape(v)[1:])
          for k, v in batch.items() if k not in HOST_ONLY_KEYS}


def unshard(x):
  """[devices, b, ...] (device or host array) -> host numpy [devices * b, ...]."""
  x = np.asarray(jax.device_get(x))
  return x.reshape((-1,) + x.shape[2:])


def prefetch(batches, size=2):
  """Shards host batches and keeps `size` of them in flight to the devices.

  Yields (device batch, host-only entries) pairs.
  """
  queue = collections.deque()

  def enqueue(n):
    for batch in itertools.islice(batches, n):
      host = {k: batch[k] for k in HOST_ONLY_KEYS if k in batch}
      queue.append((jax.tree_util.tree_map(_put_sharded, shard(batch)), host))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)


def _put_sharded(x):
  """[devices, ...] numpy -> one slice per local device, laid out as pmap expects."""
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (AXIS,))
  return jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.P(AXIS)))


def replicate(tree, num_devices=None):
  return flax.jax_utils.replicate(tree, devices=local_devices(num_devices))


def unreplicate(tree):
  """The first device's copy, fetched to the host."""
  return jax.device_get(jax.tree_util.tree_map(lambda x: x[0], tree))


def compiler_options():
  """XLA options for the programs `pmap` compiles: Eigen convolutions on CPU.

  None elsewhere, and when XLA_FLAGS sets the option itself (the user's choice).
  """
  if (jax.default_backend() != 'cpu'
      or YNN_FUSION_OPTION in os.environ.get('XLA_FLAGS', '')):
    return None
  return {YNN_FUSION_OPTION: ''}


class Program:
  """A pmapped function, compiled once per input signature with `compiler_options`.

  Called like the function; `compile(*args)` returns the executable those
  arguments run (for cost analysis and timing).
  """

  def __init__(self, pmapped):
    self._pmapped = pmapped
    self._executables = {}

  def compile(self, *args):
    leaves, tree = jax.tree_util.tree_flatten(args)
    key = (tree, tuple((np.shape(x), np.result_type(x), getattr(x, 'weak_type', False))
                       for x in leaves))
    if key not in self._executables:
      self._executables[key] = compile_lowered(self._pmapped.lower(*args))
    return self._executables[key]

  def __call__(self, *args):
    return self.compile(*args)(*args)


def compile_lowered(lowered):
  """Compiles a lowered program with `compiler_options`, or XLA's defaults
  when this jaxlib lacks them."""
  options = compiler_options()
  if options is None:
    return lowered.compile()
  try:
    return lowered.compile(options)
  except jax.errors.JaxRuntimeError as e:  # A jaxlib without the option.
    if 'No such compile option' not in str(e):
      raise
    logging.warning('XLA has no %s option; compiling with its defaults.', YNN_FUSION_OPTION)
    return lowered.compile()


def pmap(fn, donate_argnums=(), num_devices=None):
  """`fn` run on every local device (or the first `num_devices`), collectives over `AXIS`."""
  return Program(jax.pmap(fn, axis_name=AXIS, donate_argnums=donate_argnums,
                          devices=local_devices(num_devices) if num_devices else None))


def psum(x):
  return jax.lax.psum(x, AXIS)


def pmean(x):
  return jax.lax.pmean(x, AXIS)


def device_index():
  return jax.lax.axis_index(AXIS)


def gather_processes(x):
  """Concatenates per-process host arrays [n_i, ...] over all processes."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.concatenate(list(multihost_utils.process_allgather(np.asarray(x))))


def is_main_process():
  return jax.process_index() == 0
