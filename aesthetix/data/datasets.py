"""The datasets aesthetix reads, their TFDS builders, and whether they can be had here.

One table, `BUILDERS`, names the builder of every dataset (data_builders/NAME);
`builder(data)` returns it prepared, building it from the user's downloads
when it is not built yet, and `data_problem(data)` says, before a run starts,
why a dataset can be neither read nor built (nothing is built or written by
that check). TensorFlow only reads the data: the accelerators belong to JAX.
"""

import inspect
import os

from absl import logging
import jax
import tensorflow as tf
import tensorflow_datasets as tfds

from aesthetix.data import spec as data_spec
from aesthetix.runtime import errors
from data_builders import manual_files
from data_builders.aadb import aadb_dataset_builder
from data_builders.eva import eva_dataset_builder
from data_builders.rated_photos import rated_photos_dataset_builder
from data_builders.rated_photos import ratings
from data_builders.synthetic_aesthetics import synthetic_aesthetics_dataset_builder


def _hide_gpus_from_tf():
  """TF only feeds data here; the accelerators belong to JAX."""
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TF already initialised its devices; nothing to do then.
    pass


_hide_gpus_from_tf()

# Dataset name -> its TFDS builder class.
BUILDERS = {
    'aadb': aadb_dataset_builder.Builder,
    'eva': eva_dataset_builder.Builder,
    'synthetic_aesthetics': synthetic_aesthetics_dataset_builder.Builder,
    'rated_photos': rated_photos_dataset_builder.Builder,
}
MANUAL_DIR_FLAGS = ('--config.dataset.manual_dir=DIR (training) or --manual_dir=DIR '
                    '(--mode=evaluate)')


class DataError(errors.UserError, FileNotFoundError):
  """A dataset that cannot be read or built here; the message says what to place where."""


def builder_class(name):
  """The `Builder` class of dataset `name`."""
  if name not in BUILDERS:
    raise DataError(f'No builder for dataset {name!r}; known: {", ".join(sorted(BUILDERS))}.')
  return BUILDERS[name]


def new_builder(data):
  """The builder of `data` (a DataSpec), not prepared."""
  cls = builder_class(data.name)
  kwargs = {}
  parameters = inspect.signature(cls.__init__).parameters
  if 'skip_unreadable' in parameters:
    kwargs['skip_unreadable'] = data.skip_unreadable
  if 'manual_dir' in parameters:  # A builder whose config its folder makes.
    kwargs['manual_dir'] = data.manual_dir
  kwargs.update(data.builder_arguments())
  return cls(data_dir=data.data_dir, **kwargs)


def data_problem(data, manual_dir_flag=MANUAL_DIR_FLAGS):
  """Why the dataset `data` can be neither read nor built here, or None (a check
  before a run starts: nothing is built or written). A user's folder of rated
  photos is read whole: every problem of its ratings is listed.
  `manual_dir_flag`: the flag the message names for the downloads' folder."""
  try:
    b = new_builder(data)
  except ratings.RatingsError as e:  # A user's folder of rated photos.
    return str(e)
  if b.is_prepared():
    return None
  folder = data_spec.folder_problem(data.name, data.manual_dir, data.skip_unreadable)
  if folder:
    return folder
  manual_dir = data.manual_dir or os.path.join(os.path.dirname(os.path.dirname(
      b.data_dir)), 'downloads', 'manual')
  missing = manual_files.missing_sources(
      manual_dir, getattr(type(b), 'REQUIRED_MANUAL', ()))
  if not missing:
    return None
  return (f'{data.name} is not built in {b.data_dir}, and its downloads are not in the '
          f'manual dir: {"; ".join(missing)}. Place them there (README: Training on AADB '
          f'and EVA), or give their folder with {manual_dir_flag}')


def builder(data):
  """The builder of `data`, prepared first when it is not built yet.

  The build reads downloads from `data.manual_dir` (None: the TFDS default,
  <data_dir>/downloads/manual) and writes to `data.data_dir`.
  """
  b = new_builder(data)
  if b.is_prepared():
    return b
  if jax.process_count() > 1:
    raise DataError(
        f'Dataset {data.name} is not built in {b.data_dir}. Build it once before a '
        f'multi-process run: tfds build data_builders/{data.name} '
        f'--data_dir={data.data_dir or "~/tensorflow_datasets"} --manual_dir=DIR')
  problem = data_problem(data)
  if problem:
    raise DataError(problem + '.')
  logging.info('Preparing %s in %s (manual dir: %s).', data.name, b.data_dir,
               data.manual_dir or 'TFDS default')
  download_config = tfds.download.DownloadConfig(manual_dir=data.manual_dir)
  try:
    b.download_and_prepare(download_config=download_config)
  except AssertionError as e:  # TFDS' way of saying the manual dir is missing or empty.
    raise DataError(
        f'Cannot build {data.name}: {e} Give the folder holding the downloaded files with '
        f'{MANUAL_DIR_FLAGS}.') from e
  return b
