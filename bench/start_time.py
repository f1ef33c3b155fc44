"""How long a user waits for a first score: fresh processes, timed from outside.

  python -m bench.start_time --workdir=W [--photo=P] [--runs=3] [--code_root=DIR]

Each row is a command run --runs times, each in a fresh process, after one
untimed run of it (so that the persistent compilation cache, the whole
executables and the page cache are warm, as they are for a user's second
command); the table gives each run's wall time and its CPU time (user +
sys of the process and its children) as `min / median / max`:

- `python -c pass` and `python -c "import jax"`: the floors, the interpreter
  and JAX's own import;
- `import aesthetix` (the package loads its wings lazily);
- `compilation_cache.setup()`, `Scorer.from_workdir(W)` then `score([P])`, in
  Python (as the README tells a server to);
- `run.py --mode=predict --workdir=W --images=P`, the whole command.

--code_root runs another checkout's aesthetix (e.g. `git worktree add` of an
older commit) in the same way, for a before/after table on one machine. The
cache is a folder of this run's own (AESTHETIX_CACHE_DIR), not the user's.
P defaults to a 640x480 JPEG of noise written in that folder.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = 3
PHOTO_SHAPE = (480, 640, 3)
LIMIT_S = 600

# As the README tells a server to: the persistent cache set up, then the Scorer.
SCORE = ('import sys, aesthetix; from aesthetix.runtime import compilation_cache; '
         'compilation_cache.setup(); '
         'aesthetix.Scorer.from_workdir(sys.argv[1]).score([sys.argv[2]])')


def commands(workdir, photo):
  """(label, argv) of each row."""
  py = sys.executable
  return [
      ('python -c pass', [py, '-c', 'pass']),
      ('python -c "import jax"', [py, '-c', 'import jax']),
      ('import aesthetix', [py, '-c', 'import aesthetix']),
      ('setup(); Scorer.from_workdir(W).score([photo])', [py, '-c', SCORE, workdir, photo]),
      ('run.py --mode=predict, one photo', [py, 'run.py', '--mode=predict',
                                            f'--workdir={workdir}', f'--images={photo}',
                                            '--output=' + os.devnull]),
  ]


def timed(argv, cwd, env):
  """(wall seconds, CPU seconds) of one fresh process."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=LIMIT_S)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if done.returncode:
    raise SystemExit(f'{argv[1:3]} failed:\n{done.stderr[-2000:]}')
  return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def spread(values):
  return f'{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}'


def table(rows):
  lines = ['| command (fresh process, warm caches) | wall, s | CPU, s |', '|---|---:|---:|']
  lines += [f'| {label} | {spread(w)} | {spread(c)} |' for label, w, c in rows]
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--photo')
  parser.add_argument('--runs', type=int, default=RUNS)
  parser.add_argument('--code_root', default=REPO_ROOT)
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory(prefix='start_time_') as folder:
    photo = args.photo or os.path.join(folder, 'photo.jpg')
    if not args.photo:
      pixels = np.random.default_rng(0).integers(0, 256, PHOTO_SHAPE, np.uint8)
      Image.fromarray(pixels).save(photo, quality=90)
    env = dict(os.environ, AESTHETIX_CACHE_DIR=os.path.join(folder, 'cache'),
               PYTHONPATH=args.code_root)
    for name in ('JAX_COMPILATION_CACHE_DIR', 'XLA_FLAGS'):
      env.pop(name, None)  # As a user's shell has it.
    rows = []
    for label, command in commands(os.path.abspath(args.workdir), photo):
      timed(command, args.code_root, env)  # Warms the caches.
      runs = [timed(command, args.code_root, env) for _ in range(args.runs)]
      rows.append((label, [w for w, _ in runs], [c for _, c in runs]))
    load = os.getloadavg()[0]
  print(table(rows))
  print(f'\n{args.runs} runs each, min / median / max; {args.code_root}; load average '
        f'{load:.1f} at the end.')


if __name__ == '__main__':
  main()
