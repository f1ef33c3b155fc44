"""All of the data-parallel plumbing: pmap, collectives, batch sharding, replication.

Everything that knows how work is spread over devices lives here, so that a
move from `pmap` to `jit` over a device mesh is a change to this file alone.
A host batch [B, ...] is split into [local devices, B / devices, ...].
"""

import collections
import itertools

from absl import logging
import flax.jax_utils
import jax
import numpy as np

AXIS = 'batch'
# Batch entries that stay on the host (strings, not arrays for devices).
HOST_ONLY_KEYS = ('id',)


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


def pmap(fn, donate_argnums=(), num_devices=None):
  """`fn` run on every local device (or the first `num_devices`), collectives over `AXIS`."""
  return jax.pmap(fn, axis_name=AXIS, donate_argnums=donate_argnums,
                  devices=local_devices(num_devices) if num_devices else None)


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
