"""bench/xla_cpu_options.py at toy sizes: a variant's options reach the compiled
program, and the layout re-implementation computes the model's numbers."""

import jax
import jax.numpy as jnp
import numpy as np

from aesthetix.runtime import parallel
from bench import xla_cpu_options as options

SIZE, BATCH = 32, 2  # 32x32 passes through all five VGG16 blocks.


def compiled_text(variant):
  """The optimised HLO of a small convolution compiled with `variant`'s options."""
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=options.NHWC))
  # 64 channels: XLA leaves a convolution smaller than about this one to itself.
  lowered = conv.lower(jnp.zeros((1, 16, 16, 64)), jnp.zeros((3, 3, 64, 64)))
  with options.options_in_place(options.compile_options(variant)):
    return parallel.compile_lowered(lowered).as_text()


def test_a_variants_options_reach_the_program_train_compiles():
  # XLA's defaults hand the convolution to a YNNPACK fusion; aesthetix's do not.
  assert '__ynn_fusion' in compiled_text(options.BY_NAME['xla_defaults'])
  assert '__ynn_fusion' not in compiled_text(options.BY_NAME[options.REFERENCE])
  assert '__ynn_fusion' not in compiled_text(options.BY_NAME['fast_math'])
  assert options.compile_options(options.BY_NAME['fast_math']) == {
      **parallel.compiler_options(), 'xla_cpu_enable_fast_math': True}
  assert parallel.compiler_options() == {parallel.YNN_FUSION_OPTION: ''}  # Put back.


def test_the_layout_reimplementation_computes_the_models_numbers():
  plan, model, state, images, targets = options.setup(SIZE, 'float32', BATCH)
  _, features = options.forward_program(model, state['params'], images)
  for layout in (options.NHWC, options.NCHW):
    _, ours = options.layout_forward_program(state, images, layout)
    np.testing.assert_allclose(ours, features, rtol=1e-5, atol=1e-5)
  updates = {}
  for layout in (options.NHWC, options.NCHW):
    step, updates[layout] = options.layout_step_program(plan, model, state, images,
                                                        targets, layout)
    step()
    step()
  nhwc, nchw = updates[options.NHWC](), updates[options.NCHW]()
  assert set(nhwc) == {'block4_conv2', 'block4_conv3', 'fc1', 'fc2', 'output'}
  assert options.relative_difference(nchw, nhwc) < 1e-4
  # Two Adam steps of 1e-4: every trained kernel moved, none by more than 2e-4.
  for name, update in nhwc.items():
    assert 0 < np.abs(update).max() <= 2e-4 * 1.01, name
  assert options.relative_difference({'a': np.ones(3)}, {'a': np.array([1.0, 1.0, 2.0])}) == 0.5
