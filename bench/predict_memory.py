"""Peak memory of scoring a batch of large photos, as `--mode=predict` scores them.

  python -m bench.predict_memory --workdir=W [--code_root=DIR] [--threads=2,16] [--copies=8]

Each row runs in a fresh process: it imports aesthetix, loads W's Scorer,
scores one small photo (the compilation), notes its resident memory, then
scores --copies photos (default COPIES) in one batch with `predict.score_paths`, the loading
threads being as many as `os.cpu_count()` says (set to each of --threads, so
that a 2-core machine shows what a 16-core one holds). The table gives the
peak resident memory (`ru_maxrss`) above the memory before the photos.
`--code_root` runs another checkout's aesthetix (e.g. `git archive` of an
older commit) on the same photos. The photos are bench/image_memory.py's
(made once in its folder).
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile

from bench import image_memory

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIES = 8  # One batch of photos (more show the look-ahead of many cores).
MIB = 1 << 20
# (label, image_memory's file): a phone's 48 MP photo (near the pixel limit),
# a 24 MP camera photo.
PHOTOS = (('8064x6048 JPEG (48 MP)', 'phone.jpg'), ('6000x4000 JPEG (24 MP)', 'camera.jpg'))

# Runs in the fresh process: argv = workdir, threads, photos...; prints one JSON line.
_MEASURE = r'''
import json, os, resource, sys, time
import numpy as np
from PIL import Image
try:  # This checkout's layout, or an older checkout's (--code_root).
  from aesthetix.serving import predict, scorer as scorer_lib
except ImportError:
  from aesthetix import predict, scorer as scorer_lib

def rss():
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * resource.getpagesize()

def peak():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux.

workdir, threads, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
scorer = scorer_lib.Scorer.from_workdir(workdir, batch_size=len(paths))
small = os.path.join(os.path.dirname(paths[0]), 'small.png')
Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(small)
predict.score_paths(scorer, [small] * len(paths), progress=False)  # Compiles the batch.
os.cpu_count = lambda: threads
before, peak_before = rss(), peak()
start = time.perf_counter()
rows, _ = predict.score_paths(scorer, paths, progress=False)
print(json.dumps(dict(before=before, peak_before=peak_before, peak=peak(),
                      seconds=time.perf_counter() - start,
                      scored=sum(1 for r in rows if not r['error']))))
'''


def measure(code_root, workdir, threads, paths):
  out = subprocess.run([sys.executable, '-c', _MEASURE, workdir, str(threads), *paths],
                       cwd=code_root, check=True, capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu'))
  return json.loads(out.stdout.strip().splitlines()[-1])


def batch_folder(folder, name, copies):
  """`copies` links to the photo `name` of image_memory's folder, in a folder of their own."""
  batch = os.path.join(folder, f'batch_{os.path.splitext(name)[0]}')
  os.makedirs(batch, exist_ok=True)
  paths = []
  for i in range(copies):
    path = os.path.join(batch, f'{i}_{name}')
    if not os.path.exists(path):
      os.symlink(os.path.join(folder, name), path)
    paths.append(path)
  return paths


def table(code_root, workdir, folder, threads, copies):
  rows = ['| photos | loading threads | scored | peak, MiB | decoded photos held | seconds |',
          '|---|---:|---:|---:|---:|---:|']
  for label, name in PHOTOS:
    paths = batch_folder(folder, name, copies)
    for n in threads:
      r = measure(code_root, workdir, n, paths)
      extra = (r['peak'] - r['before']) / MIB
      note = ' (import peak higher)' if r['peak'] == r['peak_before'] else ''
      rgb = _rgb_mib(name)
      rows.append(f"| {copies} x {label} | {n} | {r['scored']} | {extra:,.0f}{note} | "
                  f"{extra / rgb:.1f} | {r['seconds']:.1f} |")
  return '\n'.join(rows)


def _rgb_mib(name):
  """MiB of one decoded photo of `name` (uint8 RGB)."""
  width, height = next((w, h) for _, n, w, h in image_memory.PHOTOS if n == name)
  return width * height * 3 / MIB


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True, help='a trained workdir')
  parser.add_argument('--code_root', default=REPO_ROOT,
                      help='checkout whose aesthetix is measured (default: this one)')
  parser.add_argument('--folder', default=os.path.join(tempfile.gettempdir(),
                                                       'aesthetix_image_memory'),
                      help="bench/image_memory.py's photos (made there once)")
  parser.add_argument('--threads', default='2,16', help='loading threads, comma separated')
  parser.add_argument('--copies', type=int, default=COPIES, help='photos in the batch')
  args = parser.parse_args()
  os.makedirs(args.folder, exist_ok=True)
  maker = multiprocessing.get_context('spawn').Process(target=image_memory.write_photos,
                                                       args=(args.folder,))
  maker.start()
  maker.join()
  if maker.exitcode:
    raise SystemExit(f'Making the photos in {args.folder} failed (exit {maker.exitcode}).')
  threads = [int(n) for n in args.threads.split(',')]
  print(table(os.path.abspath(args.code_root), os.path.abspath(args.workdir), args.folder,
              threads, args.copies))
  print(f'\naesthetix from {os.path.abspath(args.code_root)}, workdir {args.workdir}; one '
        'fresh process per row. Peak: ru_maxrss of scoring the batch, minus the resident '
        'memory after loading the model and scoring a batch of small photos; decoded '
        'photos held: that peak over one photo\'s RGB pixels.')


if __name__ == '__main__':
  main()
