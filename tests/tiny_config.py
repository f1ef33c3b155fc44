"""`tests/tiny.py`'s config as a config file, for the tests that start run.py.

  python run.py --config=tests/tiny_config.py --config.dataset.data_dir=DIR ...

Its splits are uneven (22 training examples in global batches of 8, 7
validation and 7 test examples), so that a run on two processes has parts of
different sizes and a last global batch that one process fills only in part.
"""

from tests import tiny

SPLIT_SIZES = {'train': 22, 'validation': 7, 'test': 7}


def get_config():
  config = tiny.config('')
  config.dataset.builder_kwargs = {'split_sizes': dict(SPLIT_SIZES),
                                   'image_size': tiny.IMAGE_SIZE}
  return config
