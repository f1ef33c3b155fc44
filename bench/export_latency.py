"""Size, latency and score drift of every export format beside the Scorer's.

  python -m bench.export_latency --workdir=W [--output=table.md]

Exports W's model in every format (TFLite also with float16 and dynamic-range
int8 weights) to a temporary folder, then measures on this machine: the
model's size on disk, the latency of one image and of a batch of 64 (median
of timed calls after warm-up), the largest difference from the Scorer's
scores in unit scale on the test split, and, for the quantized models, the
Spearman rho between their scores and the float32 model's (the test split's
images, as the model sees them).
"""

import os
import tempfile

from absl import app
from absl import flags
import jax
import numpy as np
import scipy.stats

from aesthetix.data import input_pipeline
from aesthetix.serving import export
from aesthetix.serving import scorer as scorer_lib
from bench import rates

BATCH = 64
TIMED_CALLS = 10


def test_pixels(plan, limit):
  """uint8 [n, S, S, 3]: the first `limit` test images, as the model sees them."""
  out = []
  for batch in input_pipeline.eval_batches(plan.data, plan.data.test_split,
                                           batch_size=plan.eval_batch_size):
    out.append(batch['image'][batch['mask']])
  return np.concatenate(out)[:limit]


def median_seconds(call):
  """Seconds of one `call()`: the median of timed calls after warm-up."""
  return 1.0 / rates.median_rate(call, batch_images=1, timed_steps=TIMED_CALLS)


def runners(fmt, folder, names):
  """score(pixels) -> [n, outputs] for an exported model, in its own runtime."""
  if fmt == 'stablehlo':
    from jax import export as jax_export  # pylint: disable=g-import-not-at-top
    with open(os.path.join(folder, export.STABLEHLO_FILE), 'rb') as f:
      call = jax.jit(jax_export.deserialize(f.read()).call)
    return lambda p: np.asarray(call(p))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if fmt == 'saved_model':
    fn = tf.saved_model.load(folder).signatures['serving_default']
    run = lambda p: {k: v.numpy() for k, v in fn(images=tf.constant(p)).items()}
  else:
    runner = tf.lite.Interpreter(model_path=os.path.join(folder, export.TFLITE_FILE),
                                 num_threads=os.cpu_count()).get_signature_runner(
                                     'serving_default')
    run = lambda p: runner(images=p)

  def score(pixels):
    outputs = run(pixels)
    return np.stack([outputs[n] for n in names], -1)
  return score


def size_bytes(path):
  """Bytes of a file or of everything in a folder."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def measure(workdir, limit):
  scorer = scorer_lib.Scorer.from_workdir(workdir, batch_size=BATCH)
  plan = scorer.plan
  pixels = test_pixels(plan, limit)
  lo, hi = plan.data.targets.bounds(len(scorer.names))
  reference = scorer.score_array(list(pixels))
  one, batch = pixels[:1], np.resize(pixels, (BATCH,) + pixels.shape[1:])
  rows = [('Scorer (JAX, jit)', None, median_seconds(lambda: scorer.score_pixels(one)),
           median_seconds(lambda: scorer.score_pixels(batch)), 0.0, None)]
  variants = [('saved_model', None), ('stablehlo', None), ('tflite', None),
              ('tflite', 'float16'), ('tflite', 'dynamic_int8')]
  float32 = None
  with tempfile.TemporaryDirectory() as tmp:
    for fmt, quantize in variants:
      folder = os.path.join(tmp, f'{fmt}_{quantize}')
      export.export(workdir, folder, fmt, quantize=quantize)
      score = runners(fmt, folder, scorer.names)
      scores = np.concatenate([score(pixels[i:i + BATCH]) for i in range(0, len(pixels), BATCH)])
      if fmt == 'tflite' and quantize is None:
        float32 = scores
      rho = (scipy.stats.spearmanr(scores[:, 0], float32[:, 0]).statistic
             if quantize else None)
      rows.append((f'{fmt}' + (f' ({quantize})' if quantize else ''),
                   size_bytes(folder), median_seconds(lambda: score(one)),
                   median_seconds(lambda: score(batch)),
                   float(np.max(np.abs(scores - reference) / (hi - lo))), rho))
  return plan, len(pixels), rows


def markdown(plan, n, rows):
  lines = [f'Exports of a {plan.data.name} model at {plan.data.image_size}x'
           f'{plan.data.image_size} on {rates.cpu_model()} ({os.cpu_count()} cores), '
           f'JAX {jax.__version__}; drift on {n} test images.', '',
           '| Format | Size (MB) | 1 image (ms) | Batch of 64 (ms) | Max diff from the Scorer '
           '(unit scale) | Spearman rho vs float32 TFLite (overall) |',
           '|---|---:|---:|---:|---:|---:|']
  for name, size, single, batch, diff, rho in rows:
    lines.append(f'| {name} | {"" if size is None else f"{size / 1e6:.1f}"} | '
                 f'{1000 * single:.1f} | {1000 * batch:.1f} | {diff:.2e} | '
                 f'{"" if rho is None else f"{rho:.4f}"} |')
  return '\n'.join(lines)


_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained workdir.')
_LIMIT = flags.DEFINE_integer('images', 200, 'Test images for the drift.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the table here.')


def main(argv):
  del argv
  table = markdown(*measure(_WORKDIR.value, _LIMIT.value))
  print(table)
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      f.write(table + '\n')


if __name__ == '__main__':
  flags.mark_flag_as_required('workdir')
  app.run(main)
