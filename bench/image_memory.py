"""Peak memory of reading photos as scoring reads them: `images.load_image`, then
the resize to the model's input (`resize.tf_resize`, 224 x 224).

  python -m bench.image_memory [--code_root=DIR] [--folder=DIR]

Each case runs in a fresh process, which imports aesthetix (TensorFlow with it),
loads and resizes a small photo (TensorFlow's first allocations), notes its
resident memory, then reads the case's photo `count` times in a row, keeping only
the resized pixels, as a scoring batch does. The table gives the peak resident
memory (`ru_maxrss`) above the memory before the photos. `--code_root` runs
another checkout's aesthetix (e.g. `git archive` of an older commit) on the
same photos.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from PIL import ImageDraw

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_SIZE = 224
# (name, file, width, height): a huge flat PNG that compresses to under half a
# megabyte and the same as a JPEG (both over the limit), a phone's 48 MP photo
# (near the limit), and a 24 MP camera photo: as stored, stored sideways with an
# EXIF rotation, and as a 16-bit grayscale PNG.
PHOTOS = (('12000x12000 PNG', 'huge.png', 12000, 12000),
          ('12000x12000 JPEG', 'huge.jpg', 12000, 12000),
          ('8064x6048 JPEG (48 MP)', 'phone.jpg', 8064, 6048),
          ('6000x4000 JPEG', 'camera.jpg', 6000, 4000),
          ('4000x6000 JPEG, EXIF-rotated', 'rotated.jpg', 4000, 6000),
          ('6000x4000 16-bit gray PNG', 'sixteen_bit.png', 6000, 4000))
EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # EXIF: rotate 90 degrees clockwise to display.
COPIES = 8  # Photos read in a row: a scoring batch's worth.
JPEG_QUALITY = 90
MIB = 1 << 20

# Runs in the fresh process: argv = photo path, count; prints one JSON line.
_MEASURE = r'''
import json, resource, sys, time
import numpy as np
try:  # This checkout's layout, or an older checkout's (--code_root).
  from aesthetix.data import images
  from aesthetix.data.resize import tf_resize
except ImportError:
  from aesthetix import images, input_pipeline
  tf_resize = input_pipeline.resize_image

def rss():
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * resource.getpagesize()

def peak():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux.

path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
np.asarray(tf_resize(np.zeros((64, 64, 3), np.uint8), size))
before, peak_before = rss(), peak()
start, kept, reason, load_peak = time.perf_counter(), [], '', None
for _ in range(count):
  try:
    pixels = images.load_image(path)
  except images.ImageError as e:
    reason = e.reason
    continue
  load_peak = load_peak or peak()  # The first read's, before its resize.
  kept.append(np.asarray(tf_resize(pixels, size)))
  del pixels
print(json.dumps(dict(before=before, peak_before=peak_before, peak=peak(),
                      load_peak=load_peak or peak(),
                      seconds=time.perf_counter() - start, scored=len(kept),
                      reason=reason)))
'''


def flat_picture(width, height):
  """A few flat shapes on a flat ground: compresses well, still a picture."""
  image = Image.new('RGB', (width, height), (200, 180, 150))
  draw = ImageDraw.Draw(image)
  for i in range(8):
    draw.rectangle((i * width // 8, i * height // 12, i * width // 8 + width // 6,
                    i * height // 12 + height // 4), fill=(30 * i, 255 - 30 * i, 120))
  return image


def camera_picture(width, height, seed=0):
  """Smooth colours with sensor-like grain: a JPEG the size a camera's is."""
  rng = np.random.default_rng(seed)
  small = Image.fromarray(rng.integers(0, 256, (40, 60, 3), np.uint8))
  smooth = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC))
  grain = rng.integers(-6, 7, smooth.shape, np.int16)
  return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def write_photos(folder):
  """The photos of PHOTOS in `folder` (made once; kept for other checkouts' runs)."""
  for _, name, width, height in PHOTOS:
    path = os.path.join(folder, name)
    if os.path.exists(path):
      continue
    options = {'quality': JPEG_QUALITY} if name.endswith('.jpg') else {}
    if name.startswith('huge'):
      image = flat_picture(width, height)
    elif name == 'rotated.jpg':  # Stored sideways: width and height swap when shown.
      image = camera_picture(height, width)
      exif = Image.Exif()
      exif[EXIF_ORIENTATION] = ROTATED_90_CW
      options['exif'] = exif
    elif name == 'sixteen_bit.png':
      ramp = np.linspace(0, 65535, width, dtype=np.float64)[None, :] * np.ones((height, 1))
      image = Image.fromarray(ramp.astype(np.uint16))
    else:
      image = camera_picture(width, height)
    image.save(path, **options)
  return folder


def measure(code_root, path, count):
  """The fresh process's JSON dict for `count` reads of `path`."""
  out = subprocess.run([sys.executable, '-c', _MEASURE, path, str(count), str(MODEL_SIZE)],
                       cwd=code_root, check=True, capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  return json.loads(out.stdout.strip().splitlines()[-1])


def table(code_root, folder):
  rows = ['| photo | file | reads | scored | peak, MiB | bytes per pixel | '
          'load_image alone: peak, MiB | bytes per pixel | seconds | refused because |',
          '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|']
  for label, name, width, height in PHOTOS:
    path = os.path.join(folder, name)
    for count in (1, COPIES):
      r = measure(code_root, path, count)
      extra = (r['peak'] - r['before']) / MIB
      note = ' (import peak higher)' if r['peak'] == r['peak_before'] else ''
      load = (r['load_peak'] - r['before']) / MIB
      pixels = width * height / MIB
      rows.append(f"| {label} | {os.path.getsize(path) / 1e3:,.0f} KB | {count} | "
                  f"{r['scored']} | {extra:,.0f}{note} | {extra / pixels:.1f} | "
                  f"{load:,.0f} | {load / pixels:.1f} | {r['seconds']:.2f} | "
                  f"{r['reason'][:60]} |")
  return '\n'.join(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--code_root', default=REPO_ROOT,
                      help='checkout whose aesthetix is measured (default: this one)')
  parser.add_argument('--folder', default=os.path.join(tempfile.gettempdir(),
                                                       'aesthetix_image_memory'),
                      help='where the photos are made (once)')
  args = parser.parse_args()
  os.makedirs(args.folder, exist_ok=True)
  # Made in a process of their own: a child inherits its parent's peak memory
  # (ru_maxrss), which the huge photos would otherwise set for every row.
  maker = multiprocessing.get_context('spawn').Process(target=write_photos, args=(args.folder,))
  maker.start()
  maker.join()
  if maker.exitcode:
    raise SystemExit(f'Making the photos in {args.folder} failed (exit {maker.exitcode}).')
  print(table(os.path.abspath(args.code_root), args.folder))
  print(f'\naesthetix from {os.path.abspath(args.code_root)}; one fresh process per row. '
        'Peak: ru_maxrss of reading and resizing the photos to '
        f'{MODEL_SIZE} x {MODEL_SIZE} (the last column: of the first load_image alone), '
        'minus the resident memory after imports and a warm-up resize; bytes per '
        'pixel of one photo.')


if __name__ == '__main__':
  main()
