"""Tiny copies of the AADB and EVA downloads, in the formats their authors ship.

Tests write them under tmp_path; the builders then read them exactly as they
would read the real archives.
"""

import io
import json
import pathlib
import zipfile

import numpy as np
from PIL import Image

from aesthetix.data import targets

AADB_PHASES = ('Train', 'Validation', 'TestNew')
IMAGE_SIZE = 32


def jpeg_bytes(seed, size=IMAGE_SIZE):
  """A small random RGB JPEG."""
  rng = np.random.default_rng(seed)
  pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format='JPEG', quality=90)
  return out.getvalue()


def zip_folder(folder, zip_path):
  """Zips `folder` with its name as the top-level entry, as the authors' zips do."""
  folder = pathlib.Path(folder)
  with zipfile.ZipFile(zip_path, 'w') as z:
    for path in sorted(folder.rglob('*')):
      z.write(path, path.relative_to(folder.parent).as_posix())


def aadb_name(i):
  return f'farm1_{100 + i}_2016{i:07d}_{i:04x}cafe_b.jpg'


def _aadb_value(rng, attribute):
  lo, hi = targets.spec('aadb').ranges[attribute]
  return round(float(rng.uniform(lo, hi)), 3)


def make_aadb(root, *, n_train=4, n_val=3, n_test=3, n_overlap=1, zipped=False,
              test_prefix=True, seed=0):
  """Writes an AADB manual dir under `root`; returns {split: {name: [K+1] values}}.

  The first `n_overlap` test images are validation images (same labels), as the
  127 of the real TestNew list.
  """
  root = pathlib.Path(root)
  rng = np.random.default_rng(seed)
  names = [aadb_name(i) for i in range(n_train + n_val + n_test)]
  split_names = {
      'train': names[:n_train],
      'validation': names[n_train:n_train + n_val],
      'test': (names[n_train:n_train + n_overlap]
               + names[n_train + n_val:n_train + n_val + n_test - n_overlap]),
  }
  out_names = targets.spec('aadb').output_names
  values = {n: [_aadb_value(rng, a) for a in out_names] for n in names}
  labels = {s: {n: values[n] for n in ns} for s, ns in split_names.items()}

  label_dir = root / 'imgListFiles_label'
  label_dir.mkdir(parents=True)
  for split, phase in zip(('train', 'validation', 'test'), AADB_PHASES):
    for k, attribute in enumerate(out_names):
      ns = list(split_names[split])
      rng.shuffle(ns)  # Files of a phase list the same images in any order.
      newline = '\r\n' if k % 2 else '\n'  # Line endings are not promised.
      text = newline.join(f'{n} {values[n][k]:.3f}' for n in ns) + newline
      (label_dir / f'imgList{phase}Regression_{attribute}.txt').write_text(
          text, newline='')
  # The old test phase, which the builder must ignore.
  (label_dir / 'imgListTestRegression_score.txt').write_text('not a label file\n')

  image_dir = root / 'datasetImages_warp256'
  image_dir.mkdir()
  for i, n in enumerate(split_names['train'] + split_names['validation']):
    (image_dir / n).write_bytes(jpeg_bytes(i))
  test_dir = root / 'AADB_newtest_originalSize'
  test_dir.mkdir()
  for i, n in enumerate(split_names['test']):
    file_name = f'{labels["test"][n][0]:.3f}_{n}' if test_prefix and i % 3 != 2 else n
    (test_dir / file_name).write_bytes(jpeg_bytes(1000 + i, size=IMAGE_SIZE + 8 * i))

  if zipped:
    for folder in (label_dir, image_dir, test_dir):
      zip_folder(folder, folder.with_name(folder.name + '.zip'))
      for f in sorted(folder.rglob('*'), reverse=True):
        f.unlink()
      folder.rmdir()
  return labels


def eva_votes(n_images, seed=0):
  """{image id: list of vote rows [score, visual, composition, quality, semantic]}."""
  rng = np.random.default_rng(seed)
  votes = {}
  for i in range(n_images):
    image_id = str(100 + 7 * i)
    votes[image_id] = [[int(rng.integers(0, 11)), *rng.integers(1, 5, size=4).tolist()]
                       for _ in range(int(rng.integers(1, 5)))]
  return votes


def make_eva(root, *, n_images=12, n_unvoted=2, parts=3, categories=True,
             folder=False, seed=0):
  """Writes an EVA manual dir under `root`; returns the votes per image id.

  Images: `images/EVA_together.zip.001..` (the split zip, `parts` parts) or
  the `images/EVA_together/` folder. `n_unvoted` extra images have no votes.
  """
  root = pathlib.Path(root)
  votes = eva_votes(n_images, seed)
  (root / 'data').mkdir(parents=True)
  header = ('image_id=user_id=score=difficulty=visual=composition=quality='
            'semantic=vote_time=1=2=3=4')
  lines = [header]
  for user, (image_id, rows) in enumerate(votes.items()):
    for r in rows:
      score = f'{r[0]}.0' if user % 2 else str(r[0])  # Values may be written as floats.
      lines.append(f'{image_id}={user}={score}=2={r[1]}={r[2]}={r[3]}={r[4]}='
                   '2019-05-02 10:11:12=0=1=0=0')
  (root / 'data' / 'votes_filtered.csv').write_text('\n'.join(lines) + '\n')
  if categories:
    ids = list(votes)[:-1]  # The last voted image has no category.
    rows = ['"image_id","sort"'] + [f'"{i}","{1 + k % 6}"' for k, i in enumerate(ids)]
    (root / 'data' / 'image_content_category.csv').write_bytes(
        ('\ufeff' + '\r\n'.join(rows) + '\r\n').encode('utf-8'))

  all_ids = list(votes) + [str(9000 + i) for i in range(n_unvoted)]
  image_dir = root / 'images' / 'EVA_together'
  image_dir.mkdir(parents=True)
  for k, image_id in enumerate(all_ids):
    (image_dir / f'{image_id}.jpg').write_bytes(jpeg_bytes(2000 + k, size=IMAGE_SIZE + 4 * (k % 3)))
  if not folder:
    buffer = root / 'images' / 'EVA_together.zip'
    zip_folder(image_dir, buffer)
    data = buffer.read_bytes()
    buffer.unlink()
    cut = [len(data) * p // parts for p in range(parts + 1)]
    for p in range(parts):
      (root / 'images' / f'EVA_together.zip.{p + 1:03d}').write_bytes(data[cut[p]:cut[p + 1]])
    for f in image_dir.iterdir():
      f.unlink()
    image_dir.rmdir()
  return votes


def categories_of(votes):
  """The categories `make_eva` writes: 1..6 cycling, -1 for the last image."""
  ids = list(votes)
  return {i: (1 + k % 6 if k < len(ids) - 1 else -1) for k, i in enumerate(ids)}


# A photographer's folder: an overall score and three attributes of different ranges.
RATED_OUTPUTS = {'score': [1, 5], 'sharpness': [0, 1], 'mood': [-2, 2], 'color': [0, 10]}
RATED_FORMATS = ('JPEG', 'PNG', 'WEBP')


def rated_photo_path(i):
  """Nested folders, three formats: shoots/<day>/<i>.<ext>."""
  fmt = RATED_FORMATS[i % len(RATED_FORMATS)]
  return f'shoots/day{i % 3}/{i:03d}.{fmt.lower().replace("jpeg", "jpg")}'


def make_rated(root, *, n_images=30, votes=False, votes_per_image=3, seed=0,
               split=None, delimiter=','):
  """A folder of rated photos as a user would lay it out; returns (root, rows).

  `votes`: one row per vote (with a rater column), else one row per photo.
  `split`: written into dataset.json when given. `rows` are the CSV's data
  rows as dicts of strings.
  """
  root = pathlib.Path(root)
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n_images):
    path = root / rated_photo_path(i)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(Image.open(io.BytesIO(jpeg_bytes(seed * 1000 + i))))
    fmt = RATED_FORMATS[i % len(RATED_FORMATS)]
    Image.fromarray(pixels).save(path, format=fmt, **({'lossless': True} if fmt == 'WEBP' else {}))
    for v in range(votes_per_image if votes else 1):
      row = {'image': rated_photo_path(i)}
      if votes:
        row['rater'] = f'r{v}'
      for name, (lo, hi) in RATED_OUTPUTS.items():
        row[name] = f'{rng.uniform(lo, hi):.3f}'
      rows.append(row)
  spec = {'outputs': RATED_OUTPUTS, 'rows': 'votes' if votes else 'images'}
  if split is not None:
    spec['split'] = split
  (root / 'dataset.json').write_text(json.dumps(spec, indent=2))
  header = list(rows[0])
  lines = [delimiter.join(header)] + [delimiter.join(r[h] for h in header) for r in rows]
  (root / 'ratings.csv').write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return root, rows
