"""AADB (Kong et al. 2016), built from the files its authors distribute.

Splits are the official lists: train 8,458 and validation 500 images from
`datasetImages_warp256` (256x256), test the 1,000 `TestNew` images from
`AADB_newtest_originalSize` (original sizes). Labels stay in AADB's own scale
(score in [0, 1]; Repetition and Symmetry in [0, 1]; other attributes in
[-1, 1]); `aesthetix.targets` maps them to the model's [0, 1].

127 TestNew images also appear in the validation list. Both lists are kept as
published; the build logs the overlap and marks those examples
(`val_test_overlap`) so that training can leave them out of validation.
"""

import pathlib
import re
import sys

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

try:
  from aesthetix.data import targets
  from data_builders import features
  from data_builders import manual_files
except ImportError:  # `tfds build data_builders/aadb` puts only data_builders/ on sys.path.
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  from aesthetix.data import targets
  from data_builders import features
  from data_builders import manual_files

NAME = 'aadb'
# Split -> phase in the label file names. The older `imgListTest...` phase is
# not the official test set and is ignored.
PHASES = {'train': 'Train', 'validation': 'Validation', 'test': 'TestNew'}
LABEL_SOURCES = ('imgListFiles_label', 'imgListFiles_label.zip')
TRAIN_VAL_IMAGE_SOURCES = ('datasetImages_warp256', 'datasetImages_warp256.zip')
TEST_IMAGE_SOURCES = ('AADB_newtest_originalSize', 'AADB_newtest',
                      'AADB_newtest_originalSize.zip', 'AADB_newtest.zip')
# Test image files carry the overall score as prefix: '0.650_farm1_..._b.jpg'.
_SCORE_PREFIX = re.compile(r'^-?\d+\.\d{3}_(.+)$')

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Download AADB from the authors' page (https://www.ics.uci.edu/~skong2/aesthetics.html)
and place in the manual directory (folders or their .zip archives):
  {LABEL_SOURCES[0]}/            label lists imgList{{Train,Validation,TestNew}}Regression_{{ATTR}}.txt
  {TRAIN_VAL_IMAGE_SOURCES[0]}/  train and validation images (256x256)
  {TEST_IMAGE_SOURCES[0]}/  test images (or AADB_newtest/), names with or without the score prefix
"""


def label_file_name(phase, attribute):
  return f'imgList{phase}Regression_{attribute}.txt'


def parse_label_file(text, origin, lo, hi):
  """{image name: value} from one label file's text; errors name `origin` and the line."""
  values, first_line = {}, {}
  for line_no, line in enumerate(text.splitlines(), 1):
    fields = line.split()
    if not fields:
      continue
    where = f'{origin}, line {line_no}'
    if len(fields) != 2:
      raise manual_files.DataFileError(
          f'{where}: expected "<image name> <value>", got {line.strip()!r}. '
          'Restore the file from the original imgListFiles_label download.')
    name, text_value = fields
    try:
      value = float(text_value)
    except ValueError:
      raise manual_files.DataFileError(f'{where}: value {text_value!r} is not a number. Restore '
                       'the file from the original download.') from None
    if not lo <= value <= hi:
      raise manual_files.DataFileError(f'{where}: value {value} outside [{lo}, {hi}]. Restore the '
                       'file from the original download.')
    if name in values:
      raise manual_files.DataFileError(f'{where}: {name} is listed again (first on line '
                       f'{first_line[name]}). Restore the file from the original '
                       'download.')
    values[name], first_line[name] = value, line_no
  if not values:
    raise manual_files.DataFileError(f'{origin}: no labels. Restore the file from the original download.')
  return values


def read_phase_labels(labels, phase):
  """{image name: float32 [K+1] in output order} for one phase, joined by name.

  labels: a FileIndex over the label files.
  """
  spec = targets.spec(NAME)
  columns = []
  for attribute in spec.output_names:
    file_name = label_file_name(phase, attribute)
    if file_name not in labels:
      raise manual_files.ManualFileError(
          f'{file_name} not found in {labels.source}. Use the complete '
          'imgListFiles_label download.')
    lo, hi = spec.ranges[attribute]
    columns.append((labels.origin(file_name), parse_label_file(
        labels.read_text(file_name), labels.origin(file_name), lo, hi)))
  first_origin, first = columns[0]
  for origin, column in columns[1:]:
    if column.keys() != first.keys():
      only_here = sorted(column.keys() - first.keys())
      only_there = sorted(first.keys() - column.keys())
      raise manual_files.DataFileError(
          f'{origin} and {first_origin} list different images (only in the '
          f'first: {only_here[:3]}, only in the second: {only_there[:3]}). '
          'Restore both files from the original download.')
  return {name: np.array([c[name] for _, c in columns], np.float32) for name in first}


def bare_name(file_name):
  """The label-list name of a test image file: the `%.3f_` score prefix removed."""
  m = _SCORE_PREFIX.match(file_name)
  return m.group(1) if m else file_name


def image_files(images, names, use_prefix, label_origin):
  """{label name: file name in `images`}; an error lists the names with no file."""
  by_name = {n: n for n in images.names()}
  if use_prefix:
    for file_name in images.names():
      by_name.setdefault(bare_name(file_name), file_name)
  missing = sorted(n for n in names if n not in by_name)
  if missing:
    raise manual_files.ManualFileError(
        f'{len(missing)} images listed in {label_origin} are not in '
        f'{images.source}: {", ".join(missing[:5])}'
        f'{" ..." if len(missing) > 5 else ""}. Use the complete image download'
        ' (folder or zip) in the manual directory.')
  return {n: by_name[n] for n in names}


class Builder(tfds.core.GeneratorBasedBuilder):
  """AADB: images, overall score and 11 attributes, official splits."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Official train/validation/TestNew lists.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  # What a build reads from the manual dir ((what, candidates): one of each).
  REQUIRED_MANUAL = (('AADB label lists', LABEL_SOURCES),
                     ('AADB train/validation images', TRAIN_VAL_IMAGE_SOURCES),
                     ('AADB test images', TEST_IMAGE_SOURCES))

  def __init__(self, *, skip_unreadable=False, **kwargs):
    """skip_unreadable: leave out (and report) images that do not decode, instead of failing."""
    self.skip_unreadable = skip_unreadable
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=features.example_features(
            NAME, id_doc='Image file name as in the label lists.',
            val_test_overlap=tfds.features.Scalar(
                np.bool_, doc='Listed in both validation and TestNew.')),
        supervised_keys=None,
        homepage='https://www.ics.uci.edu/~skong2/aesthetics.html',
        citation='Kong et al., Photo Aesthetics Ranking Network with Attributes '
                 'and Content Adaptation, ECCV 2016.',
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    manual_dir = dl_manager.manual_dir
    labels = manual_files.find_source(manual_dir, LABEL_SOURCES, 'AADB label lists')
    phase_labels = {s: read_phase_labels(labels, p) for s, p in PHASES.items()}
    overlap = sorted(phase_labels['validation'].keys() & phase_labels['test'].keys())
    differing = [n for n in overlap if not np.array_equal(
        phase_labels['validation'][n], phase_labels['test'][n])]
    _log_overlap(overlap, differing)
    self.info.metadata['val_test_overlap'] = overlap
    self.info.metadata['skipped'] = {}

    train_val = manual_files.find_source(
        manual_dir, TRAIN_VAL_IMAGE_SOURCES, 'AADB train/validation images')
    test = manual_files.find_source(manual_dir, TEST_IMAGE_SOURCES, 'AADB test images')
    sources = {'train': train_val, 'validation': train_val, 'test': test}
    files = {s: image_files(sources[s], phase_labels[s], use_prefix=(s == 'test'),
                            label_origin=labels.origin(label_file_name(p, 'score')))
             for s, p in PHASES.items()}
    overlap = set(overlap)
    return {s: self._generate_examples(s, phase_labels[s], sources[s], files[s], overlap)
            for s in PHASES}

  def _generate_examples(self, split, labels, images, files, overlap):
    spec = targets.spec(NAME)
    reader = manual_files.ImageReader(self.skip_unreadable)
    for name in sorted(labels):
      image = reader(images, files[name])
      if image is None:
        continue
      yield name, {
          'image': image,
          'id': name,
          'labels': dict(zip(spec.output_names, labels[name])),
          'val_test_overlap': name in overlap,
      }
    reader.report(split, len(labels))
    self.info.metadata['skipped'][split] = reader.skipped


def _log_overlap(overlap, differing):
  logging.warning(
      'AADB: %d TestNew images also appear in the validation list (%d of them '
      'with different labels). Both lists are kept; set '
      'config.dataset.drop_val_test_overlap=True to leave them out of '
      'validation.', len(overlap), len(differing))
