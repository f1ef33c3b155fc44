"""A tiny synthetic dataset and demo config for the training tests."""

from aesthetix.training import plan as plan_lib
from configs import demo

IMAGE_SIZE = 32
SPLIT_SIZES = {'train': 24, 'validation': 8, 'test': 16}
BATCH_SIZE = 8


def config(data_dir, stage1_epochs=2, stage2_epochs=2):
  """The demo config shrunk to seconds: 32x32 images, a few dozen examples."""
  c = demo.get_config()
  c.dataset.data_dir = str(data_dir)
  c.dataset.builder_kwargs = {'split_sizes': dict(SPLIT_SIZES), 'image_size': IMAGE_SIZE}
  c.dataset.image_size = IMAGE_SIZE
  c.model.backbone_weights = 'random'
  c.stage1.epochs, c.stage2.epochs = stage1_epochs, stage2_epochs
  c.stage1.batch_size = c.stage2.batch_size = c.eval_batch_size = BATCH_SIZE
  # 3 steps per epoch: let stage 2's decay act within the test.
  c.stage2.decay_steps = 2
  return c


def plan(config):
  """The resolved `Plan` of a config (what the library's functions take)."""
  return plan_lib.resolve(config)
