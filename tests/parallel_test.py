"""The data-parallel plumbing in one process: programs, placement, gathers, start-up.

The multi-process side (several run.py processes on 127.0.0.1) is in
multiprocess_test.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetix.runtime import errors
from aesthetix.runtime import parallel


def conv_step(params, batch):
  y = jax.lax.conv_general_dilated(batch['x'], params['w'], (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return parallel.psum(jnp.sum(jax.nn.relu(y)))


def conv_program():
  return parallel.per_device(conv_step, in_specs=(parallel.REPLICATED, parallel.SHARDED),
                             out_specs=parallel.REPLICATED)


def test_program_compiles_once_per_input_signature_and_sums_over_devices():
  step = conv_program()
  weights = {'w': np.ones((3, 3, 4, 8), np.float32)}
  params = parallel.replicate(weights)
  n = parallel.device_count()
  assert n == 2
  small = {'x': np.random.default_rng(0).normal(size=(2 * n, 8, 8, 4)).astype(np.float32)}
  big = {'x': np.ones((3 * n, 8, 8, 4), np.float32)}
  first = parallel.unreplicate(step(params, parallel.put_batch(small)))
  assert step.compile(params, parallel.put_batch(small)) is step.compile(
      params, parallel.put_batch(dict(small)))
  assert step.compile(params, parallel.put_batch(big)) is not step.compile(
      params, parallel.put_batch(small))
  # psum over the devices' slices is the sum over the whole batch.
  y = jax.lax.conv_general_dilated(small['x'], weights['w'], (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(first, np.sum(np.maximum(y, 0)), rtol=1e-5)


def test_cpu_programs_use_eigen_convolutions_unless_xla_flags_choose(monkeypatch):
  step = conv_program()
  params = parallel.replicate({'w': np.ones((3, 3, 4, 8), np.float32)})
  batch = parallel.put_batch({'x': np.ones((2 * parallel.device_count(), 8, 8, 4),
                                           np.float32)})
  assert parallel.compiler_options() == {parallel.YNN_FUSION_OPTION: ''}
  hlo = step.compile(params, batch).as_text()
  assert ' convolution(' in hlo and '__ynn_fusion' not in hlo
  monkeypatch.setenv('XLA_FLAGS', f'--{parallel.YNN_FUSION_OPTION}=individual_convolution')
  assert parallel.compiler_options() is None


def test_batches_split_over_devices_and_come_back_in_order():
  rows = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
  batch = parallel.put_batch({'x': rows, 'id': np.array(['a'] * 8, dtype=object)})
  assert set(batch) == {'x'}  # Host-only entries stay on the host.
  assert [s.data.shape for s in batch['x'].addressable_shards] == [(4, 3), (4, 3)]
  identity = parallel.per_device(lambda b: b['x'] * 2, in_specs=(parallel.SHARDED,),
                                 out_specs=parallel.SHARDED)
  np.testing.assert_array_equal(parallel.local_rows(identity(batch)), rows * 2)
  state = {'w': np.arange(3.0), 'step': np.int32(7)}
  back = parallel.unreplicate(parallel.replicate(state))
  np.testing.assert_array_equal(back['w'], state['w'])
  assert back['step'] == 7 and isinstance(back['w'], np.ndarray)


def test_an_uneven_batch_is_refused_with_the_device_count():
  with pytest.raises(errors.ConfigError, match='Batch size 7 does not split evenly over 1 '
                     r'process\(es\) x 2 device\(s\)'):
    parallel.host_batch_size(7)
  assert parallel.host_batch_size(8) == 8


def test_gather_examples_drops_padding_and_checks_every_example_once():
  index = np.array([2, 0, -1, 1, -1])
  values = np.array([[20.], [0.], [99.], [10.], [99.]])
  rows = parallel.gather_examples(index, {'v': values}, total=3)
  np.testing.assert_array_equal(rows['v'][:, 0], [0., 10., 20.])
  with pytest.raises(RuntimeError, match='not each example once'):
    parallel.gather_examples(np.array([0, 0, 1]), {'v': values[:3]}, total=3)
  with pytest.raises(RuntimeError, match='not each example once'):
    parallel.gather_examples(index, {'v': values}, total=4)
  with pytest.raises(TypeError, match='Only numeric arrays'):
    parallel.gather_processes(np.array(['a', 'b'], dtype=object))


def test_split_ranges_cover_every_item_once_as_tfds_cuts_them():
  for n in (0, 1, 7, 16, 570):
    for count in (1, 2, 3, 4):
      ranges = [parallel.split_range(n, i, count) for i in range(count)]
      assert ranges[0][0] == 0 and ranges[-1][1] == n
      assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
      sizes = [end - start for start, end in ranges]
      assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_single_process_start_up_without_a_cluster(monkeypatch):
  monkeypatch.delenv(parallel.COORDINATOR_ENV, raising=False)
  monkeypatch.setattr(parallel, 'detected_cluster', lambda: None)
  assert parallel.initialize() == parallel.describe()
  assert parallel.describe().startswith('process 0 of 1, 2 local device(s), 2 global')


@pytest.mark.parametrize('kwargs, message', [
    (dict(coordinator_address='127.0.0.1:1234', process_id=0), '--num_processes'),
    (dict(num_processes=2, process_id=0), '--coordinator_address'),
    (dict(coordinator_address='localhost', num_processes=2, process_id=0), 'HOST:PORT'),
    (dict(coordinator_address='127.0.0.1:1234', num_processes=2, process_id=2),
     r'must lie in \[0'),
])
def test_incomplete_multi_process_flags_are_refused_before_any_start(monkeypatch, kwargs,
                                                                      message):
  monkeypatch.delenv(parallel.COORDINATOR_ENV, raising=False)
  with pytest.raises(parallel.DistributedError, match=message):
    parallel.initialize(**kwargs)


def test_a_coordinator_address_in_the_environment_asks_for_multi_process(monkeypatch):
  monkeypatch.setenv(parallel.COORDINATOR_ENV, '127.0.0.1:1234')
  with pytest.raises(parallel.DistributedError,
                     match='--num_processes, --process_id as well .JAX_COORDINATOR_ADDRESS'):
    parallel.initialize()
