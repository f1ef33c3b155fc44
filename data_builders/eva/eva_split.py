"""The EVA split: a seeded function of the image ids that have votes.

EVA has no official split. The paper follows earlier work with 3,500 training
and 570 test images out of the ~4,070 images with filtered votes. Without the
release the id list is not known in advance, so the split is defined here as a
function of it: sort the ids numerically, permute them with a fixed seed, take
the first `num_test` for test, the next `num_validation` for validation (carved
from the 3,500 training images), and the rest for training. Every user with the
same release gets the same lists; the build records them in the dataset's
metadata.
"""

import numpy as np

# Earlier work on EVA (followed by the paper): 570 test images.
NUM_TEST = 570
# Validation carved out of the 3,500 training images: 10 % of them.
NUM_VALIDATION = 350
# Fixed once, for everyone: changing it changes the benchmark.
SEED = 20200

SPLITS = ('train', 'validation', 'test')


def id_sort_key(image_id):
  """Numeric ids in numeric order, any others after them in text order."""
  return (0, int(image_id), image_id) if image_id.isdigit() else (1, 0, image_id)


def split_ids(image_ids, *, num_test=NUM_TEST, num_validation=NUM_VALIDATION,
              seed=SEED):
  """{'train', 'validation', 'test'} -> sorted lists of ids; disjoint, covering `image_ids`."""
  ids = sorted(set(image_ids), key=id_sort_key)
  if len(ids) != len(image_ids):
    raise ValueError(f'{len(image_ids) - len(ids)} duplicate image ids.')
  if num_test < 1 or num_validation < 0 or num_test + num_validation >= len(ids):
    raise ValueError(
        f'Cannot take {num_test} test and {num_validation} validation images '
        f'from {len(ids)} and leave some for training.')
  order = np.random.default_rng(seed).permutation(len(ids))
  cut = {'test': order[:num_test],
         'validation': order[num_test:num_test + num_validation],
         'train': order[num_test + num_validation:]}
  return {s: sorted((ids[i] for i in cut[s]), key=id_sort_key) for s in SPLITS}
