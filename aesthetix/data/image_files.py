"""The files a user names for scoring: a file, a folder or a glob, walked once.

`find_images` serves `--mode=predict`, `--mode=gradcam` and the command line's
check of `--images`. Folders and globs share one walk, with these rules:

- **Symlinks to folders are never followed** below the root of the walk,
  neither back into the tree (the way a loop is made: `P/a -> .`) nor out of
  it (a folder elsewhere is not what the user named). To score a linked
  folder, name it: a spec that is itself a symlink to a folder, or folders
  before a glob's first wildcard, are resolved as the system resolves any path.
  Symlinks to files are followed.
- **Each file once.** Files are told apart by their real path
  (`os.path.realpath`): of two names of one file, the one that is not a symlink
  (else the first in sorted order) is listed, as the user wrote its path.
  A folder reached twice (a bind mount of a parent) is walked once.
- **Bounded.** A walk reads at most `MAX_ENTRIES` directory entries and enters
  folders at most `MAX_DEPTH` levels below its root; past either it stops with
  a `WalkLimitError` naming the spec, instead of filling the memory.
- Hidden names (starting with '.') are left out of folders and of `**`, and
  match a glob's part only when that part starts with a dot, as `glob` does.
  Everything else that is not a folder is listed, images or not (a broken
  symlink too), so that no file is skipped silently: the loader gives each
  unreadable one its reason.

Globs: `**` as a whole part matches zero or more folders, `*` and `?` never
cross a `/`, `[...]` are classes; parts are matched by `fnmatch` as
`glob.glob(spec, recursive=True)` matches them (on a tree without symlinks to
folders the files are the same).
"""

import fnmatch
import os
import re
import stat
import typing

from aesthetix.runtime import errors

# Directory entries one walk may read (matched or not): a million photos is
# more than any folder scored at once; the bound keeps a wrong spec (`/**`)
# from running for hours and out of memory.
MAX_ENTRIES = 1_000_000
# Folder levels below the root a walk may enter: far deeper than photo trees.
MAX_DEPTH = 64
# A glob part that matches zero or more folders.
RECURSIVE = '**'
HIDDEN_PREFIX = '.'
_WILDCARD = re.compile(r'[*?[]')  # The characters that make a part a pattern (as glob's).


class NoImagesError(errors.UserError, FileNotFoundError):
  """--images names no file: an empty folder, or a glob that matches nothing."""


class WalkLimitError(errors.UserError):
  """A folder or glob reaches more files or deeper folders than a walk may read."""


class _Folder(typing.NamedTuple):
  """A folder of a walk; its paths end with a separator ('' is the current folder)."""
  prefix: str       # As the user would write it: the spec's own root, then names.
  real_prefix: str  # Its real path: the root's, then names (no symlinks below it).
  depth: int        # Levels below the walk's root.
  key: tuple        # (st_dev, st_ino): the same folder reached twice.


class _File(typing.NamedTuple):
  path: str
  real: str
  is_link: bool


def find_images(spec):
  """Files named by `spec` (a file, a folder searched recursively, or a glob),
  sorted; see the module's docstring for the walk's rules.

  Raises NoImagesError when nothing is found, WalkLimitError past the bounds.
  """
  spec = os.path.expanduser(spec)
  if os.path.isfile(spec):
    return [spec]
  if os.path.isdir(spec):
    paths = _matching_files(spec, spec, [RECURSIVE])
    if not paths:
      raise NoImagesError(f'The folder {spec} holds no files.')
    return paths
  root, parts = split_pattern(spec)
  paths = _matching_files(spec, root, parts) if parts else []
  if not paths:
    raise NoImagesError(
        f'{spec!r} is not a file or a folder, and as a glob it matches no files. '
        "Quote globs so that the shell leaves them alone: --images='photos/*.jpg'.")
  return paths


def split_pattern(pattern):
  """'P/x/**/*.png' -> ('P/x', ['**', '*.png']): the folders before the first
  part with a wildcard (the walk's root; '' is the current folder) and the parts
  from it on ([] when there is no wildcard). Empty parts ('a//b') are dropped but
  a last one, which, as in glob, matches only folders (so no files)."""
  parts = pattern.split(os.sep)
  first = next((i for i, part in enumerate(parts) if _WILDCARD.search(part)), len(parts))
  root = os.sep.join(parts[:first])
  if not root and pattern.startswith(os.sep):
    root = os.sep
  rest = parts[first:]
  return root, [part for part in rest[:-1] if part] + rest[-1:]


def _matching_files(spec, root, parts):
  """Sorted paths of the files below `root` that `parts` match, each file once."""
  try:
    top = os.stat(root or os.curdir)
  except OSError:
    return []
  if not stat.S_ISDIR(top.st_mode):
    return []
  walk = _Walk(spec)
  folders = [_Folder(os.path.join(root, ''), os.path.join(os.path.realpath(root or os.curdir), ''),
                     0, (top.st_dev, top.st_ino))]
  files = []
  for i, part in enumerate(parts):
    folders, files = walk.step(folders, part, last=i == len(parts) - 1)
  return sorted(_one_name_per_file(files))


def _one_name_per_file(files):
  """Paths of `files`, one per real path: a name that is not a symlink first."""
  chosen = {}
  for f in files:
    best = chosen.get(f.real)
    if best is None or (f.is_link, f.path) < (best.is_link, best.path):
      chosen[f.real] = f
  return [f.path for f in chosen.values()]


def _is_hidden(name):
  return name.startswith(HIDDEN_PREFIX)


class _Walk:
  """One walk's listing of folders, with its rules and its bounds."""

  def __init__(self, spec):
    self.spec = spec
    self.entries = 0

  def step(self, folders, part, last):
    """(folders, files) one glob part matches inside `folders`; files only
    when `last` (the parts before the last match only folders)."""
    if part == RECURSIVE:
      return self.subtree(folders, with_files=last)
    if not _WILDCARD.search(part):
      return self.literal(folders, part, last)
    found_folders, files = [], []
    for folder in folders:
      subfolders, names = self.listing(folder)
      found_folders += [subfolders[name] for name in _matching(subfolders, part)]
      if last:
        files += [_file(folder, name, names[name]) for name in _matching(names, part)]
    return _distinct(found_folders), files

  def subtree(self, folders, with_files):
    """(`folders` and every folder below them, files in them when `with_files`),
    hidden names left out, each folder once."""
    seen, found_folders, files, stack = set(), [], [], list(reversed(folders))
    while stack:
      folder = stack.pop()
      if folder.key in seen:
        continue
      seen.add(folder.key)
      found_folders.append(folder)
      subfolders, names = self.listing(folder)
      stack += reversed([f for name, f in subfolders.items() if not _is_hidden(name)])
      if with_files:
        files += [_file(folder, name, link) for name, link in names.items()
                  if not _is_hidden(name)]
    return found_folders, files

  def literal(self, folders, name, last):
    """(folders, files) named `name` (no wildcard) inside `folders`."""
    found_folders, files = [], []
    for folder in folders:
      path = folder.prefix + name
      try:
        info = os.lstat(path or os.curdir)
      except OSError:
        continue
      real = os.path.realpath(path or os.curdir)
      if stat.S_ISDIR(info.st_mode):
        found_folders.append(_Folder(os.path.join(path, ''), os.path.join(real, ''),
                                     folder.depth + 1, (info.st_dev, info.st_ino)))
      elif last and not (stat.S_ISLNK(info.st_mode) and os.path.isdir(path)):
        files.append(_File(path, real, stat.S_ISLNK(info.st_mode)))
    return _distinct(found_folders), files

  def listing(self, folder):
    """({name: _Folder} of the real folders in `folder`, {name: is a symlink} of
    every other entry but symlinks to folders, which are neither)."""
    if folder.depth > MAX_DEPTH:
      raise WalkLimitError(
          f'{self.spec!r}: {folder.prefix} is more than {MAX_DEPTH} folders below the '
          'start of the walk; name a folder nearer the photos.')
    folders, files = {}, {}
    try:
      with os.scandir(folder.prefix or os.curdir) as entries:
        for entry in entries:
          self.entries += 1
          if self.entries > MAX_ENTRIES:
            raise WalkLimitError(
                f'{self.spec!r} reaches more than {MAX_ENTRIES:,} files and folders; '
                'name a smaller folder or a narrower glob.')
          name = entry.name
          try:
            if entry.is_dir(follow_symlinks=False):
              info = entry.stat(follow_symlinks=False)
              folders[name] = _Folder(folder.prefix + name + os.sep,
                                      folder.real_prefix + name + os.sep,
                                      folder.depth + 1, (info.st_dev, info.st_ino))
              continue
            link = entry.is_symlink()
          except OSError:  # Gone since the listing: as glob and os.walk, skip it.
            continue
          if not (link and _leads_to_folder(entry)):
            files[name] = link
    except OSError:  # A folder that cannot be listed: as glob and os.walk, nothing inside.
      pass
    return folders, files


def _file(folder, name, is_link):
  """The _File `name` in `folder`: its real path is the folder's and its name,
  but for a symlink."""
  path = folder.prefix + name
  return _File(path, os.path.realpath(path) if is_link else folder.real_prefix + name, is_link)


def _matching(names, part):
  """The names (of a folder) glob part `part` matches; hidden ones only when
  `part` starts with a dot, as in glob."""
  if not _is_hidden(part):
    names = [name for name in names if not _is_hidden(name)]
  return fnmatch.filter(names, part)


def _leads_to_folder(entry):
  """Whether a symlink's target is a folder (a broken or looping link is not)."""
  try:
    return entry.is_dir()
  except OSError:
    return False


def _distinct(folders):
  """`folders` without repeats of one folder (by device and inode), in order."""
  seen, kept = set(), []
  for folder in folders:
    if folder.key not in seen:
      seen.add(folder.key)
      kept.append(folder)
  return kept
