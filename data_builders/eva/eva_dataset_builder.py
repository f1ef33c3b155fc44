"""EVA (Kang et al. 2020), built from the files its authors distribute.

An image is part of the dataset when it has filtered votes
(`data/votes_filtered.csv`, the file the paper uses; about 4,070 images).
Its targets are the means over its votes of the overall score (0..10) and of
the four attributes visual, composition, quality and semantic (1..4), kept in
EVA's own scale; `aesthetix.targets` maps them to the model's [0, 1]. Each
example also holds the vote count, the score's standard deviation over the
votes (population, ddof=0) and the content category (1..6 from
`image_content_category.csv`; -1 when unknown).

The split is `eva_split.split_ids` of the ids with votes (seeded, see there);
the lists are stored in the dataset's metadata (`split_ids`).
"""

import csv
import io
import pathlib
import sys

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

try:
  from aesthetix.data import targets
  from data_builders import features
  from data_builders import manual_files
  from data_builders.eva import eva_split
except ImportError:  # `tfds build data_builders/eva` puts only data_builders/ on sys.path.
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  from aesthetix.data import targets
  from data_builders import features
  from data_builders import manual_files
  from data_builders.eva import eva_split

NAME = 'eva'
VOTES_FILES = ('data/votes_filtered.csv', 'votes_filtered.csv')
CATEGORY_FILES = ('data/image_content_category.csv', 'image_content_category.csv')
IMAGE_SOURCES = ('images/EVA_together', 'EVA_together',
                 'images/EVA_together.zip.001', 'EVA_together.zip.001',
                 'images/EVA_together.zip', 'EVA_together.zip')
VOTES_DELIMITER = '='
CATEGORY_RANGE = (1, 6)
UNKNOWN_CATEGORY = -1
_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download EVA (https://github.com/kang-gnak/eva-dataset) and place in the manual
directory, keeping the release's layout:
  data/votes_filtered.csv                        the filtered votes ('='-delimited)
  data/image_content_category.csv                optional: content categories
  images/EVA_together.zip.001 ... .007           the split zip as downloaded
    (or the unpacked images/EVA_together/ folder of <image_id>.jpg files)
"""


def parse_votes(text, origin):
  """{image id: float64 [votes, K+1]} (score, visual, composition, quality, semantic)."""
  spec = targets.spec(NAME)
  rows = csv.reader(io.StringIO(text), delimiter=VOTES_DELIMITER)
  header = next(rows, None)
  needed = ('image_id', *spec.output_names)
  if header is None or any(c not in header for c in needed):
    raise manual_files.DataFileError(
        f'{origin}, line 1: expected a header with columns {needed} separated by '
        f'{VOTES_DELIMITER!r}, got {header}. Use votes_filtered.csv as released.')
  at = {c: header.index(c) for c in needed}
  votes = {}
  for line_no, row in enumerate(rows, 2):
    if not row or not ''.join(row).strip():
      continue
    where = f'{origin}, line {line_no}'
    if len(row) <= max(at.values()):
      raise manual_files.DataFileError(f'{where}: expected {len(header)} fields separated by '
                       f'{VOTES_DELIMITER!r}, got {len(row)}. Restore the file '
                       'from the original download.')
    image_id = row[at['image_id']].strip()
    values = []
    for name in spec.output_names:
      lo, hi = spec.ranges[name]
      try:
        value = float(row[at[name]])
      except ValueError:
        raise manual_files.DataFileError(f'{where}: {name} {row[at[name]]!r} is not a number. '
                         'Restore the file from the original download.') from None
      if not lo <= value <= hi:
        raise manual_files.DataFileError(f'{where}: {name} {value} outside [{lo}, {hi}]. Restore '
                         'the file from the original download.')
      values.append(value)
    if not image_id:
      raise manual_files.DataFileError(f'{where}: empty image_id.')
    votes.setdefault(image_id, []).append(values)
  if not votes:
    raise manual_files.DataFileError(f'{origin}: no votes. Use votes_filtered.csv as released.')
  return {i: np.array(v, np.float64) for i, v in votes.items()}


def image_stats(votes):
  """Per-image targets (means, output order), vote count and score std (ddof=0)."""
  return {
      i: dict(labels=v.mean(axis=0).astype(np.float32), vote_count=len(v),
              score_std=np.float32(v[:, 0].std()))
      for i, v in votes.items()}


def parse_categories(text, origin):
  """{image id: category 1..6} from image_content_category.csv (quoted, BOM)."""
  rows = csv.reader(io.StringIO(text))
  header = [h.strip() for h in next(rows, [])]
  if header[:2] != ['image_id', 'sort']:
    raise manual_files.DataFileError(f'{origin}, line 1: expected header "image_id","sort", got '
                     f'{header}. Use image_content_category.csv as released.')
  lo, hi = CATEGORY_RANGE
  categories = {}
  for line_no, row in enumerate(rows, 2):
    if not row:
      continue
    try:
      image_id, category = row[0].strip(), int(float(row[1]))
    except (IndexError, ValueError):
      raise manual_files.DataFileError(f'{origin}, line {line_no}: expected "<image_id>","<1..6>", '
                       f'got {row}. Restore the file from the original '
                       'download.') from None
    if not lo <= category <= hi:
      raise manual_files.DataFileError(f'{origin}, line {line_no}: category {category} outside '
                       f'{lo}..{hi}.')
    categories[image_id] = category
  return categories


def image_files(images):
  """{image id: file name} for the image files in `images` (a FileIndex)."""
  files = {}
  for name in images.names():
    stem, dot, suffix = name.rpartition('.')
    if dot and ('.' + suffix.lower()) in _IMAGE_SUFFIXES:
      files.setdefault(stem, name)
  return files


class Builder(tfds.core.GeneratorBasedBuilder):
  """EVA: images, mean overall score and 4 attributes, seeded split."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'votes_filtered.csv; split by eva_split.split_ids.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  # What a build reads from the manual dir ((what, candidates): one of each).
  REQUIRED_MANUAL = (('EVA votes', VOTES_FILES), ('EVA images', IMAGE_SOURCES))

  def __init__(self, *, skip_unreadable=False, num_test=eva_split.NUM_TEST,
               num_validation=eva_split.NUM_VALIDATION, **kwargs):
    """skip_unreadable: leave out (and report) images that do not decode.

    num_test, num_validation: split sizes (the paper's by default; tests shrink them).
    """
    self.skip_unreadable = skip_unreadable
    self.num_test = num_test
    self.num_validation = num_validation
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=features.example_features(
            NAME, id_doc='EVA image id (file name without .jpg).',
            label_doc='Mean vote, in {range}.',
            vote_count=tfds.features.Scalar(np.int32),
            score_std=tfds.features.Scalar(np.float32),
            category=tfds.features.Scalar(np.int32, doc='1..6; -1 unknown.')),
        supervised_keys=None,
        homepage='https://github.com/kang-gnak/eva-dataset',
        citation='Kang et al., EVA: An Explainable Visual Aesthetics Dataset, '
                 'ACM Multimedia Workshops 2020.',
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    manual_dir = pathlib.Path(dl_manager.manual_dir)
    votes_path = manual_files.find_file(manual_dir, VOTES_FILES)
    if votes_path is None:
      raise manual_files.ManualFileError(
          f'EVA votes not found: place votes_filtered.csv at {manual_dir / VOTES_FILES[0]}.')
    stats = image_stats(parse_votes(votes_path.read_text('utf-8-sig'), votes_path))

    categories = {}
    category_path = manual_files.find_file(manual_dir, CATEGORY_FILES)
    if category_path is None:
      logging.warning('EVA: no image_content_category.csv in %s; category = %d.',
                      manual_dir, UNKNOWN_CATEGORY)
    else:
      categories = parse_categories(category_path.read_text('utf-8-sig'), category_path)

    images = manual_files.find_source(manual_dir, IMAGE_SOURCES, 'EVA images')
    files = image_files(images)
    missing = sorted((i for i in stats if i not in files), key=eva_split.id_sort_key)
    if missing:
      raise manual_files.ManualFileError(
          f'{len(missing)} images with votes in {votes_path} are not in '
          f'{images.source}: {", ".join(missing[:5])}{" ..." if len(missing) > 5 else ""}'
          '. Use the complete EVA_together download (all parts of the split zip).')
    logging.info('EVA: %d images with votes (of %d image files).', len(stats), len(files))

    try:
      ids = eva_split.split_ids(list(stats), num_test=self.num_test,
                                num_validation=self.num_validation)
    except ValueError as e:
      raise manual_files.DataFileError(
          f'EVA split of the {len(stats)} images with votes in {votes_path}: {e} '
          'The default sizes are the paper\'s, for the full release; for a subset '
          'pass Builder(num_test=..., num_validation=...).') from e
    self.info.metadata['split_ids'] = ids
    self.info.metadata['split_seed'] = eva_split.SEED
    self.info.metadata['skipped'] = {}
    return {s: self._generate_examples(s, ids[s], stats, categories, images, files)
            for s in eva_split.SPLITS}

  def _generate_examples(self, split, ids, stats, categories, images, files):
    spec = targets.spec(NAME)
    reader = manual_files.ImageReader(self.skip_unreadable)
    for image_id in ids:
      image = reader(images, files[image_id])
      if image is None:
        continue
      s = stats[image_id]
      yield image_id, {
          'image': image,
          'id': image_id,
          'labels': dict(zip(spec.output_names, s['labels'])),
          'vote_count': s['vote_count'],
          'score_std': s['score_std'],
          'category': categories.get(image_id, UNKNOWN_CATEGORY),
      }
    reader.report(split, len(ids))
    self.info.metadata['skipped'][split] = reader.skipped
