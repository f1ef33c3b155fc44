"""The two-stage schedule on the synthetic demo dataset: minutes on a laptop CPU.

`python run.py --config=configs/demo.py --workdir=/tmp/demo`. The backbone
starts from Keras' ImageNet VGG16 weights when they are in the Keras cache, and
from random weights otherwise (logged); the schedule is the paper's, on small
images.
"""

from configs import common


def get_config(variant=None):
  config = common.base_config('synthetic_aesthetics', dropout=0.35,
                              table2_output=780, variant=variant)
  config.dataset.image_size = 64
  config.model.backbone_weights = 'imagenet_if_present'
  return config
