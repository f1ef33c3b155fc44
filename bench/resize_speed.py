"""Milliseconds per resize: TensorFlow eager (as scoring called it) vs NumPy.

  python -m bench.resize_speed [--size=224] [--method=bilinear] [--runs=20]

For each input shape, a random uint8 RGB image is resized to SIZE x SIZE by
`resize.tf_resize` (tf.image.resize, eagerly, then `np.asarray`:
what `images.model_input` does) and by `aesthetix.data.resize.resize`; the
table gives the median of RUNS timed calls of each after warm-up, and whether
the two outputs are the same bytes.
"""

import time

from absl import app
from absl import flags
import numpy as np

from aesthetix.data import resize
from bench import rates

# (height, width): phone photos (landscape, portrait), full HD, a small photo,
# AADB's warped images.
SHAPES = ((3000, 4000), (4032, 3024), (1080, 1920), (600, 512), (256, 256))
WARMUP_CALLS = 2


def median_ms(call, runs):
  """Milliseconds of one `call()`: the median of `runs` timed calls after warm-up."""
  for _ in range(WARMUP_CALLS):
    call()
  seconds = []
  for _ in range(runs):
    start = time.perf_counter()
    call()
    seconds.append(time.perf_counter() - start)
  return 1e3 * float(np.median(seconds))


def speed_rows(shapes, size, method, runs, seed=0):
  """[(shape, tf ms, numpy ms, same bytes)] for a random image of each shape."""
  rng = np.random.default_rng(seed)
  rows = []
  for shape in shapes:
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    tf_resize = lambda: np.asarray(resize.tf_resize(image, size, method))
    np_resize = lambda: resize.resize(image, size, method)
    same = bool(np.array_equal(tf_resize(), np_resize()))
    rows.append((shape, median_ms(tf_resize, runs), median_ms(np_resize, runs), same))
  return rows


def table(rows, size, method, runs):
  """A Markdown table of `speed_rows`, with the machine it was measured on."""
  lines = [f'Resize to {size}x{size} ({method}), median of {runs} runs; machine: '
           f'{rates.cpu_model()}.', '',
           '| input (H x W) | TF eager ms | NumPy ms | speed-up | same bytes |',
           '|---|---|---|---|---|']
  for (h, w), tf_ms, np_ms, same in rows:
    lines.append(f'| {h} x {w} | {tf_ms:.2f} | {np_ms:.2f} | {tf_ms / np_ms:.1f}x | '
                 f'{"yes" if same else "NO"} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  f = flags.FLAGS
  rows = speed_rows(SHAPES, f.size, f.method, f.runs)
  print(table(rows, f.size, f.method, f.runs))


if __name__ == '__main__':
  flags.DEFINE_integer('size', 224, 'Output side in pixels.')
  flags.DEFINE_enum('method', 'bilinear', list(resize.SUPPORTED_METHODS), 'Resize method.')
  flags.DEFINE_integer('runs', 20, 'Timed calls per cell (the median is shown).')
  app.run(main)
