"""Reading the archives users download by hand: folders, zips and split zips.

Datasets arrive as a folder, its `.zip`, or a zip cut into numbered parts
(`NAME.zip.001`, `NAME.zip.002`, ...: concatenated, they form one zip). A
`FileIndex` finds files by base name in any of these, so the nesting inside an
archive does not matter, and names every file by where it came from so that
errors can point at it.
"""

import io
import pathlib
import re
import zipfile

from absl import logging
from PIL import Image

from aesthetix.runtime import errors

# Entries macOS adds to zips; never data.
_JUNK = re.compile(r'(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$)')
_PART = re.compile(r'\.(\d{3})$')
# Re-encoding quality for the rare image that is not a plain RGB JPEG.
JPEG_QUALITY = 95


class ManualFileError(errors.UserError, FileNotFoundError):
  """A file the user must download is missing or unusable."""


class UnreadableImageError(errors.UserError, ValueError):
  """An image file does not decode completely."""


class DataFileError(errors.UserError, ValueError):
  """A downloaded file (a label list, a votes table) that does not parse; the
  message names the file, the line and the fix."""


class ConcatReader(io.RawIOBase):
  """A read-only, seekable view of several files as one (split zip parts)."""

  def __init__(self, paths):
    super().__init__()
    self._paths = [pathlib.Path(p) for p in paths]
    self._sizes = [p.stat().st_size for p in self._paths]
    self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
    self._size = sum(self._sizes)
    self._pos = 0
    self._files = [open(p, 'rb') for p in self._paths]  # pylint: disable=consider-using-with

  def readable(self):
    return True

  def seekable(self):
    return True

  def tell(self):
    return self._pos

  def seek(self, offset, whence=io.SEEK_SET):
    base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
    self._pos = max(0, base + offset)
    return self._pos

  def readinto(self, buffer):
    view = memoryview(buffer).cast('B')
    done = 0
    while done < len(view) and self._pos < self._size:
      part = max(i for i, s in enumerate(self._starts) if s <= self._pos)
      f = self._files[part]
      f.seek(self._pos - self._starts[part])
      want = min(len(view) - done, self._starts[part] + self._sizes[part] - self._pos)
      n = f.readinto(view[done:done + want])
      if not n:
        break
      done += n
      self._pos += n
    return done

  def close(self):
    for f in self._files:
      f.close()
    super().close()


def split_zip_parts(first_part):
  """All parts `X.zip.001`, `X.zip.002`, ... of the split zip `first_part`."""
  first_part = pathlib.Path(first_part)
  stem = first_part.name[:-len('.001')]
  parts = sorted(first_part.parent.glob(stem + '.[0-9][0-9][0-9]'))
  numbers = [int(_PART.search(p.name).group(1)) for p in parts]
  expected = list(range(1, len(parts) + 1))
  if numbers != expected:
    missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    raise ManualFileError(
        f'Split zip {first_part.parent / stem}: parts found {numbers}, missing '
        f'{[f"{stem}.{m:03d}" for m in missing]}. Download every part into '
        f'{first_part.parent}.')
  return parts


class FileIndex:
  """Files by base name, from a folder, a zip or a split zip.

  `read(name)` returns a file's bytes; `origin(name)` says where it came from
  ('archive.zip:inner/path' or a path), for error messages.
  """

  def __init__(self, source):
    self.source = pathlib.Path(source)
    self._zip = None
    self._entries = {}  # base name -> path (folder) or ZipInfo (zip)
    name = self.source.name
    if self.source.is_dir():
      for path in sorted(self.source.rglob('*')):
        rel = path.relative_to(self.source).as_posix()
        if path.is_file() and not _JUNK.search(rel):
          self._entries.setdefault(path.name, path)
      return
    if _PART.search(name):
      stream = io.BufferedReader(ConcatReader(split_zip_parts(self.source)),
                                 buffer_size=1 << 20)
    else:
      stream = self.source
    try:
      self._zip = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as e:
      raise ManualFileError(
          f'{self.source} is not a readable zip ({e}). Download it again'
          + (' (every part, then keep them side by side).' if _PART.search(name)
             else '.')) from e
    for info in self._zip.infolist():
      if not info.is_dir() and not _JUNK.search(info.filename):
        self._entries.setdefault(posix_basename(info.filename), info)

  def names(self):
    return list(self._entries)

  def __contains__(self, name):
    return name in self._entries

  def __len__(self):
    return len(self._entries)

  def origin(self, name):
    entry = self._entries[name]
    if self._zip is None:
      return str(entry)
    return f'{self.source}:{entry.filename}'

  def read(self, name):
    entry = self._entries[name]
    if self._zip is None:
      return entry.read_bytes()
    try:
      return self._zip.read(entry)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
      raise UnreadableImageError(f'{self.origin(name)}: cannot extract ({e}).') from e

  def read_text(self, name):
    """Text of file `name` (UTF-8; a byte order mark is dropped)."""
    return self.read(name).decode('utf-8-sig')


def posix_basename(path):
  return path.rstrip('/').rsplit('/', 1)[-1]


def find_source(manual_dir, candidates, what):
  """The first of `candidates` (paths relative to `manual_dir`) that exists, indexed.

  A candidate ending in '.001' is the first part of a split zip.
  """
  manual_dir = pathlib.Path(manual_dir)
  for c in candidates:
    path = manual_dir / c
    if path.exists():
      logging.info('Reading %s from %s', what, path)
      return FileIndex(path)
  raise ManualFileError(
      f'{what} not found in the manual directory {manual_dir}. Place one of '
      f'these there: {", ".join(candidates)}.')


def missing_sources(manual_dir, required):
  """What of `required` ((what, candidates) pairs) has none of its candidates in
  `manual_dir`: one line each, for a check before a build."""
  manual_dir = pathlib.Path(manual_dir)
  return [f'{what}: none of {", ".join(candidates)} in {manual_dir}'
          for what, candidates in required
          if not any((manual_dir / c).exists() for c in candidates)]


def find_file(manual_dir, candidates):
  """Path of the first of `candidates` (relative to `manual_dir`) that exists, or None."""
  for c in candidates:
    path = pathlib.Path(manual_dir) / c
    if path.is_file():
      return path
  return None


def checked_jpeg(data, origin):
  """`data` as JPEG bytes, after checking that the image decodes completely.

  A plain RGB JPEG is kept byte for byte, as distributed; anything else (other
  formats, grayscale, CMYK) is converted to RGB and encoded as JPEG so that
  every stored image decodes the same way. Raises UnreadableImageError.
  """
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()  # Decodes every pixel: catches truncated and corrupt files.
      if im.format == 'JPEG' and im.mode == 'RGB':
        return data
      out = io.BytesIO()
      im.convert('RGB').save(out, format='JPEG', quality=JPEG_QUALITY)
      return out.getvalue()
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise UnreadableImageError(
        f'{origin}: image does not decode ({e}). Replace the file with an intact '
        'copy from the dataset\'s download, or build with skip_unreadable=True '
        '(--config.dataset.skip_unreadable=True) to leave it out.') from e


class ImageReader:
  """Reads and checks images, failing or skipping (and counting) unreadable ones."""

  def __init__(self, skip_unreadable):
    self.skip_unreadable = skip_unreadable
    self.skipped = []  # origins of the images left out

  def __call__(self, index, name):
    """JPEG bytes of `name` in `index`, or None when skipped."""
    origin = index.origin(name)
    try:
      return checked_jpeg(index.read(name), origin)
    except UnreadableImageError as e:
      if not self.skip_unreadable:
        raise
      logging.warning('Skipping unreadable image: %s', e)
      self.skipped.append(origin)
      return None

  def report(self, split, total):
    if self.skipped:
      logging.warning('%s: skipped %d of %d images as unreadable: %s', split,
                      len(self.skipped), total, ', '.join(self.skipped))

