"""A small synthetic aesthetics dataset in AADB's layout, generated in seconds.

Scenes are drawn by `scene.render`, encoded as JPEG, decoded again, and their
11 attribute scores measured from those decoded pixels (`scene.measure`), so a
label never carries information the image lacks. The overall score combines
the attributes with noise (`scene.overall_score`). Everything is seeded by
(SEED, split, example index): a build is identical everywhere.

Sizes (constants below, overridable through the constructor): 600 train, 100
validation and 200 test images of 64x64 pixels.
"""

import io
import pathlib
import sys

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

try:
  from aesthetix.data import targets
  from data_builders import features
  from data_builders.synthetic_aesthetics import scene
except ImportError:  # `tfds build data_builders/synthetic_aesthetics` puts only data_builders/ on sys.path.
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  from aesthetix.data import targets
  from data_builders import features
  from data_builders.synthetic_aesthetics import scene

NAME = 'synthetic_aesthetics'
SPLIT_SIZES = {'train': 600, 'validation': 100, 'test': 200}
IMAGE_SIZE = 64  # Pixels per side.
SEED = 0
JPEG_QUALITY = 95
_SPLIT_STREAMS = {'train': 0, 'validation': 1, 'test': 2}  # Seeds differ per split.


def make_example(split, index, image_size):
  """(JPEG bytes, {name: score}) for example `index` of `split`; deterministic."""
  rng = np.random.default_rng([SEED, _SPLIT_STREAMS[split], index])
  pixels = np.round(scene.render(rng, image_size) * 255).astype(np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format='JPEG', quality=JPEG_QUALITY)
  jpeg = out.getvalue()
  seen = np.asarray(Image.open(io.BytesIO(jpeg)).convert('RGB'), np.float64) / 255
  labels = scene.measure(seen)
  labels['score'] = scene.overall_score(labels, rng.normal(0.0, scene.OVERALL_NOISE))
  return jpeg, labels


class Builder(tfds.core.GeneratorBasedBuilder):
  """Synthetic scenes with pixel-measured AADB-style attribute scores."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def __init__(self, *, split_sizes=None, image_size=IMAGE_SIZE, **kwargs):
    """split_sizes: {split: count} (default SPLIT_SIZES); image_size: pixels per side."""
    self.split_sizes = dict(split_sizes or SPLIT_SIZES)
    self.image_size = image_size
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=features.example_features(NAME, id_doc='<split>_<index>.'),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {s: self._generate_examples(s, n) for s, n in self.split_sizes.items()}

  def _generate_examples(self, split, count):
    spec = targets.spec(NAME)
    for i in range(count):
      jpeg, labels = make_example(split, i, self.image_size)
      name = f'{split}_{i:05d}'
      yield name, {'image': jpeg, 'id': name,
                   'labels': {n: np.float32(labels[n]) for n in spec.output_names}}
