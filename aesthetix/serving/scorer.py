"""Scores for photos from a trained workdir: the API applications call.

  import aesthetix
  scorer = aesthetix.Scorer.from_workdir('workdirs/demo')
  scorer.score(['photo.jpg', pil_image, uint8_array])
  # [{'score': 0.61, 'BalacingElements': 0.05, ...}, ...]   (the dataset's scale)

Photos are read and resized exactly as `--mode=predict` reads them (it scores
through a Scorer too: one scoring path), then scored in batches of at most a
fixed size; a batch of few photos is padded only to the next power of two times
the devices (each such size compiled once, on its first use). Only the workdir is needed:
its config.json and newest checkpoint that restores.

Beside each output's score, `score` gives `<output>_percentile`: where the
score lies among the model's predictions on its own training photos (0 to
100; W/score_quantiles.json, kept by training), when the workdir has them.
`Scorer.from_workdirs([W1, W2, ...])` scores with an ensemble: each output is
the members' mean (taken in unit scale) and `<output>_sd` the members'
standard deviation (the dataset's scale, n in the denominator), the simplest
honest "how sure"; the members must predict the same outputs from the same
input size.
A score that is not a finite number is never returned: `score`, `score_array`
and `score_table` raise NonFiniteScoreError (predict writes the reason in the
photo's row instead).
"""

import os

from absl import logging
import jax
import numpy as np
from PIL import Image

from aesthetix.data import images as images_lib
from aesthetix.runtime import errors
from aesthetix.runtime import parallel
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import forward
from aesthetix.training import plan as plan_lib
from aesthetix.training import quantiles as quantiles_lib
from aesthetix.training import trained as trained_lib

# Column suffixes of an output's spread over an ensemble's members and of its percentile.
SD_SUFFIX = '_sd'
PERCENTILE_SUFFIX = '_percentile'


class EnsembleError(errors.UserError):
  """Workdirs that cannot score as one ensemble (other outputs, input sizes)."""


class NonFiniteScoreError(errors.UserError, ValueError):
  """The model gave NaN or an infinity for a photo: never a score (the message
  names the photos and the outputs)."""


def nonfinite_reason(columns, values, outputs=None):
  """Why one photo's `values` (one per name of `columns`) are not scores. With
  `outputs` (how many of the first columns are the outputs' own scores), a
  derived column (an ensemble's sd, a percentile) that is non-finite because its
  score is goes unnamed."""
  values = np.asarray(values, np.float64)
  if outputs is not None and not np.isfinite(values[:outputs]).all():
    columns, values = columns[:outputs], values[:outputs]
  bad = [f'{n} {v}' for n, v in zip(columns, values) if not np.isfinite(v)]
  return (f'the model gave a non-finite score ({", ".join(bad)}); its checkpoint may be '
          'damaged or its training diverged: score with another workdir, or train this '
          'one again')


def padded_rows(n, step, devices, processes):
  """Rows a step of `n` photos is padded to, of at most `step`: the smallest
  devices x 2^k that holds them (one compiled program per size, so one photo
  does not pay for a full batch), or always `step` when several processes run
  (every process must run the same program)."""
  if processes > 1:
    return step
  rows = devices
  while rows < n:
    rows *= 2
  return min(rows, step)


def batch_size_for(plan, devices=None, batch_size=None):
  """`batch_size` (default: the plan's eval batch) rounded up to a multiple of
  the devices, so that it splits over any device count."""
  devices = parallel.device_count() if devices is None else devices
  return -(-int(batch_size or plan.eval_batch_size) // devices) * devices


def ensemble_problem(plans, workdirs):
  """Why the trained `plans` (of `workdirs`) cannot score as one ensemble, or None:
  they must predict the same outputs, in the same ranges, from the same pixels."""
  first, why = plans[0], []
  for plan, workdir in zip(plans[1:], workdirs[1:]):
    if plan.output_names != first.output_names:
      why.append(f'{workdir} predicts {", ".join(plan.output_names)} but {workdirs[0]} '
                 f'predicts {", ".join(first.output_names)}')
    elif any(plan.data.targets.ranges[n] != first.data.targets.ranges[n]
             for n in plan.output_names):
      why.append(f'{workdir} has other ranges of its outputs than {workdirs[0]}')
    if (plan.data.image_size, plan.data.resize_method) != (first.data.image_size,
                                                           first.data.resize_method):
      why.append(f'{workdir} takes {plan.data.image_size}x{plan.data.image_size} pixels '
                 f'({plan.data.resize_method}), {workdirs[0]} {first.data.image_size}x'
                 f'{first.data.image_size} ({first.data.resize_method})')
  return '; '.join(why) or None


def ensemble_quantiles(plans, workdirs):
  """The quantile record of an ensemble's mean predictions on the training photos
  its members share (each member's predictions/<last stage>_train.npz), or None
  (with a warning) when a member has none or they share no photos."""
  predictions = []
  for plan, workdir in zip(plans, workdirs):
    saved = workdir_lib.load_predictions(workdir, plan.last_stage.name, plan.data.train_split)
    if saved is None:
      logging.warning('%s keeps no predictions of its training photos (trained before '
                      'aesthetix kept them): the ensemble\'s scores have no percentiles. '
                      'Run its train command again to add them.', workdir)
      return None
    predictions.append(dict(zip(saved['ids'].tolist(), saved['pred'])))
  shared = [i for i in predictions[0] if all(i in p for p in predictions[1:])]
  if len(shared) < 2:
    logging.warning('The members of the ensemble (%s) share no training photos: its scores '
                    'have no percentiles.', ', '.join(workdirs))
    return None
  mean = np.mean(np.stack([np.stack([p[i] for i in shared]) for p in predictions]), axis=0)
  plan = plans[0]
  return quantiles_lib.record(plan.output_names, mean, plan.data.train_split,
                              plan.last_stage.name)


def workdir_quantiles(workdir):
  """The workdir's score quantiles, or None (with a warning: no percentile column)."""
  record = workdir_lib.read_score_quantiles(workdir)
  if record is None:
    logging.warning('%s has no %s (trained before aesthetix kept it): scores have no '
                    'percentile column. Run its train command again to add it (it only '
                    'predicts the training photos).', workdir, workdir_lib.SCORE_QUANTILES_FILE)
  return record


class Scorer:
  """A trained model, or an ensemble of them, ready to score photos; see the
  module's docstring.

  plan: the (first) member's plan, which gives the outputs, their scale and
  the pixels; model, params: the first member's; members: ((model, params),
  ...), one for a single model; score_quantiles: a quantile record
  (training/quantiles.py) or None; ensemble: whether `<output>_sd` columns
  are given (an ensemble of one has them, all 0).
  """

  def __init__(self, plan, model, params, batch_size=None, score_quantiles=None,
               members=None, ensemble=False):
    self.plan = plan
    self.model = model
    self.names = tuple(plan.output_names)
    self.image_size = plan.data.image_size
    self.batch_size = batch_size_for(plan, batch_size=batch_size)
    self.params = params
    self.members = tuple(members or ((model, params),))
    self.ensemble = ensemble
    self.score_quantiles = score_quantiles
    self.quantiles = (None if score_quantiles is None
                      else quantiles_lib.table(score_quantiles, self.names))
    self.sd_names = tuple(n + SD_SUFFIX for n in self.names) if ensemble else ()
    self.percentile_names = (tuple(n + PERCENTILE_SUFFIX for n in self.names)
                             if self.quantiles is not None else ())
    self.columns = self.names + self.sd_names + self.percentile_names
    self._replicated = [parallel.replicate(p) for _, p in self.members]
    programs, self._steps = [], []  # Members of one architecture share one program.
    for member_model, _ in self.members:
      step = next((s for other, s in programs if other == member_model), None)
      if step is None:
        step = forward.make_predict_step(member_model)
        programs.append((member_model, step))
      self._steps.append(step)

  @classmethod
  def from_workdir(cls, workdir, batch_size=None):
    """The model a training run left in `workdir` (config.json, newest checkpoint,
    and score_quantiles.json when it has one)."""
    return cls(*trained_lib.load_trained(workdir), batch_size,
               score_quantiles=workdir_quantiles(workdir))

  @classmethod
  def from_workdirs(cls, workdirs, batch_size=None):
    """The ensemble of the models of `workdirs` (see the module's docstring).

    Their configs are compared before any checkpoint loads: other outputs,
    ranges or input sizes raise EnsembleError. Percentiles: an ensemble of one
    reads its member's quantiles; a larger one those of its mean predictions
    on the training photos its members share.
    """
    workdirs = [os.fspath(w) for w in workdirs]
    if not workdirs:
      raise EnsembleError('An ensemble needs at least one workdir.')
    plans = [plan_lib.resolve(workdir_lib.trained_config(w)) for w in workdirs]
    problem = ensemble_problem(plans, workdirs)
    if problem:
      raise EnsembleError(f'These workdirs cannot score as one ensemble: {problem}.')
    loaded = [trained_lib.load_trained(w) for w in workdirs]
    record = (workdir_quantiles(workdirs[0]) if len(workdirs) == 1
              else ensemble_quantiles(plans, workdirs))
    plan, model, params = loaded[0]
    return cls(plan, model, params, batch_size, score_quantiles=record,
               members=[(m, p) for _, m, p in loaded], ensemble=True)

  def pixels(self, image):
    """A path, a PIL image or a uint8 array [H, W, 3] (or [H, W]) -> the model's
    input uint8 [S, S, 3], read and resized as `--mode=predict` does."""
    if isinstance(image, (str, os.PathLike)):
      image = images_lib.load_image(os.fspath(image))
    elif isinstance(image, Image.Image):
      image = images_lib.to_rgb(image)
    image = np.asarray(image)
    if image.dtype != np.uint8:
      raise ValueError(f'Pixels must be uint8 (0-255), got {image.dtype}; read the file '
                       'with Pillow, or pass its path.')
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f'Pixels must be RGB [height, width, 3], got shape {image.shape}.')
    return images_lib.model_input(image, self.plan.data)

  def member_pixels(self, batch, full=False):
    """uint8 [b, S, S, 3] (b up to the batch size: padded here, to the whole
    batch when `full`) -> [members, b, outputs] in [0, 1]; this process's rows
    of one step per member, as every scoring path runs it."""
    n, step = len(batch), parallel.process_batch_size(self.batch_size)
    rows = step if full else padded_rows(n, step, parallel.device_count(),
                                         jax.process_count())
    padded = np.zeros((rows,) + batch.shape[1:], np.uint8)
    padded[:n] = batch
    put = parallel.put_batch({'image': padded})
    return np.stack([parallel.local_rows(run(params, put))[:n, :len(self.names)]
                     for run, params in zip(self._steps, self._replicated)])

  def score_pixels(self, batch, full=False):
    """uint8 [b, S, S, 3] -> [b, outputs] in [0, 1]: the members' mean (see
    `member_pixels`)."""
    return np.mean(self.member_pixels(batch, full), axis=0)

  def table(self, unit):
    """The members' scores [members, N, outputs] in [0, 1] -> [N, columns] in
    `columns` order: the mean in the dataset's scale, the members' standard
    deviation (an ensemble), the mean's percentile (quantiles known)."""
    unit = np.asarray(unit, np.float32)
    mean = self.plan.from_unit(np.mean(unit, axis=0))
    parts = [mean]
    if self.ensemble:
      parts.append(np.std(self.plan.from_unit(unit), axis=0))
    if self.quantiles is not None:
      at, values = self.quantiles
      parts.append(np.stack([quantiles_lib.percentile(mean[:, i], values[:, i], at)
                             for i in range(len(self.names))], axis=-1))
    return np.concatenate(parts, axis=-1)

  def _member_scores(self, images):
    """[members, photos, outputs] in [0, 1] of paths, PIL images or uint8 arrays."""
    pixels = [self.pixels(x) for x in images]
    out = np.zeros((len(self.members), len(pixels), len(self.names)), np.float32)
    step = parallel.process_batch_size(self.batch_size)
    for start in range(0, len(pixels), step):
      chunk = np.stack(pixels[start:start + step])
      # Several batches: the last one too runs the full batch's program, not a new one.
      out[:, start:start + len(chunk)] = self.member_pixels(chunk, full=len(pixels) > step)
    return out

  def score_array(self, images):
    """[photos, outputs] in the dataset's scale, outputs in `names` order (an
    ensemble's: the members' mean)."""
    return self.score_table(images)[:, :len(self.names)].astype(np.float32)

  def score_table(self, images):
    """[photos, columns] in `columns` order (see `table`); NonFiniteScoreError
    when a photo's score is not a finite number."""
    unit = self._member_scores(list(images))
    if not unit.shape[1]:
      return np.zeros((0, len(self.columns)), np.float32)
    out = self.table(unit)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if len(bad):
      raise NonFiniteScoreError(
          f'Photo(s) {", ".join(map(str, bad[:10]))}{", ..." if len(bad) > 10 else ""} (of '
          f'{len(out)}): {nonfinite_reason(self.columns, out[bad[0]], len(self.names))}.')
    return out

  def score(self, images):
    """One {column: value} per photo (paths, PIL images or uint8 arrays): every
    output's score in the dataset's scale, then `<output>_sd` (an ensemble)
    and `<output>_percentile` (0-100, when the quantiles are known)."""
    if isinstance(images, (str, os.PathLike, Image.Image)) or (
        isinstance(images, np.ndarray) and images.ndim <= 3):
      images = [images]
    return [dict(zip(self.columns, map(float, row))) for row in self.score_table(list(images))]
