"""The paper's schedule on your own rated photos. `--config=configs/rated_photos.py[:variant]`.

  python run.py --config=configs/rated_photos.py --workdir=W --config.dataset.manual_dir=DIR

DIR holds the photos, the ratings file and dataset.json
(data_builders/rated_photos/ratings.py). The output layer has one unit per
declared output, read from dataset.json into `dataset.outputs` when the run
starts (and kept in W/config.json). The rest is AADB's setup: the paper's
two stages, and AADB's dropout (the dataset with attributes of mixed ranges,
as a user's are likely to be).

`configs/rated_photos.py:few_photos` is the schedule for a few hundred photos
started from a trained model (`--config.init_from=W`): FEW_PHOTOS below
(measured: BENCHMARKS.md, "Starting from a trained model").
"""

from ml_collections import config_dict

from configs import aadb
from configs import common

FEW_PHOTOS_VARIANT = 'few_photos'
# Batches of 16: a few hundred photos in batches of 64 make a handful of steps
# per epoch. No stage 2: the backbone comes fine-tuned from W, and fine-tuning
# it again on a few hundred photos costs most of the run (stage 2 trains at
# about 1.5 images/s on a 2-core CPU, stage 1 on cached features at hundreds).
FEW_PHOTOS = {'stage1.batch_size': 16, 'stage2.batch_size': 16, 'stage2.epochs': 0,
              'stage2.trainable_layers': ()}


def get_config(variant=None):
  few = variant == FEW_PHOTOS_VARIANT
  config = common.base_config('rated_photos', dropout=aadb.get_config().model.dropout,
                              table2_output=None, variant=None if few else variant)
  # ((name, lo, hi), ...), the overall score first; None: read from dataset.json.
  config.dataset.outputs = config_dict.placeholder(tuple)
  if few:
    for dotted, value in FEW_PHOTOS.items():
      common.set_field(config, dotted, value)
  return config
