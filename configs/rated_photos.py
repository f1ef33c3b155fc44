"""The paper's schedule on your own rated photos. `--config=configs/rated_photos.py[:variant]`.

  python run.py --config=configs/rated_photos.py --workdir=W --config.dataset.manual_dir=DIR

DIR holds the photos, the ratings file and dataset.json
(data_builders/rated_photos/ratings.py). The output layer has one unit per
declared output, read from dataset.json into `dataset.outputs` when the run
starts (and kept in W/config.json). The rest is AADB's setup: the paper's
two stages, and AADB's dropout (the dataset with attributes of mixed ranges,
as a user's are likely to be).
"""

from ml_collections import config_dict

from configs import aadb
from configs import common


def get_config(variant=None):
  config = common.base_config('rated_photos', dropout=aadb.get_config().model.dropout,
                              table2_output=None, variant=variant)
  # ((name, lo, hi), ...), the overall score first; None: read from dataset.json.
  config.dataset.outputs = config_dict.placeholder(tuple)
  return config
