"""What a run's data is: the dataset, its targets and splits, and how images are sized.

One immutable value, resolved once from the config (aesthetix/training/plan.py)
and passed to everything that reads or shows the data: the input pipeline, the
builders, the scoring of photos, the report.
"""

import dataclasses
from typing import Any, Mapping, Optional

from aesthetix.data import targets
from aesthetix.runtime import errors
from aesthetix.runtime import frozen


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """A dataset as a run uses it.

  Attributes:
    targets: the dataset's outputs, their order and ranges (`targets.DatasetSpec`).
    image_size: side of the square images the model sees, pixels.
    resize_method: how stored images are resized to it (`data.resize`).
    train_split, val_split, test_split: the dataset's split names.
    data_dir, manual_dir: where TFDS keeps the built data and where the user
      placed the downloads (None: the TFDS defaults).
    drop_val_test_overlap: leave AADB's 127 test images out of validation.
    max_train_examples: the first N training examples only (0: all).
    skip_unreadable: a build leaves out unreadable images instead of failing.
    builder_kwargs: extra keyword arguments of the TFDS builder (read-only).
    cache_decoded: keep decoded, resized training images in memory.
  """
  targets: targets.DatasetSpec
  image_size: int
  resize_method: str = 'bilinear'
  train_split: str = 'train'
  val_split: str = 'validation'
  test_split: str = 'test'
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  drop_val_test_overlap: bool = False
  max_train_examples: int = 0
  skip_unreadable: bool = False
  builder_kwargs: Optional[Mapping[str, Any]] = None
  cache_decoded: bool = False

  def __post_init__(self):
    object.__setattr__(self, 'builder_kwargs', frozen.freeze(self.builder_kwargs))

  @property
  def name(self):
    return self.targets.name

  @property
  def splits(self):
    """(train, validation, test) split names."""
    return (self.train_split, self.val_split, self.test_split)

  def builder_arguments(self):
    """The builder's extra keyword arguments as plain values ({} when none)."""
    return frozen.thaw(self.builder_kwargs) or {}


def folder_problem(name, manual_dir, skip_unreadable=False):
  """Why the folder of dataset `name`, when its user declares its outputs (rated
  photos), cannot be built: every problem of its dataset.json, its ratings
  file and the photos that file names (data_builders/rated_photos/ratings.py),
  listed at once with file and line; None when there is none or `name` is
  another dataset. Pure Python: run.py calls it before JAX loads."""
  if name not in targets.DECLARED:
    return None
  if not manual_dir:
    return (f'{name}: give the folder of the photos, their ratings and dataset.json with '
            '--config.dataset.manual_dir=DIR')
  from data_builders.rated_photos import ratings  # pylint: disable=g-import-not-at-top
  try:
    ratings.read(manual_dir, skip_missing=skip_unreadable)
  except ratings.RatingsError as e:
    return str(e)
  return None


def dataset_targets(name, outputs=None, manual_dir=None):
  """The `targets.DatasetSpec` of dataset `name`: a known dataset's, or the
  outputs a user's rated photos declare: `outputs` ((name, lo, hi), ...) when
  given, else those of `manual_dir`/dataset.json."""
  if name not in targets.DECLARED:
    return targets.spec(name)
  if not outputs:
    if not manual_dir:
      raise errors.ConfigError(f'{name}: give the folder of the photos, their ratings and '
                               'dataset.json with --config.dataset.manual_dir=DIR.')
    from data_builders.rated_photos import ratings  # pylint: disable=g-import-not-at-top
    outputs = ratings.read_spec(manual_dir).outputs
  return targets.declared_spec(name, outputs)
