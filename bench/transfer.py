"""Starting from a trained model on a few rated photos: from W vs from the same random start.

  python -m bench.transfer --workdir=workdirs/bench_scores32 --seeds=0,1,2,3,4,5,6,7,8,9

What a photographer with a few hundred rated photos and a trained model
gets, at 32x32 pixels (IMAGE_SIZE: this 2-core machine trains 64x64 stage-2
steps at 2-3 images/s when loaded). The source W is the demo config (the
synthetic set, 600 training photos, resized to 32x32) trained with seed 0
from one random VGG16 (written to
<workdir>/backbone.msgpack: no ImageNet weights here, and every run of the
sweep shares it, as they would share ImageNet's). The user's set is a rated-photos
folder of scenes drawn as the synthetic set draws them (another random
stream: none of W's photos) whose outputs are transforms of their measured
attributes, as a user's are related to a public dataset's: `score` in [1, 5]
(the synthetic overall score, with its own noise), `Light` in [0, 10]
(W's Light, another range), `sharpness` in [0, 1] (W's MotionBlur, another
name) and `mood` in [-2, 2] (VividColor + ColorHarmony, new). So `score` and
`Light` start from W's units and the other two from fresh ones.

Each schedule of SCHEDULES runs once per seed from W (`--config.init_from`)
and once from the random start W itself had, paired by seed; the table
gives each output's test rho after the last stage with its 95% interval over
seeds, and the paired difference (from W minus from random) with its interval
and p (aesthetix.results.stats). Runs are resumable: a finished one is read
back. Runs of one start share their feature caches.
"""

import io
import json
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np
from PIL import Image

from aesthetix.model import keras_weights
from aesthetix.model import multitask as model_lib
from aesthetix.results import report
from aesthetix.results import stats
from aesthetix.training import plan as plan_lib
from bench import dtype_seeds
from configs import common
from configs import demo
from configs import rated_photos
from data_builders.synthetic_aesthetics import scene

# The model's input (every run here); the photos are stored at PHOTO_SIZE.
IMAGE_SIZE = 32
PHOTO_SIZE = 64
# The user's photos: 200 train, 50 validation, 200 test (the test split only
# measures; a user would keep fewer).
FIXTURE_SPLITS = {'train': 200, 'validation': 50, 'test': 200}
FIXTURE_STREAM = 7  # The scenes' random stream: the synthetic set uses 0, 1, 2.
JPEG_QUALITY = 95
OUTPUTS = {'score': [1, 5], 'Light': [0, 10], 'sharpness': [0, 1], 'mood': [-2, 2]}
SOURCE_SEED = 0
# Schedules of the user's runs: (name, {dotted config field: value}); 'few_photos'
# is the rated_photos config's variant for a start from a trained model
# (configs/rated_photos.py: stage 1 alone, batches of 16); 'paper' the paper's
# two stages as configured (not in the default sweep: its stage 2 trains at
# about 1.5 images/s on this 2-core machine).
SCHEDULES = (('few_photos', dict(rated_photos.FEW_PHOTOS)), ('paper', {}))
DEFAULT_SCHEDULES = ('few_photos',)
STARTS = ('random', 'from_W')


def user_outputs(attributes, rng):
  """The user's ratings of one photo, from its measured synthetic attributes."""
  overall = scene.overall_score(attributes, rng.normal(0.0, scene.OVERALL_NOISE))
  return {'score': 1 + 4 * overall, 'Light': 5 * (attributes['Light'] + 1),
          'sharpness': (attributes['MotionBlur'] + 1) / 2,
          'mood': attributes['VividColor'] + attributes['ColorHarmony']}


def write_fixture(folder, splits=None, size=PHOTO_SIZE):
  """Writes the user's rated-photos folder (photos, ratings.csv with a split
  column, dataset.json) unless it is there; returns the folder."""
  splits = splits or FIXTURE_SPLITS
  spec_path = os.path.join(folder, 'dataset.json')
  if os.path.exists(spec_path):
    return folder
  os.makedirs(os.path.join(folder, 'photos'), exist_ok=True)
  lines, index = ['image,split,' + ','.join(OUTPUTS)], 0
  for split, count in splits.items():
    for _ in range(count):
      rng = np.random.default_rng([FIXTURE_STREAM, index])
      pixels = np.round(scene.render(rng, size) * 255).astype(np.uint8)
      buffer = io.BytesIO()
      Image.fromarray(pixels).save(buffer, format='JPEG', quality=JPEG_QUALITY)
      seen = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert('RGB'),
                        np.float64) / 255
      ratings = user_outputs(scene.measure(seen), rng)
      name = f'photos/{index:04d}.jpg'
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(buffer.getvalue())
      lines.append(f'{name},{split},' + ','.join(f'{ratings[n]:.4f}' for n in OUTPUTS))
      index += 1
  with open(os.path.join(folder, 'ratings.csv'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(spec_path, 'w') as f:
    json.dump({'outputs': OUTPUTS, 'split': {'column': 'split'}}, f, indent=2)
  return folder


def write_backbone(path, size=IMAGE_SIZE):
  """One random VGG16 (seed 0) for every run, unless `path` exists."""
  if os.path.exists(path):
    return path
  config = demo.get_config()
  config.model.backbone_weights = 'random'
  plan = plan_lib.resolve(config)
  params = model_lib.init_params(model_lib.build_model(plan.model), jax.random.PRNGKey(0),
                                 size)
  layers = {k: {v: np.asarray(x) for v, x in layer.items()}
            for k, layer in jax.device_get(params[model_lib.BACKBONE]).items()}
  keras_weights.write_layers(layers, path)
  return path


def demo_config(root, seed, data_dir=None):
  """The demo config from the shared random backbone, with the sweep's caches."""
  config = demo.get_config()
  config.seed = seed
  config.dataset.image_size = IMAGE_SIZE
  config.model.backbone_weights = write_backbone(os.path.join(root, 'backbone.msgpack'))
  config.feature_cache_dir = os.path.join(root, 'caches', 'demo')
  if data_dir:
    config.dataset.data_dir = data_dir
  return config


def source_workdir(root, data_dir=None):
  """W: the demo trained with SOURCE_SEED (trained here unless finished)."""
  workdir = os.path.join(root, 'demo', f'seed{SOURCE_SEED}')
  dtype_seeds.run_once(demo_config(root, SOURCE_SEED, data_dir), workdir)
  return workdir


def user_config(root, photos, schedule, start, seed, source, data_dir=None):
  """The user's run: rated photos at IMAGE_SIZE, from W or from W's random start."""
  config = rated_photos.get_config()
  config.seed = seed
  config.dataset.manual_dir = photos
  config.dataset.image_size = IMAGE_SIZE
  if data_dir:
    config.dataset.data_dir = data_dir
  config.model.backbone_weights = write_backbone(os.path.join(root, 'backbone.msgpack'))
  if start == 'from_W':
    config.init_from = source
  config.feature_cache_dir = os.path.join(root, 'caches', f'user_{start}')
  for dotted, value in dict(SCHEDULES)[schedule].items():
    common.set_field(config, dotted, value)
  return config


def test_rhos(results):
  """{output: test rho after the last stage} of a run's results."""
  last = list(results['stage_titles'])[-1]
  return {n: m['spearman'] for n, m in results['stages'][last].items()}


def sweep(root, seeds, data_dir=None, schedules=None):
  """Runs (or reads back) every (schedule, start, seed); returns {(schedule,
  start, seed): {output: rho}} and the wall seconds of each run (None: read back)."""
  photos = write_fixture(os.path.join(root, 'photos'))
  source = source_workdir(root, data_dir)
  rhos, seconds = {}, {}
  for schedule in schedules or DEFAULT_SCHEDULES:
    for seed in seeds:
      for start in STARTS:
        config = user_config(root, photos, schedule, start, seed, source, data_dir)
        workdir = os.path.join(root, 'transfer', f'{schedule}_{start}', f'seed{seed}')
        results, seconds[(schedule, start, seed)] = dtype_seeds.run_once(config, workdir)
        rhos[(schedule, start, seed)] = test_rhos(results)
  return rhos, seconds


def _interval(s, lo='ci_low', hi='ci_high'):
  return f'[{report.fmt_metric(s[lo])}, {report.fmt_metric(s[hi])}]'


def markdown(rhos, seeds, schedules):
  """Per schedule and output: each start's mean test rho with its 95% interval
  over seeds, and the paired difference from W minus from random."""
  fmt = report.fmt_metric
  lines = ['| Schedule | Output | From random: rho [95%] | From W: rho [95%] | '
           'From W - from random [95%] | p |', '|---|---|---|---|---|---:|']
  for schedule in schedules:
    outputs = list(rhos[(schedule, STARTS[0], seeds[0])])
    for output in outputs + ['mean of outputs']:
      value = (lambda start, seed: rhos[(schedule, start, seed)][output]) if (
          output in outputs) else (lambda start, seed: float(np.mean(list(
              rhos[(schedule, start, seed)].values()))))
      a = [value(STARTS[0], s) for s in seeds]
      b = [value(STARTS[1], s) for s in seeds]
      ia, ib, d = stats.mean_interval(a), stats.mean_interval(b), stats.paired_summary(a, b)
      lines.append(f'| {schedule} | {output} | {fmt(ia["mean"])} {_interval(ia)} | '
                   f'{fmt(ib["mean"])} {_interval(ib)} | {fmt(d["diff"])} {_interval(d)} | '
                   f'{fmt(d["p"], 3)} |')
  return '\n'.join(lines)


def schedule_markdown(rhos, seeds, schedules):
  """From W: each schedule against the first, paired by seed (mean of outputs)."""
  fmt = report.fmt_metric
  mean = lambda schedule, seed: float(np.mean(list(rhos[(schedule, 'from_W', seed)].values())))
  lines = [f'| From W, mean rho of outputs | {schedules[0]} | other | other - {schedules[0]} '
           '[95%] | p |', '|---|---:|---:|---|---:|']
  for schedule in schedules[1:]:
    d = stats.paired_summary([mean(schedules[0], s) for s in seeds],
                             [mean(schedule, s) for s in seeds])
    lines.append(f'| {schedule} | {fmt(d["mean_a"])} | {fmt(d["mean_b"])} | '
                 f'{fmt(d["diff"])} {_interval(d)} | {fmt(d["p"], 3)} |')
  return '\n'.join(lines)


def define_flags():
  flags.DEFINE_string('workdir', 'workdirs/bench_scores32', 'Where the runs go (kept, resumed).')
  flags.DEFINE_list('seeds', [str(s) for s in range(10)], 'Seeds of the user\'s runs.')
  flags.DEFINE_list('schedules', list(DEFAULT_SCHEDULES), 'Schedules to run: '
                    + ', '.join(s for s, _ in SCHEDULES) + '.')
  flags.DEFINE_string('data_dir', None, 'TFDS data dir (default: TFDS\'s).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  jax.config.update('jax_compilation_cache_dir', os.path.join(f.workdir, 'jax_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  seeds = [int(s) for s in f.seeds]
  began = time.time()
  rhos, seconds = sweep(f.workdir, seeds, f.data_dir, f.schedules)
  print(markdown(rhos, seeds, f.schedules))
  if len(f.schedules) > 1:
    print()
    print(schedule_markdown(rhos, seeds, f.schedules))
  ran = [s for s in seconds.values() if s is not None]
  print(f'\n{len(ran)} runs in {time.time() - began:.0f} s'
        + (f' (median {np.median(ran):.0f} s per run)' if ran else ''))


if __name__ == '__main__':
  define_flags()
  app.run(main)
