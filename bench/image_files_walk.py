"""Time of listing --images: `image_files.find_images` on a tree of many files.

  python -m bench.image_files_walk [--code_root=DIR] [--folders=N] [--files=N]

Makes a tree (once) of `--folders` folders of `--files` empty files each, then
times the folder form and two globs, best of `REPEATS`, in a fresh process
running the aesthetix of `--code_root` (another checkout: e.g. `git archive`
of an older commit), so that the two walks are timed on the same tree.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPEATS = 3
# Each spec relative to the tree's root.
SPECS = ('', '**/*.jpg', '*/photo_001*.jpg')

_TIME = r'''
import json, os, sys, time
try:  # This checkout's one walk, or an older checkout's (--code_root).
  from aesthetix.data.image_files import find_images
except ImportError:
  from aesthetix.preflight import find_images
root, repeats, specs = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
out = {}
for spec in specs:
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    found = find_images(os.path.join(root, spec) if spec else root)
    best = min(best, time.perf_counter() - start)
  out[spec] = (best, len(found))
print(json.dumps(out))
'''


def make_tree(root, folders, files):
  """`folders` folders of `files` empty .jpg files under `root` (kept for reruns)."""
  done = os.path.join(root, '.complete')
  if os.path.exists(done):
    return
  for i in range(folders):
    folder = os.path.join(root, f'folder_{i:05d}')
    os.makedirs(folder, exist_ok=True)
    for j in range(files):
      open(os.path.join(folder, f'photo_{j:04d}.jpg'), 'wb').close()
  open(done, 'wb').close()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--code_root', default=REPO_ROOT)
  parser.add_argument('--folders', type=int, default=1000)
  parser.add_argument('--files', type=int, default=100)
  args = parser.parse_args()
  root = os.path.join(tempfile.gettempdir(), f'aesthetix_walk_{args.folders}x{args.files}')
  make_tree(root, args.folders, args.files)
  out = subprocess.run([sys.executable, '-c', _TIME, root, str(REPEATS), json.dumps(SPECS)],
                       cwd=os.path.abspath(args.code_root), capture_output=True, text=True)
  if out.returncode:
    raise SystemExit(out.stderr)
  times = json.loads(out.stdout.strip().splitlines()[-1])
  print('| --images | files found | seconds (best of %d) |' % REPEATS)
  print('|---|---:|---:|')
  for spec in SPECS:
    seconds, found = times[spec]
    print(f'| {spec or "the folder"} | {found:,} | {seconds:.3f} |')
  print(f'\naesthetix from {os.path.abspath(args.code_root)}; tree {root}: '
        f'{args.folders:,} folders of {args.files:,} files.')


if __name__ == '__main__':
  main()
