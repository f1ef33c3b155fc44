"""A user's folder of rated photos: dataset.json, the ratings file, the split.

No TensorFlow here: run.py reads the declared outputs before anything loads,
and the builder turns the parsed ratings into examples.

The folder holds photos (any layout) and two files:

  dataset.json   {"outputs": {"score": [1, 5], "sharpness": [0, 1], ...},
                  "overall": "score",         (optional; default: the first output)
                  "ratings": "ratings.csv",   (optional; default ratings.csv)
                  "rows": "images" | "votes", (optional; default images)
                  "split": {"column": "split"} or
                           {"validation": 0.1, "test": 0.1, "seed": 0}}  (optional)
  ratings.csv    a header row with `image` (the photo's path inside the folder)
                 and one column per declared output; comma, semicolon or tab
                 separated (detected from the header), UTF-8 with or without a
                 BOM. Semicolon files may use decimal commas (3,5).

With "rows": "images" every photo has one row of its scores; with "votes"
every row is one rater's vote (a `rater` column is allowed, and a blank cell
is a vote left out for that output) and an image's targets are the means of
its votes, kept with the vote count and each output's standard deviation
(numpy's, ddof 0), as EVA's votes are. Other columns are ignored.

Without a split column, the images are split by a seeded permutation of their
sorted paths (DEFAULT_SPLIT unless dataset.json says otherwise), so the split
is the same on every machine for the same files.

Every problem names the file, the row (the line in the file, the header
being line 1) and how to fix it; `read` finds them all before it reports, and
raises one `RatingsError` listing them. Nothing in the folder is ever written.
"""

import collections
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import posixpath
import re

import numpy as np

from aesthetix.runtime import errors

SPEC_FILE = 'dataset.json'
DEFAULT_RATINGS = 'ratings.csv'
IMAGE_COLUMN = 'image'
RATER_COLUMN = 'rater'
ROW_KINDS = ('images', 'votes')
SPLITS = ('train', 'validation', 'test')
SPLIT_ALIASES = {'val': 'validation', 'valid': 'validation', 'dev': 'validation'}
# The split of images when dataset.json names no split column: fractions of
# the images for validation and test (the rest trains), and the permutation's seed.
DEFAULT_SPLIT = {'validation': 0.1, 'test': 0.1, 'seed': 0}
DELIMITERS = (',', ';', '\t')
_DECIMAL_COMMA = re.compile(r'^[+-]?\d+,\d+$')
_SPEC_KEYS = ('outputs', 'overall', 'ratings', 'rows', 'split')
# At most this many problems are listed in one message; a count says how many more.
MAX_LISTED = 20


class RatingsError(errors.UserError, ValueError):
  """A problem in a user's dataset.json, ratings file or photos; says where and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Spec:
  """What dataset.json declares. outputs: ((name, lo, hi), ...), the overall score first."""
  outputs: tuple
  ratings: str
  rows: str
  split_column: str | None
  split_fractions: dict

  @property
  def names(self):
    return tuple(n for n, _, _ in self.outputs)


@dataclasses.dataclass(frozen=True)
class Image:
  """One photo's targets: `values` [outputs] (means over votes), `votes` (1 per
  row in images mode), `std` [outputs] over its votes, and its split."""
  path: str
  values: np.ndarray
  votes: int
  std: np.ndarray
  split: str
  line: int


def _spec_error(path, what):
  return RatingsError(f'{path}: {what}')


def read_spec(manual_dir):
  """The `Spec` of `manual_dir`/dataset.json."""
  path = os.path.join(manual_dir, SPEC_FILE)
  if not os.path.isfile(path):
    raise RatingsError(
        f'{path} not found: place a {SPEC_FILE} beside the photos declaring each output '
        'and its range, e.g. {"outputs": {"score": [1, 5], "sharpness": [0, 1]}} '
        '(README: Training on your own rated photos).')
  try:
    with open(path, 'rb') as f:
      raw = json.loads(_utf8(f.read(), path))
  except json.JSONDecodeError as e:
    raise _spec_error(path, f'not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}).') from e
  if not isinstance(raw, dict):
    raise _spec_error(path, 'must hold one JSON object ({"outputs": {...}, ...}).')
  unknown = sorted(set(raw) - set(_SPEC_KEYS))
  if unknown:
    raise _spec_error(path, f'unknown field(s) {", ".join(unknown)}; the fields are '
                            f'{", ".join(_SPEC_KEYS)}.')
  outputs = _outputs(raw.get('outputs'), raw.get('overall'), path)
  rows = raw.get('rows', 'images')
  if rows not in ROW_KINDS:
    raise _spec_error(path, f'"rows" is {rows!r}; it must be "images" (one row per photo) '
                            'or "votes" (one row per vote).')
  ratings = raw.get('ratings', DEFAULT_RATINGS)
  if not isinstance(ratings, str) or not ratings:
    raise _spec_error(path, '"ratings" must name the ratings file, e.g. "ratings.csv".')
  column, fractions = _split_spec(raw.get('split', {}), path)
  return Spec(outputs, ratings, rows, column, fractions)


def _outputs(outputs, overall, path):
  if not isinstance(outputs, dict) or not outputs:
    raise _spec_error(path, '"outputs" must map each output to its range, e.g. '
                            '{"score": [1, 5], "sharpness": [0, 1]}.')
  parsed = []
  for name, bounds in outputs.items():
    ok = (isinstance(bounds, list) and len(bounds) == 2
          and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                  and math.isfinite(b) for b in bounds))
    if not ok or not bounds[1] > bounds[0]:
      raise _spec_error(path, f'output {name!r} has range {bounds!r}; give [lowest, highest] '
                              'with lowest < highest, e.g. [1, 5].')
    if name in (IMAGE_COLUMN, RATER_COLUMN) or not name.strip():
      raise _spec_error(path, f'{name!r} cannot name an output (a reserved column).')
    parsed.append((name, float(bounds[0]), float(bounds[1])))
  if overall is not None:
    if overall not in outputs:
      raise _spec_error(path, f'"overall" is {overall!r}, which is not one of the outputs '
                              f'{", ".join(outputs)}.')
    parsed.sort(key=lambda o: o[0] != overall)  # Stable: the others keep their order.
  return tuple(parsed)


def _split_spec(split, path):
  if not isinstance(split, dict):
    raise _spec_error(path, '"split" must be {"column": NAME} or {"validation": 0.1, '
                            '"test": 0.1, "seed": 0}.')
  if 'column' in split:
    if set(split) != {'column'} or not isinstance(split['column'], str):
      raise _spec_error(path, '"split": {"column": NAME} takes the name of a column alone.')
    return split['column'], {}
  unknown = sorted(set(split) - set(DEFAULT_SPLIT))
  if unknown:
    raise _spec_error(path, f'"split" has unknown field(s) {", ".join(unknown)}; it takes '
                            '"column", or "validation", "test" and "seed".')
  fractions = {**DEFAULT_SPLIT, **split}
  val, test = fractions['validation'], fractions['test']
  if not all(isinstance(f, (int, float)) and 0 < f < 1 for f in (val, test)) or val + test >= 1:
    raise _spec_error(path, f'"split" fractions validation={val!r}, test={test!r}: each must '
                            'lie in (0, 1), together below 1 (the rest trains).')
  if not isinstance(fractions['seed'], int):
    raise _spec_error(path, f'"split" seed must be an integer, got {fractions["seed"]!r}.')
  return None, fractions


def _utf8(raw, path):
  try:
    return raw.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b'\n') + 1
    raise RatingsError(
        f'{path}: not UTF-8 text (byte {e.start}, line {line}). Save it as UTF-8 '
        '(in a spreadsheet: "CSV UTF-8").') from e


def fingerprint(manual_dir, spec):
  """A short hex digest of dataset.json and the ratings file: names the prepared data."""
  digest = hashlib.sha256()
  for name in (SPEC_FILE, spec.ratings):
    with open(os.path.join(manual_dir, name), 'rb') as f:
      digest.update(f.read())
  return digest.hexdigest()[:12]


def _delimiter(header, path):
  counts = {d: header.count(d) for d in DELIMITERS}
  best = max(DELIMITERS, key=counts.get)
  if counts[best] == 0:
    raise RatingsError(f'{path}: the header {header!r} has no comma, semicolon or tab; it '
                       f'needs an {IMAGE_COLUMN!r} column and one column per output.')
  return best


def _number(text, delimiter):
  text = text.strip()
  if delimiter == ';' and _DECIMAL_COMMA.match(text):
    text = text.replace(',', '.')
  value = float(text)  # ValueError on anything else.
  if not math.isfinite(value):
    raise ValueError(text)
  return value


def _image_path(text, manual_dir, where):
  """The photo's normalised path inside the folder; RatingsError when it is not one."""
  rel = text.strip().replace('\\', '/')
  if not rel:
    raise RatingsError(f'{where}: the {IMAGE_COLUMN!r} cell is empty.')
  norm = posixpath.normpath(rel)
  if rel.startswith('/') or re.match(r'^[A-Za-z]:', rel) or norm == '..' or norm.startswith('../'):
    raise RatingsError(f'{where}: image {text.strip()!r} is outside the folder {manual_dir}; '
                       'give paths relative to it (e.g. shoots/0001.jpg) and place the '
                       'photos inside it.')
  return norm


def problems_error(manual_dir, problems):
  """One RatingsError listing `problems` (each 'FILE, line N: what; the fix'),
  the first MAX_LISTED of them with a count of the rest; None when there are none."""
  if not problems:
    return None
  if len(problems) == 1:
    return RatingsError(problems[0])
  shown = problems[:MAX_LISTED]
  more = len(problems) - len(shown)
  return RatingsError(
      f'{len(problems)} problems in the rated photos of {manual_dir}; fix them all, then '
      'run again:\n' + '\n'.join(f'  - {p}' for p in shown)
      + (f'\n  - ... and {more} more of the same kinds.' if more else ''))


def _raise_if_any(manual_dir, problems):
  error = problems_error(manual_dir, problems)
  if error is not None:
    raise error


def _row_values(record, spec, columns, delimiter, where, problems):
  """[value or None per output] of one row, each problem of its cells added to
  `problems`; None when a cell was bad."""
  values, ok = [], True
  for name, lo, hi in spec.outputs:
    cell = record[columns[name]]
    if not cell.strip():
      if spec.rows == 'images':
        problems.append(f'{where}: no value for {name!r}; every photo needs every '
                        'output in "rows": "images" (votes may leave cells blank).')
        ok = False
      values.append(None)
      continue
    try:
      value = _number(cell, delimiter)
    except ValueError:
      problems.append(f'{where}: {name} = {cell.strip()!r} is not a number.')
      ok = False
      continue
    if not lo <= value <= hi:
      problems.append(f'{where}: {name} = {cell.strip()} lies outside its range '
                      f'[{lo:g}, {hi:g}] declared in {SPEC_FILE}; fix the value or '
                      'the range.')
      ok = False
    values.append(value)
  return values if ok else None


def read_rows(manual_dir, spec, problems=None):
  """[(line, image path, [value or None per output], split cell or None)] of the
  ratings file's good rows.

  A problem of the file as a whole (missing, not UTF-8, no header, a missing
  column) raises RatingsError at once; the problems of rows are added to
  `problems` (None: raised together at the end) and their rows left out.
  """
  collect = problems is None
  problems = [] if collect else problems
  path = os.path.join(manual_dir, spec.ratings)
  if not os.path.isfile(path):
    raise RatingsError(f'{path} not found: dataset.json names {spec.ratings!r} as the ratings '
                       'file; place it there or fix "ratings".')
  with open(path, 'rb') as f:
    text = _utf8(f.read(), path)
  lines = text.splitlines()
  if not lines or not lines[0].strip():
    raise RatingsError(f'{path}: empty; the first row must be the header ({IMAGE_COLUMN}, '
                       f'{", ".join(spec.names)}).')
  delimiter = _delimiter(lines[0], path)
  reader = csv.reader(io.StringIO(text, newline=''), delimiter=delimiter)
  header = [h.strip() for h in next(reader)]
  columns = {h: i for i, h in enumerate(header)}
  needed = [IMAGE_COLUMN, *spec.names] + ([spec.split_column] if spec.split_column else [])
  missing = [c for c in needed if c not in columns]
  if missing:
    declared = [c for c in missing if c in spec.names]
    what = (f'output(s) {", ".join(declared)} declared in {SPEC_FILE} but absent'
            if declared else f'column(s) {", ".join(missing)} missing')
    raise RatingsError(f'{path}: {what}; its columns are {", ".join(header)}. Name the '
                       'columns as dataset.json names the outputs (and the photos\' column '
                       f'{IMAGE_COLUMN!r}).')
  rows, read_any = [], False
  for record in reader:
    line = reader.line_num
    if not any(cell.strip() for cell in record):
      continue  # Blank lines, as spreadsheets leave at the end.
    read_any = True
    where = f'{path}, line {line}'
    if len(record) != len(header):
      problems.append(f'{where}: {len(record)} cells for {len(header)} columns; check '
                      f'the separators (this file uses {delimiter!r}) and quotes.')
      continue
    values = _row_values(record, spec, columns, delimiter, where, problems)
    try:
      image = _image_path(record[columns[IMAGE_COLUMN]], manual_dir, where)
    except RatingsError as e:
      problems.append(str(e))
      continue
    if values is not None:
      split = record[columns[spec.split_column]].strip() if spec.split_column else None
      rows.append((line, image, values, split))
  if not read_any:
    raise RatingsError(f'{path}: a header and no rows; add one row per '
                       f'{"vote" if spec.rows == "votes" else "photo"}.')
  if collect:
    _raise_if_any(manual_dir, problems)
  return rows


def _split_name(cell, where, column):
  name = SPLIT_ALIASES.get(cell.lower(), cell.lower())
  if name not in SPLITS:
    raise RatingsError(f'{where}: {column} = {cell!r}; it must be train, validation or test.')
  return name


def aggregate(manual_dir, spec, rows, problems=None):
  """{image path: (first line, values [outputs], votes, std [outputs], split cell)}.

  Problems (a photo rated twice in "rows": "images", votes naming different
  splits, an output without a vote) are added to `problems` (None: raised
  together) and their photos left out.
  """
  collect = problems is None
  problems = [] if collect else problems
  path = os.path.join(manual_dir, spec.ratings)
  grouped = collections.OrderedDict()
  for line, image, values, split in rows:
    if image in grouped and spec.rows == 'images':
      problems.append(f'{path}, line {line}: image {image!r} is rated again (first on '
                      f'line {grouped[image][0][0]}); with "rows": "images" each photo '
                      'has one row. Remove the duplicate, or set "rows": "votes" in '
                      f'{SPEC_FILE} when rows are votes.')
      continue
    grouped.setdefault(image, []).append((line, values, split))
  out = collections.OrderedDict()
  for image, votes in grouped.items():
    first = votes[0][0]
    splits = {s for _, _, s in votes}
    if len(splits) > 1:
      problems.append(f'{path}, line {first}: the votes of {image!r} name different '
                      f'splits ({", ".join(sorted(splits))}); give each photo one.')
      continue
    means, stds, ok = [], [], True
    for k, name in enumerate(spec.names):
      given = np.array([v[k] for _, v, _ in votes if v[k] is not None], np.float64)
      if not len(given):
        problems.append(f'{path}, line {first}: no vote for {name!r} on image {image!r}; '
                        'every photo needs at least one vote for each output.')
        ok = False
        continue
      means.append(given.mean())
      stds.append(given.std())
    if ok:
      out[image] = (first, np.array(means, np.float32), len(votes),
                    np.array(stds, np.float32), splits.pop())
  if collect:
    _raise_if_any(manual_dir, problems)
  return out


def assign_splits(manual_dir, spec, aggregated, problems=None, judge_sizes=True):
  """{image: split}: the split column's, or a seeded permutation of the sorted paths.

  Problems (an unknown split name, a split without photos, too few photos for
  the fractions) are added to `problems` (None: raised together). Without
  `judge_sizes` only each row's split name is checked (the rows are not yet
  all there, so the sizes would be judged on the wrong photos).
  """
  collect = problems is None
  problems = [] if collect else problems
  path = os.path.join(manual_dir, spec.ratings)
  splits = {}
  if spec.split_column:
    for image, a in aggregated.items():
      try:
        splits[image] = _split_name(a[4], f'{path}, line {a[0]}', spec.split_column)
      except RatingsError as e:
        problems.append(str(e))
  elif judge_sizes:  # Else nothing to check: a permutation has no per-row names.
    images = sorted(aggregated)
    n = len(images)
    f = spec.split_fractions
    n_val, n_test = round(n * f['validation']), round(n * f['test'])
    if min(n_val, n_test, n - n_val - n_test) < 1:
      problems.append(
          f'{path}: {n} photo(s) are too few for the split validation {f["validation"]:g}, '
          f'test {f["test"]:g} (each split needs at least one photo: {n_val} validation, '
          f'{n_test} test, {n - n_val - n_test} train). Rate more photos, or change '
          f'"split" in {SPEC_FILE}.')
    else:
      order = np.random.default_rng(f['seed']).permutation(n)
      names = ['test'] * n_test + ['validation'] * n_val + ['train'] * (n - n_test - n_val)
      splits = {images[i]: s for i, s in zip(order, names)}
  empty = [s for s in SPLITS if s not in set(splits.values())]
  if empty and splits and judge_sizes:
    problems.append(f'{path}: the split(s) {", ".join(empty)} hold no photo; every split '
                    f'needs at least one (column {spec.split_column!r}).')
  if collect:
    _raise_if_any(manual_dir, problems)
  return splits


def _missing_problem(manual_dir, path, aggregated, missing):
  """The problem of the photos named in the ratings but absent from the folder."""
  listed = ', '.join(f'{image!r} (line {aggregated[image][0]})'
                     for image in missing[:MAX_LISTED])
  more = f' and {len(missing) - MAX_LISTED} more' if len(missing) > MAX_LISTED else ''
  first = missing[0]
  return (f'{path}, line {aggregated[first][0]}: image {first!r} is not in {manual_dir} '
          f'({len(missing)} missing in all: {listed}{more}); place them there, fix the '
          'paths, or build with skip_unreadable=True (--config.dataset.skip_unreadable=True) '
          'to leave such photos out.')


def read(manual_dir, skip_missing=False):
  """(Spec, [Image], missing paths): everything a build needs, checked.

  Every problem of the ratings file and the photos it names is found before
  any is reported: one RatingsError lists them all, each with its file and
  line. A photo named in the ratings but not in the folder is a problem, or,
  with `skip_missing`, left out and returned among the missing. Pure Python
  (no TensorFlow): run.py checks a folder with it before JAX loads.
  """
  spec = read_spec(manual_dir)
  problems = []
  aggregated = aggregate(manual_dir, spec, read_rows(manual_dir, spec, problems), problems)
  path = os.path.join(manual_dir, spec.ratings)
  missing = [image for image in aggregated
             if not os.path.isfile(os.path.join(manual_dir, image))]
  if missing and not skip_missing:
    problems.append(_missing_problem(manual_dir, path, aggregated, missing))
  for image in missing:
    del aggregated[image]
  # The split sizes are judged on the photos as the build will have them: not
  # while rows are left out for problems still to be fixed (each row's split
  # name is checked either way).
  splits = assign_splits(manual_dir, spec, aggregated, problems, judge_sizes=not problems)
  _raise_if_any(manual_dir, problems)
  photos = [Image(image, values, votes, std, splits[image], line)
            for image, (line, values, votes, std, _) in aggregated.items()]
  return spec, photos, missing
