"""The pmap plumbing: programs compiled once per input signature, with our XLA options."""

import jax
import jax.numpy as jnp
import numpy as np

from aesthetix import parallel


def conv_step(params, batch):
  y = jax.lax.conv_general_dilated(batch['x'], params['w'], (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return parallel.psum(jnp.sum(jax.nn.relu(y)))


def test_program_compiles_once_per_input_signature_and_matches_pmap():
  step = parallel.pmap(conv_step)
  params = parallel.replicate({'w': np.ones((3, 3, 4, 8), np.float32)})
  n = parallel.device_count()
  small = {'x': np.random.default_rng(0).normal(size=(n, 2, 8, 8, 4)).astype(np.float32)}
  big = {'x': np.ones((n, 3, 8, 8, 4), np.float32)}
  first = step(params, small)
  assert step.compile(params, small) is step.compile(params, dict(small))
  assert step.compile(params, big) is not step.compile(params, small)
  plain = jax.pmap(conv_step, axis_name=parallel.AXIS)(params, small)
  np.testing.assert_allclose(first, plain, rtol=1e-5)


def test_cpu_programs_use_eigen_convolutions_unless_xla_flags_choose(monkeypatch):
  step = parallel.pmap(conv_step)
  params = parallel.replicate({'w': np.ones((3, 3, 4, 8), np.float32)})
  batch = {'x': np.ones((parallel.device_count(), 2, 8, 8, 4), np.float32)}
  assert parallel.compiler_options() == {parallel.YNN_FUSION_OPTION: ''}
  hlo = step.compile(params, batch).as_text()
  assert ' convolution(' in hlo and '__ynn_fusion' not in hlo
  monkeypatch.setenv('XLA_FLAGS', f'--{parallel.YNN_FUSION_OPTION}=individual_convolution')
  assert parallel.compiler_options() is None
