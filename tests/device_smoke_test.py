"""The model, the train step and checkpoints on whatever device JAX has.

No dataset and no TensorFlow: random pixels, so that bench/device_check.sh
can run these first on an accelerator (they run in CI on the CPU too), and
no assumption about how many devices there are.
"""

import jax
import numpy as np

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import parallel
from aesthetix.training import checkpoint
from aesthetix.training import forward
from aesthetix.training import optim
from aesthetix.training import steps
from tests import tiny


def random_batch(plan, n, seed=0):
  rng = np.random.default_rng(seed)
  s = plan.data.image_size
  outputs = len(plan.output_names)
  return {'image': rng.integers(0, 256, (n, s, s, 3), np.uint8),
          'target': rng.random((n, outputs), np.float32),
          'mask': np.ones(n, bool), 'index': np.arange(n, dtype=np.int32)}


def test_stage2_steps_lower_the_loss_and_a_checkpoint_restores_them(tmp_path):
  plan = tiny.plan(tiny.config(tmp_path / 'unused_data'))
  model = model_lib.build_model(plan.model)
  state = steps.initial_state(plan, model, jax.random.PRNGKey(0))
  stage = plan.stage('stage2')
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  step = steps.make_train_step(model, optimizer, labels)
  batch = random_batch(plan, parallel.device_count() * 4)
  device_batch = parallel.put_batch(batch)
  replicated = parallel.replicate(steps.stage_state(state, optimizer))
  losses = []
  for _ in range(4):  # The same batch: the loss must fall.
    replicated, m = step(replicated, device_batch)
    m = parallel.unreplicate(m)
    losses.append(float(m['loss_sum'] / m['count']))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses

  host = parallel.unreplicate(replicated)
  mngr = checkpoint.manager(str(tmp_path / 'run'))
  checkpoint.save(mngr, 1, host, dict(stage_index=1, stage='stage2', epoch=1))
  checkpoint.finish(mngr)
  restored = checkpoint.restore(mngr, 1, host)
  for a, b in zip(jax.tree_util.tree_leaves(host), jax.tree_util.tree_leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  predict = forward.make_predict_step(model)
  pred = parallel.local_rows(predict(parallel.replicate(restored['params']), device_batch))
  assert pred.shape == (len(batch['mask']), 12)
  assert np.all((pred >= 0) & (pred <= 1))
