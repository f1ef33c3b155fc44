"""The walk of --images: looping symlinks, linked folders and files, hidden
names, glob semantics (against glob.glob), and the walk's bounds."""

import glob
import os
import threading

import pytest

from aesthetix.runtime import errors
from aesthetix.data import image_files

# A looping walk never ends: a test waits this long before it calls it a hang.
HANG_SECONDS = 30
# A tree without symlinks: folders, hidden names, files of several kinds.
TREE = ('x1.jpg', 'x2.png', 'notes.txt', '.hidden.jpg',
        'a/x1.jpg', 'a/xy.jpg', 'a/xyz.jpg', 'a/b/deep.png', 'a/b/c/deeper.jpg',
        'a/.dot/x1.jpg', 'b/x3.jpg', 'b/.x4.jpg', 'ab/z.jpg', 'ab/z.png', 'c/y.JPG',
        '.hidden/x9.jpg', '.hidden/sub/y.png', 'd/e/f.png')
PATTERNS = ('P/**/*.png', 'P/*/x?.jpg', 'P/**', 'P/[ab]*/*.jpg', 'P/**/*', 'P/*',
            'P/*.*', 'P/.*', 'P/*/.*', 'P/.*/*.jpg', 'P/.hidden/**', 'P/**/.*',
            'P/*/*/*.png', 'P/[!a]*/*', 'P/**/x1.jpg', 'P/a/**/*.png', 'P/**/b/*.png',
            'P/**/**/*.png', 'P/?/*', 'P/a/*/c/*', 'P/*/', 'P/**/*.heic', 'P/[xy]*',
            'P/a/x[!y]*.jpg', 'P/*/x*[0-9].jpg', 'P/c/*.jpg', 'P/**/', '**/*.png',
            '*/a/*.jpg', 'P/a/../b/*.jpg')
# Of PATTERNS, those that match no file: folders only, no such name, case matters.
NO_FILES = {'P/*/', 'P/**/', 'P/**/*.heic', 'P/c/*.jpg'}


def make(root, names):
  """Files (a few bytes each) at the relative paths `names` under `root`."""
  for name in names:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(name.encode())
  return root


def relative(paths, root):
  return [os.path.relpath(p, root) for p in paths]


def without_hang(fn, *args):
  """fn(*args), failing the test (not hanging it) when it does not return."""
  result = {}
  thread = threading.Thread(target=lambda: result.update(value=fn(*args)), daemon=True)
  thread.start()
  thread.join(HANG_SECONDS)
  assert not thread.is_alive(), f'{fn.__name__}{args} did not return in {HANG_SECONDS} s'
  return result['value']


def expected_glob(spec):
  """What the old find_images gave for a glob: glob.glob's files, sorted."""
  spec = os.path.expanduser(spec)
  return sorted({p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)})


@pytest.mark.parametrize('loops', [('a',), ('a', 'b')])
@pytest.mark.parametrize('form', ['folder', 'glob'])
def test_looping_folder_symlinks_list_each_photo_once(tmp_path, loops, form):
  photos = make(tmp_path / 'P', ['one.png', 'sub/two.png'])
  for name in loops:
    os.symlink('.', photos / name)  # P/a -> P: every path below P/a is P again.
  os.symlink('..', photos / 'sub' / 'up')  # And one back up from a subfolder.
  spec = str(photos) if form == 'folder' else str(photos / '**' / '*.png')
  found = without_hang(image_files.find_images, spec)
  assert found == [str(photos / 'one.png'), str(photos / 'sub' / 'two.png')]


def test_a_symlink_to_a_folder_outside_is_not_followed_unless_named(tmp_path):
  photos = make(tmp_path / 'P', ['mine.jpg'])
  elsewhere = make(tmp_path / 'elsewhere', ['theirs.jpg', 'more/also.jpg'])
  os.symlink(elsewhere, photos / 'linked')
  inside = [str(photos / 'mine.jpg')]
  assert image_files.find_images(str(photos)) == inside
  assert image_files.find_images(str(photos / '**' / '*.jpg')) == inside
  with pytest.raises(FileNotFoundError, match='matches no files'):
    image_files.find_images(str(photos / '*' / '*.jpg'))
  # Named, as the folder itself or as a glob's root, the linked folder is walked,
  # and its files keep the path the user gave.
  linked = [str(photos / 'linked' / 'more' / 'also.jpg'), str(photos / 'linked' / 'theirs.jpg')]
  assert image_files.find_images(str(photos / 'linked')) == linked
  assert image_files.find_images(str(photos / 'linked' / '**' / '*.jpg')) == linked


def test_file_symlinks_are_followed_and_each_file_listed_once(tmp_path):
  photos = make(tmp_path / 'P', ['real.jpg', 'sub/other.jpg'])
  outside = make(tmp_path / 'E', ['far.jpg'])
  os.symlink('real.jpg', photos / 'alias.jpg')             # The same file again.
  os.symlink('../real.jpg', photos / 'sub' / 'again.jpg')   # And from a subfolder.
  os.symlink(outside / 'far.jpg', photos / 'far_1.jpg')    # A file elsewhere, twice:
  os.symlink(outside / 'far.jpg', photos / 'far_2.jpg')    # the first name is kept.
  os.symlink(tmp_path / 'gone.jpg', photos / 'broken.jpg')  # Listed: its row says why.
  expected = ['broken.jpg', 'far_1.jpg', 'real.jpg', 'sub/other.jpg']
  assert relative(image_files.find_images(str(photos)), photos) == expected
  assert relative(image_files.find_images(str(photos / '**' / '*.jpg')), photos) == expected
  assert image_files.find_images(str(photos / 'alias.jpg')) == [str(photos / 'alias.jpg')]


def test_hidden_names_are_left_out_unless_a_pattern_starts_with_a_dot(tmp_path):
  photos = make(tmp_path / 'P', ['seen.jpg', '.unseen.jpg', '.dir/inside.jpg',
                                 'sub/.also_unseen.jpg', 'sub/seen_too.jpg'])
  assert relative(image_files.find_images(str(photos)), photos) == ['seen.jpg',
                                                                    'sub/seen_too.jpg']
  assert relative(image_files.find_images(str(photos / '*')), photos) == ['seen.jpg']
  assert relative(image_files.find_images(str(photos / '.*')), photos) == ['.unseen.jpg']
  assert relative(image_files.find_images(str(photos / '**' / '.*')), photos) == [
      '.unseen.jpg', 'sub/.also_unseen.jpg']
  assert relative(image_files.find_images(str(photos / '.dir' / '*')), photos) == [
      '.dir/inside.jpg']
  assert relative(image_files.find_images(str(photos / '.dir')), photos) == ['.dir/inside.jpg']


@pytest.mark.parametrize('form', ['relative', 'absolute', 'home'])
def test_globs_match_as_glob_does_on_a_tree_without_symlinks(tmp_path, monkeypatch, form):
  make(tmp_path / 'P', TREE)
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('HOME', str(tmp_path))
  prefix = {'relative': '', 'absolute': str(tmp_path) + os.sep, 'home': '~' + os.sep}[form]
  empty = set()
  for pattern in PATTERNS:
    spec = prefix + pattern
    expected = expected_glob(spec)
    if expected:
      assert image_files.find_images(spec) == expected, spec
    else:
      empty.add(pattern)
      with pytest.raises(FileNotFoundError, match='matches no files'):
        image_files.find_images(spec)
  assert empty == NO_FILES  # The others matched files, the same as glob's.


def test_a_folder_lists_what_glob_lists_for_its_double_star(tmp_path):
  photos = make(tmp_path / 'P', TREE)
  assert image_files.find_images(str(photos)) == expected_glob(str(photos / '**'))
  assert image_files.find_images(str(photos) + os.sep) == expected_glob(
      str(photos) + os.sep + '**')


def test_a_file_and_the_errors_of_nothing_found(tmp_path):
  photos = make(tmp_path / 'P', ['one.jpg'])
  (tmp_path / 'empty' / 'sub').mkdir(parents=True)
  assert image_files.find_images(str(photos / 'one.jpg')) == [str(photos / 'one.jpg')]
  with pytest.raises(FileNotFoundError, match='holds no files'):
    image_files.find_images(str(tmp_path / 'empty'))
  for spec in (photos / 'no_such.jpg', tmp_path / 'nowhere' / '*.jpg', photos / '*.heic'):
    with pytest.raises(FileNotFoundError, match='matches no files'):
      image_files.find_images(str(spec))


@pytest.mark.parametrize('pattern', ['P/a/**/*.png', 'P/**/x1.jpg', '/P/*', '*/a/*.jpg',
                                     'P/a//*/b', 'P/'])
def test_split_pattern_keeps_the_folders_before_the_first_wildcard(pattern):
  root, parts = image_files.split_pattern(pattern)
  expected = {'P/a/**/*.png': ('P/a', ['**', '*.png']), 'P/**/x1.jpg': ('P', ['**', 'x1.jpg']),
              '/P/*': ('/P', ['*']), '*/a/*.jpg': ('', ['*', 'a', '*.jpg']),
              'P/a//*/b': ('P/a/', ['*', 'b']), 'P/': ('P/', [])}[pattern]
  assert (root, parts) == expected


@pytest.mark.parametrize('form', ['folder', 'glob'])
def test_a_walk_past_its_entries_stops_with_an_error_naming_the_spec(tmp_path, monkeypatch,
                                                                      form):
  photos = make(tmp_path / 'P', [f'{i}.jpg' for i in range(6)])
  monkeypatch.setattr(image_files, 'MAX_ENTRIES', 6)
  spec = str(photos) if form == 'folder' else str(photos / '*.jpg')
  assert len(image_files.find_images(spec)) == 6  # At the bound: fine.
  make(photos, ['one_more.jpg'])
  with pytest.raises(image_files.WalkLimitError, match='more than 6 files and folders') as e:
    image_files.find_images(spec)
  assert spec in str(e.value) and isinstance(e.value, errors.UserError)


@pytest.mark.parametrize('form', ['folder', 'glob'])
def test_a_walk_past_its_depth_stops_with_an_error_naming_the_spec(tmp_path, monkeypatch, form):
  photos = make(tmp_path / 'P', ['1/2/3/deep.jpg'])
  monkeypatch.setattr(image_files, 'MAX_DEPTH', 3)
  spec = str(photos) if form == 'folder' else str(photos / '**' / '*.jpg')
  assert relative(image_files.find_images(spec), photos) == ['1/2/3/deep.jpg']
  make(photos, ['1/2/3/4/deeper.jpg'])
  with pytest.raises(image_files.WalkLimitError, match='more than 3 folders below') as e:
    image_files.find_images(spec)
  assert spec in str(e.value)
