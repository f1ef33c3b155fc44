"""A user's own rated photos: a folder of photos, a ratings file and dataset.json.

The folder's layout and files are described in `ratings.py`. Each example
holds the photo, its path in the folder as `id`, its targets in the declared
scale (means over its votes in "rows": "votes" mode), the vote count and each
output's standard deviation over the votes (0 for one row per photo). Photos
are stored as other builders store theirs: a plain upright RGB JPEG byte for
byte; any other (PNG, WebP, CMYK, a rotated EXIF orientation, ...) read as
`--mode=predict` reads it (aesthetix.images) and stored as a JPEG of quality
`manual_files.JPEG_QUALITY`.

The builder config is named by a digest of dataset.json and the ratings file
(`r<digest>`): a changed ratings file is a new dataset, built beside the old
one, never mixed with it. The declared outputs, the overall score, the split
and what was skipped are in the prepared dataset's metadata.

  tfds build data_builders/rated_photos --manual_dir=DIR --data_dir=D \\
      --config='{"manual_dir": "DIR"}'

(`run.py` builds it on first use: `--config=configs/rated_photos.py
--config.dataset.manual_dir=DIR`.) Nothing in DIR is written.
"""

import dataclasses
import io
import os
import pathlib
import sys

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

try:
  from aesthetix.data import images as images_lib
  from aesthetix.data import targets
  from data_builders import features
  from data_builders import manual_files
  from data_builders.rated_photos import ratings
except ImportError:  # `tfds build data_builders/rated_photos` puts only data_builders/ on sys.path.
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  from aesthetix.data import images as images_lib
  from aesthetix.data import targets
  from data_builders import features
  from data_builders import manual_files
  from data_builders.rated_photos import ratings

NAME = 'rated_photos'
EXIF_ORIENTATION = 0x0112
UPRIGHT = 1

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Give the folder of your photos (any layout, any format Pillow reads) holding
dataset.json (each output's name and range) and the ratings file (a CSV with
an `image` column and one column per output). See data_builders/rated_photos/ratings.py.
"""


@dataclasses.dataclass(eq=False)
class RatedPhotosConfig(tfds.core.BuilderConfig):
  """A folder's outputs, named after its files' digest (see the module's docstring).

  Made from `manual_dir` (its dataset.json and ratings file); `outputs` are
  ((name, lo, hi), ...), the overall score first.
  """
  name: str = ''
  manual_dir: str = ''
  outputs: tuple = ()

  def __post_init__(self):
    if self.manual_dir and not self.outputs:
      spec = ratings.read_spec(self.manual_dir)
      self.outputs = spec.outputs
      self.name = self.name or 'r' + ratings.fingerprint(self.manual_dir, spec)
    self.outputs = tuple((str(n), float(lo), float(hi)) for n, lo, hi in self.outputs)
    self.description = self.description or 'Outputs: ' + ', '.join(
        f'{n} in [{lo:g}, {hi:g}]' for n, lo, hi in self.outputs)


# `tfds build` takes a JSON --config only for a builder with configs; this one
# stands for "give --config='{"manual_dir": "DIR"}'" and refuses to build.
_NO_FOLDER = RatedPhotosConfig(name='give_the_folder', outputs=(('score', 0.0, 1.0),))


def upright_jpeg(path):
  """JPEG bytes of the photo at `path` as the model should see it (see the module)."""
  with open(path, 'rb') as f:
    data = f.read()
  with Image.open(io.BytesIO(data)) as im:
    plain = (im.format == 'JPEG' and im.mode == 'RGB'
             and im.getexif().get(EXIF_ORIENTATION, UPRIGHT) == UPRIGHT)
  if plain:
    return manual_files.checked_jpeg(data, path)  # Decodes it whole: a truncated file fails.
  out = io.BytesIO()
  Image.fromarray(images_lib.load_image(path)).save(
      out, format='JPEG', quality=manual_files.JPEG_QUALITY)
  return out.getvalue()


class Builder(tfds.core.GeneratorBasedBuilder):
  """Photos rated by their owners: an overall score and any attributes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [_NO_FOLDER]
  REQUIRED_MANUAL = (('dataset.json', (ratings.SPEC_FILE,)),)

  def __init__(self, *, manual_dir=None, skip_unreadable=False, config=None, **kwargs):
    """manual_dir: the photos' folder (it makes the config); skip_unreadable:
    leave out (and report) photos that are missing or do not decode."""
    if config is None and manual_dir:
      config = RatedPhotosConfig(manual_dir=str(manual_dir))
    self.skip_unreadable = skip_unreadable
    super().__init__(config=config, **kwargs)

  def _info(self):
    outputs = self.builder_config.outputs
    spec = targets.declared_spec(NAME, outputs)
    names = spec.output_names
    return self.dataset_info_from_configs(
        description=__doc__,
        features=features.example_features(
            spec, id_doc='The photo\'s path in the folder.',
            label_doc='Mean over the photo\'s ratings, in {range}.',
            vote_count=tfds.features.Scalar(np.int32, doc='Rows (votes) of the photo.'),
            label_std=tfds.features.FeaturesDict({
                n: tfds.features.Scalar(np.float32, doc='Standard deviation over the votes '
                                        '(ddof 0).') for n in names})),
        supervised_keys=None,
        metadata=tfds.core.MetadataDict(outputs=[list(o) for o in outputs]),
    )

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    if self.builder_config.name == _NO_FOLDER.name:
      raise ratings.RatingsError(
          f'Give the folder as the config: tfds build data_builders/rated_photos '
          f'--manual_dir={manual_dir} --config=\'{{"manual_dir": "{manual_dir}"}}\'.')
    spec, photos, missing = ratings.read(manual_dir, skip_missing=self.skip_unreadable)
    if spec.outputs != self.builder_config.outputs:
      raise ratings.RatingsError(
          f'{os.path.join(manual_dir, ratings.SPEC_FILE)} declares '
          f'{", ".join(spec.names)}, not the {", ".join(o[0] for o in self.builder_config.outputs)} '
          f'of config {self.builder_config.name}: build with this folder\'s config.')
    self.info.metadata['split'] = (
        {'column': spec.split_column} if spec.split_column else spec.split_fractions)
    self.info.metadata['rows'] = spec.rows
    self.info.metadata['skipped'] = {'missing': missing}
    if missing:
      logging.warning('%s: left out %d photo(s) named in %s but not in the folder: %s',
                      NAME, len(missing), spec.ratings, ', '.join(missing))
    return {s: self._generate_examples(s, manual_dir, spec, [p for p in photos if p.split == s])
            for s in ratings.SPLITS}

  def _generate_examples(self, split, manual_dir, spec, photos):
    where = os.path.join(manual_dir, spec.ratings)
    skipped = []
    for photo in photos:
      path = os.path.join(manual_dir, photo.path)
      try:
        image = upright_jpeg(path)
      except (images_lib.ImageError, manual_files.UnreadableImageError, OSError) as e:
        if not self.skip_unreadable:
          raise ratings.RatingsError(
              f'{where}, line {photo.line}: photo {photo.path!r} cannot be read ({e}). '
              'Replace it, remove its row, or build with skip_unreadable=True '
              '(--config.dataset.skip_unreadable=True) to leave it out.') from e
        logging.warning('Skipping unreadable photo %s: %s', path, e)
        skipped.append(photo.path)
        continue
      yield photo.path, {
          'image': image, 'id': photo.path,
          'labels': dict(zip(spec.names, photo.values)),
          'vote_count': photo.votes,
          'label_std': dict(zip(spec.names, photo.std)),
      }
    self.info.metadata['skipped'][split] = skipped
    if skipped:
      logging.warning('%s: skipped %d of %d photos of %s as unreadable.', NAME, len(skipped),
                      len(photos), split)
