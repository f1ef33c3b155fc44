"""Keras 3 (TensorFlow), PyTorch and aesthetix on the paper's two-stage schedule, side by side.

  python -m bench.keras_vs_aesthetix                     # small: minutes on 2 CPU cores
  python -m bench.keras_vs_aesthetix --paper             # 224x224, batch 64, 5 + 3 epochs
  python -m bench.keras_vs_aesthetix --bf16 --output=bench.md
  python -m bench.keras_vs_aesthetix --sides=keras,aesthetix   # columns to run

One process runs, one after the other, on the same machine: the paper's model
in Keras (bench/keras_reference.py, also the reference of the equivalence tests)
and this project's `experiment.run`, on the same images and targets
(the synthetic dataset, built once and read back as uint8 arrays for Keras),
with the same batch size, image size, epochs, optimizers and a random
horizontal flip (each side draws its own flips, shuffles and dropout masks).
Both start from the same initial weights: Keras' own random draw for the seed,
saved to a file that Keras loads and aesthetix reads as its backbone weights
(the head's layers are named alike and placed too). Both sides validate after
every epoch and predict the test split after each stage, as a user's run
does; aesthetix also checkpoints every epoch.

It prints a Markdown table: backbone forward and stage 2 train step images/s,
stage and schedule wall times, and the floor the machine's measured matrix
multiply rate puts under the schedule from the FLOPs XLA counts; then both
sides' test Spearman rho after each stage.

  python -m bench.keras_vs_aesthetix --seeds=0,1,2,3,4

runs only the two schedules, once per seed, and prints the test rho of both
sides paired by seed (mean, spread, the difference's confidence interval: the
same results in distribution, or not) and each seed's wall times and speed-ups.

Two PyTorch eager columns (bench/torch_peer.py; where torch is installed, `pip
install -r requirements-bench.txt`, else they read n/a): the same model,
initial weights, Keras' Adam and schedule, on aesthetix's own batches (the same
order and flips), once on images every step and once on caches of the frozen
layers computed once per image and mirror image, as aesthetix's caches are.
"""

import dataclasses
import os
import tempfile
import time

os.environ['KERAS_BACKEND'] = 'tensorflow'  # Keras on TF: an implementation independent of ours.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import jax
import keras
import numpy as np
import tensorflow as tf

from aesthetix.data import input_pipeline
from aesthetix.model import multitask as model_lib
from aesthetix.results import experiment
from aesthetix.results import report
from aesthetix.runtime import phases
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import metrics
from aesthetix.training import plan as plan_lib
from aesthetix.training import steps
from bench import keras_reference
from bench import paired
from bench import rates
try:
  from bench import torch_peer
except ImportError as e:  # torch alone is optional; any other failure is a bug.
  if e.name != 'torch':
    raise
  torch_peer = None
from configs import aadb
from configs import demo
# pylint: enable=g-import-not-at-top,wrong-import-position

# Row names, in table order. Throughputs: higher is better; times: lower is better.
FORWARD = 'backbone forward, images/s'
STEP2 = 'stage 2 train step on images, images/s'
STEP2_RUN = ('stage 2 train step as run (aesthetix and PyTorch cached: from cached '
             'block4_conv1), images/s')
STEADY1 = 'stage 1 steady-state training, images/s (epochs 2+)'
STEADY2 = 'stage 2 steady-state training, images/s (epochs 2+)'
STAGE1 = 'stage 1 wall time, s'
STAGE2 = 'stage 2 wall time, s'
WHOLE = 'whole schedule wall time, s'
FLOOR1 = 'FLOP floor, stage 1, s'
FLOOR2 = 'FLOP floor, stage 2, s'
FLOOR = 'FLOP floor, whole schedule, s'
# The step from cached block4_conv1: a program of the sides that cache it, not a row.
PREFIX_STEP = 'stage 2 train step from cached block4_conv1'
RATE_ROWS = (FORWARD, STEP2, STEP2_RUN, STEADY1, STEADY2)
TIME_ROWS = (STAGE1, STAGE2, WHOLE, FLOOR1, FLOOR2, FLOOR)
ROWS = RATE_ROWS + TIME_ROWS  # Steady state needs 2+ epochs in the stage, else n/a.

# Forward passes over the training images that the stage 1 feature cache
# makes: each image as stored and flipped.
CACHED_PASSES_PER_IMAGE = 2
# Keras' initial weights for the run's seed, which both sides start from.
INITIAL_WEIGHTS_FILE = 'initial.weights.h5'
# Keras' weights after its stage 1: aesthetix's stage 2 start with --same_stage2_start.
STAGE1_WEIGHTS_FILE = 'keras_stage1.weights.h5'
SIDES = (('keras', 'Keras', 'Keras'), ('aesthetix', 'aesthetix', 'aesthetix'))  # --seeds.
# The table's columns, in order: {side: title}. Ratios are to aesthetix's column.
KERAS, TORCH, TORCH_CACHED, AESTHETIX = 'keras', 'torch', 'torch_cached', 'aesthetix'
COLUMNS = {KERAS: 'Keras 3 (TF)', TORCH: 'PyTorch eager', TORCH_CACHED: 'PyTorch eager, cached',
           AESTHETIX: 'aesthetix'}
SHORT_NAMES = {KERAS: 'Keras', TORCH: 'PyTorch', TORCH_CACHED: 'PyTorch cached',
               AESTHETIX: 'aesthetix'}  # In the ratio and difference columns.
TORCH_SIDES = (TORCH, TORCH_CACHED)
TORCH_MISSING = 'PyTorch not installed: pip install -r requirements-bench.txt for its column'


@dataclasses.dataclass
class Settings:
  """What to run. Sizes are in images and pixels per side."""
  num_images: int = 1024
  num_eval_images: int = 64   # Validation and test split each.
  image_size: int = 64
  batch_size: int = 32
  stage1_epochs: int = 5
  stage2_epochs: int = 3
  seed: int = 0               # config.seed: initial weights, shuffles, flips, dropout.
  bf16: bool = False          # aesthetix with config.model.dtype='bfloat16'.
  keras_gpu: bool = False     # Let TensorFlow use GPUs (default: Keras on CPU).
  timed_steps: int = 10       # Batches per throughput measurement.
  sides: tuple = tuple(COLUMNS)  # Columns to run (aesthetix always); see COLUMNS.
  matmul_size: int = 2048     # Side of the square float32 matmul for the machine's rate.
  workdir: str = ''           # '' : a fresh temporary directory.
  data_dir: str = ''          # '' : <workdir>/data.


def paper_schedule(settings):
  """`settings` with the paper's image size, batch size and epochs (configs/aadb.py)."""
  paper = aadb.get_config()
  return dataclasses.replace(
      settings, image_size=paper.dataset.image_size,
      batch_size=paper.stage1.batch_size, stage1_epochs=paper.stage1.epochs,
      stage2_epochs=paper.stage2.epochs)


def bench_config(settings):
  """The demo config on a synthetic set of `settings.num_images` training images."""
  s = settings
  c = demo.get_config()
  c.dataset.data_dir = s.data_dir
  c.dataset.builder_kwargs = {
      'split_sizes': {'train': s.num_images, 'validation': s.num_eval_images,
                      'test': s.num_eval_images},
      'image_size': s.image_size}
  c.dataset.image_size = s.image_size
  c.seed = s.seed
  # Random: speed does not depend on the weights' values. A run replaces it with
  # the file of Keras' initial weights (shared_initial_weights).
  c.model.backbone_weights = 'random'
  c.model.dtype = 'bfloat16' if s.bf16 else 'float32'
  c.stage1.epochs, c.stage2.epochs = s.stage1_epochs, s.stage2_epochs
  c.stage1.batch_size = c.stage2.batch_size = c.eval_batch_size = s.batch_size
  return c


def split_arrays(config, split):
  """(uint8 images [n, S, S, 3], float32 targets [n, K+1] in [0, 1]) of `split`, unflipped."""
  images, targets = [], []
  for batch in input_pipeline.eval_batches(plan_lib.resolve(config).data, split,
                                           batch_size=config.eval_batch_size):
    keep = batch['mask']
    images.append(batch['image'][keep])
    targets.append(batch['target'][keep])
  return np.concatenate(images), np.concatenate(targets)


# ------------------------------------------------------------------ the machine


def machine_line(keras_device=None, keras_xla=None, torch_line=None):
  """The CPU, JAX's devices, and the peers that ran (Keras on `keras_device`;
  `torch_line`: torch_peer.version_line())."""
  d = jax.devices()[0]
  parts = [f'{rates.cpu_model()}, {os.cpu_count()} cores', f'JAX {jax.__version__} on '
           f'{jax.device_count()} x {d.device_kind} ({d.platform})']
  if keras_device:
    parts.append(f'Keras {keras.__version__} on TensorFlow {tf.__version__} ({keras_device}, '
                 f'XLA {"on" if keras_xla else "off"})')
  if torch_line:
    parts.append(torch_line)
  return '; '.join(parts)


# ------------------------------------------------------------------ Keras


class EpochTrainTimer(keras.callbacks.Callback):
  """Seconds of each epoch's training part (up to validation), in `train_seconds`,
  and of the train steps in it, in `step_seconds`."""

  def __init__(self):
    super().__init__()
    self.train_seconds, self.step_seconds = [], []
    self._start = self._train_end = self._step_start = None
    self._steps = 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self._train_end, self._steps = time.perf_counter(), None, 0.0

  def on_train_batch_begin(self, batch, logs=None):
    self._step_start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self._steps += time.perf_counter() - self._step_start

  def on_test_begin(self, logs=None):
    if self._start is not None and self._train_end is None:
      self._train_end = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.train_seconds.append((self._train_end or time.perf_counter()) - self._start)
    self.step_seconds.append(self._steps)
    self._start = None

  def outside_steps(self):
    """Seconds of the training parts spent outside train steps, summed over epochs."""
    return sum(self.train_seconds) - sum(self.step_seconds)


def keras_preprocess(images):
  """uint8 RGB -> Keras' own VGG16 ('caffe') input, as its users feed it."""
  return keras.applications.vgg16.preprocess_input(tf.cast(images, tf.float32))


def keras_dataset(images, targets, batch_size, *, train_split, seed):
  """tf.data batches of preprocessed images; shuffled and randomly flipped when training.

  tf.data's autotuning is off: with it, Keras waited 8-9 s before the first
  batch (or, with validation, after the last) of about every other epoch on
  the development CPU, outside its steps; off, it never did, and its steps ran
  as fast (a map of 1,024 small images needs no tuning). Keras at its best is
  the fair reference.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  ds = tf.data.Dataset.from_tensor_slices((images, targets)).with_options(options)
  if train_split:
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda x, y: (tf.image.random_flip_left_right(x, seed=seed), y),
                num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.map(lambda x, y: (keras_preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def keras_model(config):
  """The paper's model in Keras, with Keras' own random initial weights."""
  return keras_reference.keras_multitask(
      config.dataset.image_size, groups=plan_lib.resolve(config).model.groups,
      hidden_units=tuple(config.model.hidden_units), dropout=config.model.dropout)


def shared_initial_weights(config, path):
  """Writes Keras' initial weights for `config.seed` to `path` (a Keras 3
  .weights.h5) and returns `config` with them as aesthetix's backbone weights.

  Both sides then start from the same weights: Keras loads the file, and
  aesthetix's backbone_weights reader places every layer of it, the head's
  included (its layers are named as Keras' are). Built outside both sides' timing.
  """
  keras.utils.set_random_seed(config.seed)
  keras_model(config).save_weights(path)
  config = config.copy_and_resolve_references()
  config.model.backbone_weights = path
  return config


def keras_datasets(config, data, batch_size):
  """{split: tf.data pipeline} of one Keras schedule; both stages iterate these.

  One training pipeline for the whole schedule, as a Keras user would fit both
  stages on it: its seeded shuffle then draws a new order for every epoch of
  both stages. A pipeline built anew for stage 2 from the same seed replays
  stage 1's orders, epoch for epoch (tf.data restarts a seeded shuffle's
  sequence with the dataset); aesthetix draws a new order for every epoch.
  """
  return {split: keras_dataset(*data[split], batch_size, train_split=split == 'train',
                               seed=config.seed)
          for split in ('train', 'validation', 'test')}


def keras_stage(model, stage, datasets, timer):
  """Compiles, fits `stage.epochs` epochs with validation; the test predictions."""
  model.compile(optimizer=keras_reference.keras_adam(stage), loss='mse')
  model.fit(datasets['train'], validation_data=datasets['validation'],
            epochs=stage.epochs, shuffle=False,  # The dataset shuffles itself.
            verbose=0, callbacks=[timer])
  return model.predict(datasets['test'], verbose=0)


def keras_schedule(config, data, stage1_weights=None):
  """The paper's two stages in Keras from `config.model.backbone_weights`
  (shared_initial_weights); (model, {stage or 'whole': seconds}, timers,
  {stage: test predictions}). Saves the weights after stage 1 to
  `stage1_weights` when given (inside the whole schedule's time)."""
  keras.utils.set_random_seed(config.seed)
  start = time.perf_counter()
  model = keras_model(config)
  model.load_weights(config.model.backbone_weights)
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  for layer in convs:
    layer.trainable = False
  # bench_config gives both stages (and evaluation) one batch size.
  datasets = keras_datasets(config, data, config.stage1.batch_size)
  seconds, timers, predictions = {}, {}, {}
  for name in plan_lib.STAGES:
    stage = config[name]
    for layer in convs:
      layer.trainable = layer.trainable or layer.name in stage.trainable_layers
    timers[name] = EpochTrainTimer()
    stage_start = time.perf_counter()
    predictions[name] = keras_stage(model, stage, datasets, timers[name])
    seconds[name] = time.perf_counter() - stage_start
    if name == plan_lib.STAGES[0] and stage1_weights:
      model.save_weights(stage1_weights)
  seconds['whole'] = time.perf_counter() - start
  return model, seconds, timers, predictions


def prediction_rhos(config, predictions, test_targets):
  """{stage: paired.rho_pair} of a peer's test predictions (targets in [0, 1]:
  rank correlations need no rescaling to the dataset's scale)."""
  names = list(plan_lib.resolve(config).output_names)
  return {stage: paired.rho_pair(names, metrics.output_metrics(names, test_targets, pred))
          for stage, pred in predictions.items()}


def keras_forward_call(model, images):
  """A call of Keras' VGG16 + pooling on a uint8 batch (preprocessing included), to time."""
  pool = next(l for l in model.layers if isinstance(l, keras.layers.GlobalAveragePooling2D))
  features = keras.Model(model.input, pool.output)
  fn = tf.function(lambda x: features(keras_preprocess(x), training=False),
                   jit_compile=bool(model.jit_compile))
  x = tf.constant(images)
  return lambda: fn(x).numpy()


def keras_step_call(model, images, targets):
  """A call of `train_on_batch` in the model's current (stage 2) configuration, to time."""
  x = keras_preprocess(images).numpy()
  return lambda: model.train_on_batch(x, targets)


def keras_stall_note(timers, keras_seconds, our_seconds):
  """How long Keras' training epochs waited outside its train steps, and the
  speed-ups with that time taken out of Keras' side.

  On the development CPU such waits (about 8 s, at the end of some epochs'
  training, before validation) came from tf.data's autotuning, which
  `keras_dataset` now turns off; the note shows whether any remain.
  """
  stalls = {name: timers[name].outside_steps() for name in plan_lib.STAGES}
  worst = max(max(np.subtract(t.train_seconds, t.step_seconds)) for t in timers.values())
  ratios = []
  for name in plan_lib.STAGES + ('whole',):
    stall = sum(stalls.values()) if name == 'whole' else stalls[name]
    ours = our_seconds.get(name)
    ratios.append(f'{name} {fmt((keras_seconds[name] - stall) / ours) if ours else "n/a"}')
  return (f'Keras spent {stalls["stage1"]:.1f} s of its stage 1 and {stalls["stage2"]:.1f} s '
          f'of its stage 2 training epochs outside its train steps (at most {worst:.1f} s in '
          f'one epoch); with that time taken out of its side the speed-ups are '
          f'{", ".join(ratios)}.')


def steady_rate(num_images, epoch_seconds):
  """Images/s over the epochs after the first (None with a single epoch)."""
  later = epoch_seconds[1:]
  return num_images * len(later) / sum(later) if later else None


# ------------------------------------------------------------------ aesthetix


def aesthetix_schedule(config, workdir):
  """Runs experiment.run; ({stage or 'whole': seconds or None}, metrics records,
  {stage: paired.rho_pair of the test split}, the run's phase table: results.json's
  `timing`)."""
  input_pipeline.clear_cache()  # Read the dataset as a fresh run does.
  start = time.perf_counter()
  plan = experiment.run(config, workdir)
  seconds = {'whole': time.perf_counter() - start}
  records = workdir_lib.read_jsonl(os.path.join(workdir, workdir_lib.METRICS_FILE))
  for name in plan_lib.STAGES:
    timing = [r['timing'] for r in records if r.get('stage') == name and 'timing' in r]
    seconds[name] = timing[-1]['seconds'] if timing else None
  results = report.build_results(plan, workdir)
  return seconds, records, paired.stage_rhos(results), results['timing']


def phase_table(timing, title):
  """aesthetix's phase table of one run (results.json's `timing`), as its log prints it."""
  return f'{title}:\n\n{phases.markdown(timing)}'


def aesthetix_steady_rate(records, stage_name):
  """Images/s of the training loop over a stage's epochs after the first, from metrics.jsonl."""
  rates = [r['images_per_second'] for r in records
           if r.get('stage') == stage_name and r.get('epoch', 1) > 1
           and 'images_per_second' in r]
  return len(rates) / sum(1 / r for r in rates) if rates else None


# ------------------------------------------------------------------ the table


def fmt(value):
  if value is None:
    return 'n/a'
  if value >= 100:
    return f'{value:,.0f}'
  return f'{value:.1f}' if value >= 10 else f'{value:.2f}'


def speedup(row, theirs, ours):
  """How many times faster aesthetix is than a peer: theirs/ours for times,
  ours/theirs for rates."""
  if theirs is None or ours is None or not theirs or not ours:
    return None
  return ours / theirs if row in RATE_ROWS else theirs / ours


def peers(sides):
  """The sides aesthetix is compared with, in column order."""
  return [side for side in sides if side != AESTHETIX]


def markdown_table(values, sides, machine, notes):
  """values: {row: {side: value or None}} -> the Markdown table with its notes:
  a column per side of `sides` (COLUMNS order), then aesthetix's speed-up over
  each peer."""
  head = [COLUMNS[side] for side in sides] + [
      f'aesthetix speed-up over {SHORT_NAMES[side]} (x)' for side in peers(sides)]
  lines = ['| | ' + ' | '.join(head) + ' |', '|---|' + '---:|' * len(head)]
  for row in ROWS:
    if row not in values:
      continue
    v = values[row]
    cells = [fmt(v.get(side)) for side in sides] + [
        fmt_ratio(speedup(row, v.get(side), v.get(AESTHETIX))) for side in peers(sides)]
    lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
  lines += ['', "Speed-up: the peer's time / aesthetix time for times, aesthetix images/s / "
            "the peer's images/s for throughputs; above 1 means aesthetix is faster.",
            f'Machine: {machine}.'] + notes
  return '\n'.join(lines)


# ------------------------------------------------------------------ the run


def prepare_dirs(settings):
  """`settings` with its workdir made (a temporary one by default) and its data_dir."""
  workdir = settings.workdir or tempfile.mkdtemp(prefix='keras_vs_aesthetix_')
  os.makedirs(workdir, exist_ok=True)
  data_dir = settings.data_dir or os.path.join(workdir, 'data')
  return dataclasses.replace(settings, workdir=workdir, data_dir=data_dir)


def run_line(settings, dtype):
  return (f'Run: {settings.num_images} training images of {settings.image_size}x'
          f'{settings.image_size}, {settings.num_eval_images} validation and '
          f'{settings.num_eval_images} test images, batch {settings.batch_size}, '
          f'{settings.stage1_epochs} + {settings.stage2_epochs} epochs, aesthetix dtype '
          f'{dtype}')


def keras_device_name(settings):
  return 'GPU' if settings.keras_gpu and tf.config.list_logical_devices('GPU') else 'CPU'


def load_data(settings, config):
  """{split: (uint8 images, targets)}, building the synthetic dataset the first time."""
  data = {split: split_arrays(config, split) for split in ('train', 'validation', 'test')}
  if len(data['train'][0]) != settings.num_images:  # TFDS reuses a build of any size.
    raise ValueError(
        f'{settings.data_dir} holds a synthetic_aesthetics build with '
        f'{len(data["train"][0])} training images, not {settings.num_images}: pass a '
        'fresh --data_dir.')
  return data


def stage2_only(config, weights):
  """`config` that starts from `weights` (a Keras .weights.h5 with the head) and
  skips stage 1's training: its 'stage1' test rho is that of `weights`."""
  config = config.copy_and_resolve_references()
  config.model.backbone_weights = weights
  config.stage1.epochs = 0
  return config


def check_sides(sides):
  """`sides` (names of COLUMNS, aesthetix among them) in column order."""
  unknown = [side for side in sides if side not in COLUMNS]
  if unknown or AESTHETIX not in sides:
    raise ValueError(f'--sides={",".join(sides)}: choose among {", ".join(COLUMNS)}, '
                     f'{AESTHETIX} always among them (the ratios are to it).')
  return tuple(side for side in COLUMNS if side in sides)


def torch_sides(sides):
  """The PyTorch sides of `sides` that run here: none where torch is missing."""
  return [side for side in sides if side in TORCH_SIDES] if torch_peer else []


def torch_schedules(config, run_dir, sides):
  """{side: {'seconds', 'epoch_seconds', 'rhos'}} of PyTorch's schedules."""
  out, plan = {}, plan_lib.resolve(config)
  for side in sides:
    cache_dir = tempfile.mkdtemp(prefix=f'{side}_', dir=run_dir)
    run = torch_peer.run_schedule(plan, cached=side == TORCH_CACHED, cache_dir=cache_dir)
    out[side] = dict(seconds=run.seconds, epoch_seconds=run.epoch_seconds,
                     predictions=run.predictions, test_targets=run.test_targets,
                     rhos=prediction_rhos(config, run.predictions, run.test_targets))
  return out


def run_schedules(config, data, run_dir, same_stage2_start=False, sides=(KERAS, AESTHETIX)):
  """The schedules of `sides` from the same initial weights: Keras, PyTorch, aesthetix.

  same_stage2_start (Keras and aesthetix alone): aesthetix trains stage 2
  alone, from Keras' weights after stage 1, so that the two stage 2s start
  alike (stage 1 ends far apart between runs: its test rho has an sd of 0.2
  over seeds on the default data). Returns (config as aesthetix ran it,
  {side: {'seconds', 'rhos', ...}}), with Keras' model and epoch timers, the
  PyTorch sides' epoch seconds and aesthetix's metrics records.
  """
  if same_stage2_start and set(sides) != {KERAS, AESTHETIX}:
    raise ValueError('same_stage2_start compares Keras and aesthetix alone.')
  config = shared_initial_weights(config, os.path.join(run_dir, INITIAL_WEIGHTS_FILE))
  stage1_weights = os.path.join(run_dir, STAGE1_WEIGHTS_FILE) if same_stage2_start else None
  out = {}
  if KERAS in sides:
    model, seconds, timers, predictions = keras_schedule(config, data, stage1_weights)
    out[KERAS] = dict(seconds=seconds, timers=timers, model=model, predictions=predictions,
                      rhos=prediction_rhos(config, predictions, data['test'][1]))
  out.update(torch_schedules(config, run_dir, torch_sides(sides)))
  if same_stage2_start:
    config = stage2_only(config, stage1_weights)
  seconds, records, rhos, timing = aesthetix_schedule(config, run_dir)
  out[AESTHETIX] = dict(seconds=seconds, records=records, rhos=rhos, timing=timing)
  return config, out


def torch_calls(plan, images, batch_targets):
  """PyTorch's {FORWARD, STEP2, PREFIX_STEP: call} to time, each step on a
  net fresh from the initial weights."""
  out = {FORWARD: torch_peer.forward_call(torch_peer.build_net(plan), images)}
  for program, from_prefix in ((STEP2, False), (PREFIX_STEP, True)):
    out[program] = torch_peer.stage2_step_call(plan, torch_peer.build_net(plan), images,
                                               batch_targets, from_prefix=from_prefix)
  return out


def throughputs(calls, timed_steps):
  """{side: (forward, stage 2 step on images, stage 2 step as run) images/s} of
  {side: {program: (call, images per call)}}, every call timed in the same
  interleaved rounds (rates.interleaved_rates): a shared machine's load falls
  on every side alike. The step as run: PREFIX_STEP where the side has one."""
  flat = {(side, program): call for side, programs in calls.items()
          for program, call in programs.items()}
  speed = rates.interleaved_rates(flat, timed_steps)
  return {side: (speed[(side, FORWARD)], speed[(side, STEP2)],
                 speed[(side, PREFIX_STEP if PREFIX_STEP in programs else STEP2)])
          for side, programs in calls.items()}


def column(throughputs, steady, seconds, floors):
  """{row: value} of one side: throughputs (forward, stage 2 step on images,
  stage 2 step as run), steady-state rates and wall seconds per stage, and the
  FLOP floors (stage 1, stage 2) of the work it does."""
  forward, step, step_run = throughputs
  return {FORWARD: forward, STEP2: step, STEP2_RUN: step_run,
          STEADY1: steady[0], STEADY2: steady[1],
          STAGE1: seconds['stage1'], STAGE2: seconds['stage2'], WHOLE: seconds['whole'],
          FLOOR1: floors[0], FLOOR2: floors[1], FLOOR: floors[0] + floors[1]}


def run_benchmark(settings):
  """Runs the sides of `settings.sides`; {'table': Markdown, 'values': {row:
  {side: value or None}}, 'rhos': {side: {stage: rho_pair}}, 'runs': what
  `run_schedules` returned, ...}."""
  settings = prepare_dirs(settings)
  sides = check_sides(settings.sides)
  run_dir = tempfile.mkdtemp(prefix='aesthetix_run_', dir=settings.workdir)
  config = bench_config(settings)
  if torch_sides(sides):
    torch_peer.configure_threads()
  load_before = os.getloadavg()
  data = load_data(settings, config)
  images, targets = data['train']
  batch_images, batch_targets = images[:settings.batch_size], targets[:settings.batch_size]
  gflops = rates.matmul_gflops(settings.matmul_size)

  config, ran = run_schedules(config, data, run_dir, sides=sides)
  our_seconds, records = ran[AESTHETIX]['seconds'], ran[AESTHETIX]['records']
  plan = plan_lib.resolve(config)
  model = model_lib.build_model(plan.model)
  state = steps.initial_state(plan, model, jax.random.PRNGKey(plan.seed))
  n_batch = plan.stage('stage2').batch_size
  forward, forward_flops = rates.forward_call(model, state['params'], batch_images)
  batch = next(iter(input_pipeline.train_batches(
      plan.data, plan.data.train_split, batch_size=n_batch, epoch=0, seed=plan.seed)))
  step, step_flops = rates.stage2_step_call(plan, model, state, batch)
  calls = {AESTHETIX: {FORWARD: (forward, len(batch_images)), STEP2: (step, n_batch)}}
  step_run_flops = step_flops
  if plan.prefix_cache:
    prefix_step, step_run_flops = rates.stage2_step_call(plan, model, state, batch,
                                                         from_prefix=True)
    calls[AESTHETIX][PREFIX_STEP] = (prefix_step, n_batch)
  if KERAS in ran:
    keras_model = ran[KERAS]['model']
    calls[KERAS] = {FORWARD: keras_forward_call(keras_model, batch_images),
                    STEP2: keras_step_call(keras_model, batch_images, batch_targets)}
  if torch_sides(sides):
    calls[TORCH] = torch_calls(plan, batch_images, batch_targets)
  for side in calls:
    if side != AESTHETIX:
      calls[side] = {p: (c, len(batch_images)) for p, c in calls[side].items()}
  measured = throughputs(calls, settings.timed_steps)
  if TORCH in measured:  # One measurement on images, both PyTorch columns.
    forward, step, step_prefix = measured[TORCH]
    measured.update({TORCH: (forward, step, step), TORCH_CACHED: (forward, step, step_prefix)})
  # The best of a rate measured before and after: the floor is what the machine can do.
  gflops = max(gflops, rates.matmul_gflops(settings.matmul_size))
  load_after = os.getloadavg()

  n, rate = settings.num_images, gflops * 1e9
  # Images every epoch (Keras, PyTorch eager), or caches (aesthetix, PyTorch cached).
  on_images = (forward_flops * n * settings.stage1_epochs / rate,
               step_flops * n * settings.stage2_epochs / rate)
  on_caches = (forward_flops * n * CACHED_PASSES_PER_IMAGE / rate,
               step_run_flops * n * settings.stage2_epochs / rate)
  columns = {AESTHETIX: column(measured[AESTHETIX],
                               [aesthetix_steady_rate(records, s) for s in plan_lib.STAGES],
                               our_seconds, on_caches)}
  if KERAS in ran:
    timers = ran[KERAS]['timers']
    columns[KERAS] = column(measured[KERAS],
                            [steady_rate(n, timers[s].train_seconds) for s in plan_lib.STAGES],
                            ran[KERAS]['seconds'], on_images)
  for side in torch_sides(sides):
    epochs = ran[side]['epoch_seconds']
    columns[side] = column(measured[side],
                           [steady_rate(n, epochs[s]) for s in plan_lib.STAGES],
                           ran[side]['seconds'], on_caches if side == TORCH_CACHED else on_images)
  values = {row: {side: columns[side][row] if side in columns else None for side in sides}
            for row in ROWS}
  notes = [
      f'{run_line(settings, config.model.dtype)}; throughputs: on one batch, the median of '
      f'{settings.timed_steps} rounds that time one call of every side\'s programs in turn, '
      f'after {rates.WARMUP_STEPS} warm-up calls each; load average '
      f'{load_before[0]:.2f} before, {load_after[0]:.2f} after.',
      'Wall times include model build, compilation, per-epoch validation and the test '
      'predictions after each stage (aesthetix also checkpoints every epoch); the whole '
      'schedule also includes model construction and initialisation. Steady state: '
      'the training loop alone over the epochs after the first (aesthetix: '
      f'images_per_second of {workdir_lib.METRICS_FILE}; its stage 1 epochs train the head '
      'on cached features when the feature cache is on).',
      f'FLOP floor = XLA-counted FLOPs / {gflops:.1f} GFLOP/s (best float32 '
      'before and after the run, '
      f'{settings.matmul_size}x{settings.matmul_size} matmul): backbone forward '
      f'{forward_flops / 1e9:.3f} GFLOP/image, stage 2 step {step_flops / 1e9:.3f} '
      f'GFLOP/image (from cached block4_conv1: {step_run_flops / 1e9:.3f}). Stage 1: '
      f'Keras and PyTorch eager run the frozen backbone every epoch ({settings.stage1_epochs} '
      f'passes per image), aesthetix\'s feature cache and PyTorch cached '
      f'{CACHED_PASSES_PER_IMAGE} (as stored and flipped; the same pass keeps block4_conv1 '
      'for stage 2); the head and the validation/test passes are left out. Stage 2: Keras '
      'and PyTorch eager step on images, aesthetix and PyTorch cached as they run them.',
  ]
  notes += torch_notes(sides)
  sources = [f"{r['stage']}: {r['timing']['source']}" for r in records
             if 'source' in r.get('timing', {})]
  if sources:  # What aesthetix's steps read; the step row and floors above are from images.
    notes.append(f'aesthetix stage inputs ({workdir_lib.METRICS_FILE}): {", ".join(sources)}.')
  missing = [name for name in plan_lib.STAGES if our_seconds[name] is None]
  if missing:
    notes.append(f'aesthetix wrote no timing record for {", ".join(missing)} in '
                 f'{workdir_lib.METRICS_FILE}: those stage times are n/a; the whole schedule '
                 'is timed around train_and_evaluate.')
  if KERAS in ran:
    notes.append(keras_stall_note(ran[KERAS]['timers'], ran[KERAS]['seconds'], our_seconds))
  machine = machine_line(
      keras_device_name(settings) if KERAS in ran else None,
      ran[KERAS]['model'].jit_compile if KERAS in ran else None,
      torch_peer.version_line() if torch_sides(sides) else None)
  rhos = {side: ran[side]['rhos'] for side in ran}
  timing = ran[AESTHETIX]['timing']
  table = (markdown_table(values, sides, machine, notes) + '\n\n'
           + rho_table(rhos, sides, settings.num_eval_images) + '\n\n'
           + phase_table(timing, "Where aesthetix's schedule spent its time (its run's phase table)"))
  return dict(table=table, values=values, rhos=rhos, machine=machine, settings=settings,
              workdir=run_dir, runs=ran, config=config, timing=timing)


def torch_notes(sides):
  """What the PyTorch columns measured, or the one line saying torch is missing."""
  if not any(side in TORCH_SIDES for side in sides):
    return []
  if torch_peer is None:
    return [f'{TORCH_MISSING}.']
  return ['PyTorch (bench/torch_peer.py, float32): the same initial weights, Keras\' Adam '
          'and schedule, on aesthetix\'s batches (its input pipeline, read and decoded '
          'inside the whole schedule\'s time as aesthetix\'s run does: the same order and '
          'flips); validation loss every epoch and the test predictions after each stage, '
          'no checkpoints. Cached: one pass per training image and mirror image (one per '
          'evaluation image) at stage 1\'s start, inside its time, keeps the pooled features '
          '(stage 1 trains the head on them) and block4_conv1\'s output (memory-mapped, '
          'stage 2 starts from it). Its forward and stage 2 step on images are one '
          'measurement, shown in both of its columns.']


def rho_table(rhos, sides, num_test):
  """Every side's test rho after each stage: {side: {stage: rho_pair}} -> Markdown,
  with aesthetix's difference to each peer (n/a for a side that did not run)."""
  fmt_rho = report.fmt_metric
  head = [COLUMNS[side] for side in sides] + [
      f'aesthetix - {SHORT_NAMES[side]}' for side in peers(sides)]
  lines = [f'Test Spearman rho ({num_test} test images), every side from the same '
           'initial weights:', '', '| | ' + ' | '.join(head) + ' |',
           '|---|' + '---:|' * len(head)]
  for stage in plan_lib.STAGES:
    for what, label in paired.MEASURE_LABELS.items():
      rho = {side: rhos[side][stage][what] for side in sides
             if stage in rhos.get(side, {})}
      if AESTHETIX not in rho:
        continue
      diffs = [rho[AESTHETIX] - rho[side] if side in rho else None for side in peers(sides)]
      lines.append(f'| {plan_lib.STAGE_TITLES[stage]} {label} | '
                   + ' | '.join([fmt_rho(rho.get(side)) for side in sides]
                                + [fmt_rho(d) for d in diffs]) + ' |')
  lines += ['', 'One seed. Keras draws its own flips, shuffles and dropout masks; PyTorch '
            'reads aesthetix\'s batches (the same order and flips) but draws its own dropout '
            'masks (torch\'s generator, not JAX\'s), so no two sides train alike: the '
            'seed-to-seed spread (--seeds) is the yardstick for a difference.']
  return '\n'.join(lines)


def run_seeds(settings, seeds, same_stage2_start=False):
  """Both schedules once per seed (no throughput runs); returns the Markdown:
  test rho paired by seed, then each seed's wall times and speed-ups (not
  with `same_stage2_start`, see `run_schedules`: aesthetix then skips stage 1)."""
  settings = prepare_dirs(settings)
  data = load_data(settings, bench_config(settings))
  rhos, whole, times, tables, model = {}, {}, {}, [], None
  for seed in seeds:
    run_dir = tempfile.mkdtemp(prefix=f'seed{seed}_', dir=settings.workdir)
    config, sides = run_schedules(bench_config(dataclasses.replace(settings, seed=seed)),
                                  data, run_dir, same_stage2_start)
    for side, _, _ in SIDES:
      rhos[(seed, side)] = sides[side]['rhos']
      whole[(seed, side)] = sides[side]['seconds']['whole']
    times[seed] = dict(keras=sides['keras']['seconds'], aesthetix=sides['aesthetix']['seconds'],
                       outside=sum(t.outside_steps() for t in sides['keras']['timers'].values()))
    model = sides['keras']['model']
    tables.append(phase_table(sides['aesthetix']['timing'],
                              f"aesthetix's phase table, seed {seed}"))
  start = ("both stage 2s from Keras' weights after its stage 1 (aesthetix trains stage 2 "
           'alone)' if same_stage2_start else 'from the same initial weights')
  title = (f'Test Spearman rho on {config.dataset.name} ({settings.num_eval_images} test '
           f'images), Keras 3 vs aesthetix {start}, paired by seed.')
  speed = [] if same_stage2_start else [seed_speed_table(seeds, times), '']
  return '\n'.join([
      paired.markdown_table(title, SIDES, seeds, rhos, whole), '', *speed,
      '\n\n'.join(tables), '',
      f'{run_line(settings, config.model.dtype)}.',
      f'Machine: {machine_line(keras_device_name(settings), model.jit_compile)}.'])


def seed_speed_table(seeds, times):
  """Per seed: both sides' stage and schedule wall times, and the speed-ups.

  times[seed] = dict(keras={stage or 'whole': s}, aesthetix={...}, outside=s),
  `outside`: Keras' seconds in its training epochs outside its train steps.
  """
  names = plan_lib.STAGES + ('whole',)
  slash = lambda values: ' / '.join(fmt(v) for v in values)
  lines = ['| seed | Keras stage 1 / 2 / whole, s | Keras outside its steps, s | '
           'aesthetix stage 1 / 2 / whole, s | speed-up stage 1 / 2 / whole (x) |',
           '|---|---:|---:|---:|---:|']
  ups = {name: [] for name in names}
  for seed in seeds:
    k, a = times[seed]['keras'], times[seed]['aesthetix']
    for name in names:
      ups[name].append(speedup(WHOLE, k[name], a[name]))
    lines.append(f'| {seed} | {slash(k[n] for n in names)} | {times[seed]["outside"]:.1f} '
                 f'| {slash(a[n] for n in names)} | '
                 f'{" / ".join(fmt_ratio(ups[n][-1]) for n in names)} |')
  for label, reduce in (('mean', np.mean), ('min', np.min), ('max', np.max)):
    cells = [fmt_ratio(reduce(ups[n]) if None not in ups[n] else None) for n in names]
    lines.append(f'| {label} | | | | {" / ".join(cells)} |')
  return '\n'.join(lines)


def fmt_ratio(value):
  return 'n/a' if value is None else f'{value:.2f}'


# ------------------------------------------------------------------ command line

def define_flags():
  """The command line's flags, defined only when run as a script (run.py owns
  --workdir and --data_dir in a process that imports both, as pytest does)."""
  d = Settings()
  flags.DEFINE_integer('num_images', d.num_images, 'Training images.')
  flags.DEFINE_integer('num_eval_images', d.num_eval_images,
                       'Images in the validation and in the test split.')
  flags.DEFINE_integer('image_size', d.image_size, 'Pixels per side.')
  flags.DEFINE_integer('batch_size', d.batch_size, 'Batch size, both stages.')
  flags.DEFINE_integer('stage1_epochs', d.stage1_epochs, 'Stage 1 epochs.')
  flags.DEFINE_integer('stage2_epochs', d.stage2_epochs, 'Stage 2 epochs.')
  flags.DEFINE_bool('paper', False, "The paper's schedule: image size, batch size and "
                    'epochs from configs/aadb.py (224, 64, 5 + 3); --num_images still applies.')
  flags.DEFINE_integer('seed', d.seed, 'config.seed of the run.')
  flags.DEFINE_list('seeds', [], 'Run only the two schedules, once per seed, and compare '
                    "both sides' test rho paired by seed (and their times).")
  flags.DEFINE_bool('same_stage2_start', False, "With --seeds: aesthetix's stage 2 starts "
                    "from Keras' weights after its stage 1 (aesthetix skips stage 1's "
                    'training), to compare the two stage 2s alone.')
  flags.DEFINE_bool('bf16', d.bf16, "aesthetix with config.model.dtype='bfloat16'.")
  flags.DEFINE_bool('keras_gpu', d.keras_gpu, 'Let Keras (TensorFlow) use GPUs.')
  flags.DEFINE_integer('timed_steps', d.timed_steps, 'Batches per throughput measurement.')
  flags.DEFINE_list('sides', list(d.sides), 'Columns to run, aesthetix among them: '
                    f'{", ".join(COLUMNS)} (torch: PyTorch eager on images; torch_cached: on '
                    'caches of the frozen layers). Not with --seeds (Keras and aesthetix).')
  flags.DEFINE_integer('matmul_size', d.matmul_size,
                       'Side of the float32 matmul that measures the machine.')
  flags.DEFINE_string('workdir', d.workdir, 'Where runs go, kept (default: a temporary '
                      'directory, removed at the end).')
  flags.DEFINE_string('data_dir', d.data_dir, 'TFDS data_dir (default: <workdir>/data).')
  flags.DEFINE_string('output', '', 'Also write the table to this file.')


def configure_tf_devices(keras_gpu):
  """TF on CPU unless asked; with GPUs for Keras, both frameworks grow their memory."""
  gpus = tf.config.list_physical_devices('GPU')
  if keras_gpu and gpus:
    # aesthetix.input_pipeline hid the GPUs from TF at import; the runtime is not up yet.
    tf.config.set_visible_devices(gpus, 'GPU')
    for gpu in gpus:
      tf.config.experimental.set_memory_growth(gpu, True)
    os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  else:
    tf.config.set_visible_devices([], 'GPU')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  configure_tf_devices(f.keras_gpu)
  settings = Settings(**{field.name: f[field.name].value
                         for field in dataclasses.fields(Settings)})
  try:
    settings = dataclasses.replace(settings, sides=check_sides(settings.sides))
  except ValueError as e:  # A user's --sides: exit 2 with the message.
    raise app.UsageError(str(e), exitcode=2) from e
  if f.paper:
    settings = paper_schedule(settings)
  # Without --workdir the runs (0.5-1.3 GB at the defaults) go to a temporary
  # directory that is removed at the end; with it they are kept.
  with tempfile.TemporaryDirectory(prefix='keras_vs_aesthetix_') as scratch:
    settings = dataclasses.replace(settings, workdir=settings.workdir or scratch)
    if f.seeds:
      table = run_seeds(settings, [int(seed) for seed in f.seeds], f.same_stage2_start)
    else:
      table = run_benchmark(settings)['table']
  print(table)
  if f.output:
    with open(f.output, 'w') as out:
      out.write(table + '\n')
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
