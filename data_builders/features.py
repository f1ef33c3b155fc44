"""The feature layout every builder shares: the image, its id, and its targets."""

import numpy as np
import tensorflow_datasets as tfds

from aesthetix.data import targets


def example_features(dataset, *, id_doc, label_doc='In {range}.', **extra):
  """FeaturesDict with 'image' (JPEG), 'id', 'labels' {output name: float32} and `extra`.

  `dataset`: a name, or the `targets.DatasetSpec` of outputs its data declares.
  Labels are stored in the dataset's own scale; `label_doc` may use {range}.
  """
  spec = dataset if isinstance(dataset, targets.DatasetSpec) else targets.spec(dataset)
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'id': tfds.features.Text(doc=id_doc),
      'labels': tfds.features.FeaturesDict({
          n: tfds.features.Scalar(np.float32, doc=label_doc.format(range=spec.ranges[n]))
          for n in spec.output_names}),
      **extra,
  })
