"""The paper's two-stage schedule: train the head on a frozen VGG16, then fine-tune.

Section 4.2: stage 1 trains the head with Adam (1e-3) on a frozen backbone;
stage 2 starts a fresh Adam (1e-4, halved every 125 steps) from stage 1's
parameters with block4_conv2 and block4_conv3 unfrozen. MSE over all outputs.
Checkpoints after every epoch make a stopped run resumable, to the bit.
"""

import math
import os
import time

from absl import logging
import jax
import numpy as np

from aesthetix import checkpoint
from aesthetix import device_defaults
from aesthetix import feature_cache
from aesthetix import input_pipeline
from aesthetix import metrics
from aesthetix import model as model_lib
from aesthetix import optim
from aesthetix import parallel
from aesthetix import preflight as preflight_lib
from aesthetix import progress
from aesthetix import report
from aesthetix import schedule
from aesthetix import steps
from aesthetix import targets
from aesthetix import workdir as workdir_lib

STAGES = schedule.STAGES


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite."""


class CollapsedPredictionsError(FloatingPointError):
  """The model predicts the same value for every image: the run diverged."""


class Source:
  """Where a stage's batches come from: images, or a cache of frozen layers.

  kind: None (decode images), steps.FEATURES or steps.PREFIX; arrays: {split:
  [split examples, views, ...]} (feature_cache.Rows); layer: the prefix's last
  layer.
  """

  def __init__(self, config, kind=None, arrays=None, layer=None):
    self.config, self.kind, self.arrays, self.layer = config, kind, arrays, layer

  def train(self, *, batch_size, epoch):
    c, split = self.config, self.config.dataset.train_split
    if self.kind is None:
      return input_pipeline.train_batches(c, split, batch_size=batch_size, epoch=epoch,
                                          seed=c.seed)
    return input_pipeline.train_feature_batches(c, split, self.arrays[split],
                                                batch_size=batch_size, epoch=epoch,
                                                seed=c.seed, key=self.kind)

  def eval(self, split, *, batch_size):
    if self.kind is None:
      return input_pipeline.eval_batches(self.config, split, batch_size=batch_size)
    return input_pipeline.eval_feature_batches(self.config, split, self.arrays[split],
                                               batch_size=batch_size, key=self.kind)

  def train_step(self, model, optimizer, labels):
    return steps.make_train_step(model, optimizer, labels, prefix_layer=self.layer)

  def predict_step(self, model):
    return steps.make_predict_step(model, prefix_layer=self.layer)


def predict_split(config, predict_step, params, split, source=None):
  """(ids, y_true, y_pred) of every example of `split`, in index order, on every
  process; targets in unit scale.

  Each process predicts its part; the parts are gathered as numbers (index,
  targets, predictions, padding kept so that every process sends the same
  shapes) and mapped back to ids here.
  """
  index, true, pred = [], [], []
  source = source or Source(config)
  for batch, host in parallel.prefetch(source.eval(split, batch_size=config.eval_batch_size)):
    pred.append(parallel.local_rows(predict_step(params, batch)))
    index.append(np.where(host['mask'], host['index'], -1))
    true.append(host['target'])
  rows = parallel.gather_examples(
      np.concatenate(index), dict(true=np.concatenate(true), pred=np.concatenate(pred)),
      input_pipeline.num_examples(config, split))
  ids = np.array(input_pipeline.split_ids(config, split), dtype=object)
  return ids, rows['true'], rows['pred']


def evaluate_split(config, predict_step, params, split, source=None):
  """Metrics per output in the dataset's scale, and the predictions behind them."""
  names = targets.model_output_names(config)
  ids, true, pred = predict_split(config, predict_step, params, split, source)
  true = targets.from_unit(config.dataset.name, true[:, :len(names)])
  pred = targets.from_unit(config.dataset.name, pred)
  return metrics.output_metrics(names, true, pred), dict(ids=ids, true=true, pred=pred)


def train_epoch(config, train_step, state, source, stage_name, stage, epoch, global_epoch):
  """Epoch `epoch` (of the stage) over the training split, its order drawn for
  `global_epoch`; returns (state, mean loss, images/s, seconds, seconds the
  host spent waiting for its batches)."""
  parallel.host_batch_size(stage.batch_size)  # A clear error for an uneven batch.
  batches = source.train(batch_size=stage.batch_size, epoch=global_epoch)
  steps = input_pipeline.num_train_batches(config, config.dataset.train_split,
                                           stage.batch_size)
  loss_sum, count, start, waited = 0.0, 0.0, time.time(), 0.0
  pending = []
  bar = progress.bar(steps, f'{stage_name} epoch {epoch + 1}/{stage.epochs}', unit='step')
  batches = iter(parallel.prefetch(batches))
  for i in range(steps):
    asked = time.perf_counter()
    batch, _ = next(batches)
    waited += time.perf_counter() - asked
    state, m = train_step(state, batch)
    pending.append(m)
    if (i + 1) % config.log_every_steps == 0 or i + 1 == steps:
      s, c = _collect(pending)
      pending = []
      _check_finite(s, stage_name, stage, epoch, i)
      loss_sum, count = loss_sum + s, count + c
      bar.set_postfix(loss=f'{loss_sum / max(count, 1):.4f}')
    bar.update(1)
  bar.close()
  seconds = time.time() - start
  return state, loss_sum / max(count, 1), count / seconds, seconds, waited


def _collect(step_metrics):
  """Sums loss and example counts of pending steps (replicated: the local copy)."""
  fetched = parallel.unreplicate([(m['loss_sum'], m['count']) for m in step_metrics])
  return float(sum(s for s, _ in fetched)), float(sum(c for _, c in fetched))


def _check_finite(loss_sum, stage_name, stage, epoch, step):
  if not math.isfinite(loss_sum):
    raise NonFiniteLossError(
        f'The loss became {loss_sum} in {stage_name}, epoch {epoch + 1}/{stage.epochs}, '
        f'near step {step + 1}. The run stopped; the last good checkpoint is kept. '
        f'{_lower_rate_advice(stage_name, stage)} Or check the data for broken labels.')


def _lower_rate_advice(stage_name, stage):
  where = ('on this workdir: stage 2 starts again from the end of stage 1'
           if stage_name == STAGES[-1] else 'with a new --workdir')
  return (f'Lower the learning rate (--config.{stage_name}.learning_rate, now '
          f'{stage.learning_rate:g}) and run again {where}.')


def collapsed_outputs(names, pred):
  """Names of outputs whose predictions [N, n] are all equal, or not finite."""
  if len(pred) < 2:
    return []
  pred = np.asarray(pred)
  return [name for name, column in zip(names, pred.T)
          if not np.all(np.isfinite(column)) or np.ptp(column) == 0]


def _check_not_collapsed(config, predictions, stage_name, stage, epoch, last_good):
  names = targets.model_output_names(config)
  collapsed = collapsed_outputs(names, predictions['pred'])
  if not collapsed:
    return
  values = ', '.join(f'{n} {v:.4g}' for n, v in zip(
      names, predictions['pred'][0]) if n in collapsed[:4])
  kept = (f'checkpoint {last_good} is kept' if last_good
          else 'there is no earlier checkpoint')
  raise CollapsedPredictionsError(
      f'The predictions collapsed in {stage_name}, epoch {epoch + 1}/{stage.epochs}: '
      f'{len(collapsed)} of {len(names)} outputs ({", ".join(collapsed)}) are the same for '
      f'every image of the {config.dataset.val_split} split ({values}{", ..." if len(collapsed) > 4 else ""}), '
      f'so their validation rho is undefined: the training diverged (saturated sigmoids). '
      f'The run stopped before saving this epoch; {kept}. '
      f'{_lower_rate_advice(stage_name, stage)}')


def append_metrics(workdir, record):
  """Appends a record to metrics.jsonl (process 0 writes; the others skip)."""
  if parallel.is_main_process():
    workdir_lib.append_jsonl(os.path.join(workdir, workdir_lib.METRICS_FILE), record)


def save_predictions(workdir, stage_name, split, predictions):
  if parallel.is_main_process():
    workdir_lib.save_npz(workdir_lib.prediction_path(workdir, stage_name, split), predictions)


def predictions_saved(workdir, stage_name, split):
  """Whether `stage_name`'s predictions of `split` are saved and readable; a
  damaged file is moved aside (the split is then predicted again)."""
  try:
    return workdir_lib.load_predictions(workdir, stage_name, split) is not None
  except workdir_lib.WorkdirError as e:
    if parallel.is_main_process():
      workdir_lib.move_aside(workdir, workdir_lib.prediction_path(workdir, stage_name, split),
                             str(e).split(' (')[0] + ' could not be read')
    return False


def restore_latest(config, workdir, mngr, fresh):
  """(stage index, epochs done in it, state) from the newest checkpoint that
  restores, or the start. Checkpoints that do not restore are moved to
  WORKDIR/damaged/ (never deleted) and named in the log."""
  def restore(number):
    meta = checkpoint.restore_meta(mngr, number)
    like = steps.stage_state(fresh, optim.stage_optimizer(config[STAGES[meta['stage_index']]],
                                                    fresh['params']))
    return meta, checkpoint.restore(mngr, number, like)

  agree = lambda ok: bool(parallel.gather_processes(np.array(ok)).all())
  number, restored, skipped = checkpoint.restore_newest(mngr, restore, agree)
  if skipped:
    if parallel.is_main_process():
      for n, why in skipped.items():
        workdir_lib.move_aside(workdir, os.path.join(workdir, workdir_lib.CHECKPOINT_DIR,
                                                     str(n)),
                               f'checkpoint {n} does not restore ({why})',
                               name=f'checkpoint-{n}')
    parallel.sync('damaged checkpoints moved')
    mngr.reload()
  if number is None:
    return 0, 0, None
  meta, state = restored
  logging.info('Resuming from checkpoint %d: %s, %d epoch(s) of %d done%s.', number,
               STAGES[meta['stage_index']], meta['epoch'],
               config[STAGES[meta['stage_index']]].epochs,
               f' (newer checkpoint(s) {", ".join(map(str, skipped))} did not restore and '
               f'are in {os.path.join(workdir, workdir_lib.DAMAGED_DIR)})' if skipped else '')
  return meta['stage_index'], meta['epoch'], state


def write_split_lists(config, workdir):
  """Records which images each split held (EVA's split is computed, not official)."""
  if not parallel.is_main_process():
    return
  d = config.dataset
  for split in (d.train_split, d.val_split, d.test_split):
    workdir_lib.write_lines(os.path.join(workdir, workdir_lib.SPLITS_DIR, f'{split}.txt'),
                            input_pipeline.split_ids(config, split))


def cached_kinds(config, stage_index, params):
  """{kind: (prefix layer, weights digest)}: what stage `stage_index` reads from caches.

  Stage 1 (whole backbone frozen) reads features and, for the later stages,
  writes the prefix in the same pass; a stage that trains backbone layers reads
  the prefix below them. params: host params.
  """
  stage = config[STAGES[stage_index]]
  kinds = {}
  prefix = (steps.prefix_layer(config, STAGES[stage_index:])
            if config.prefix_cache else None)
  if prefix is not None:
    kinds[feature_cache.PREFIX] = (prefix, feature_cache.backbone_digest(params, prefix))
  if config.feature_cache and not stage.trainable_layers:
    kinds[feature_cache.FEATURES] = (prefix, feature_cache.backbone_digest(params))
  return kinds


def stage_source(config, workdir, model, params, host_params, stage_index, passes=None):
  """The stage's `Source`: a cache of its frozen layers where configured, else images.

  params: replicated, to compute a missing cache; host_params: the same values
  on the host, for the digests that key the cache files. passes: a list that
  gets the splits whose cache a backbone pass computed.
  """
  kinds = cached_kinds(config, stage_index, host_params)
  if not kinds:
    return Source(config)
  cache_dir = config.feature_cache_dir or os.path.join(workdir, workdir_lib.CACHE_DIR)
  d = config.dataset
  arrays = {split: feature_cache.load_or_compute(config, cache_dir, model, params, split,
                                                 views, kinds, passes)
            for split, views in ((d.train_split, feature_cache.TRAIN_VIEWS),
                                 (d.val_split, feature_cache.EVAL_VIEWS),
                                 (d.test_split, feature_cache.EVAL_VIEWS))}
  kind = (feature_cache.FEATURES if feature_cache.FEATURES in kinds
          else feature_cache.PREFIX)
  layer = kinds[feature_cache.PREFIX][0] if kind == feature_cache.PREFIX else None
  return Source(config, kind, {split: a[kind] for split, a in arrays.items()}, layer)


def lock_workdir(workdir):
  """The workdir's training lock, held by process 0 for the run's life; every
  process raises WorkdirBusyError when another run holds it."""
  lock, busy = workdir_lib.Lock(workdir), None
  if parallel.is_main_process():
    try:
      lock.acquire()
    except workdir_lib.WorkdirError as e:
      busy = e
  if not parallel.agree(int(busy is None)):
    raise busy or workdir_lib.WorkdirBusyError(
        f'Process 0 could not lock {workdir}; see its message.')
  return lock


def preflight(config):
  """Everything the run needs that is missing (data, weights), listed at once,
  before anything is built or written."""
  data = input_pipeline.data_problem(config)
  # Without the data the run cannot start: no download then, only the check.
  weights = model_lib.weights_problem(config.model.backbone_weights, download=data is None)
  preflight_lib.raise_if_any([data, weights])


def train_and_evaluate(config, workdir):
  """Runs (or resumes) both stages, then writes results.json and report.md.

  One training run at a time per workdir (a lock held for its life). In a
  multi-process run (`parallel.initialize` first) every process calls this;
  process 0 alone writes the workdir's files, Orbax the checkpoints.
  """
  preflight(config)
  lock = lock_workdir(workdir)
  try:
    return _train_and_evaluate(config, workdir)
  finally:
    lock.release()


def _train_and_evaluate(config, workdir):
  main = parallel.is_main_process()
  metrics_path = os.path.join(workdir, workdir_lib.METRICS_FILE)
  if main:
    workdir_lib.repair_jsonl(metrics_path)
  change = checkpoint.claim_workdir(workdir, config, write=main)
  if change is not None:
    append_metrics(workdir, dict(config_change=change))
  parallel.sync('claim workdir')
  config, origin = device_defaults.resolve(config)
  logging.info('Caches: stage-1 features %s, block4 prefix %s (%s).',
               'on' if config.feature_cache else 'off', 'on' if config.prefix_cache else 'off',
               ', '.join(f'{k} from the {v}' for k, v in origin.items()))
  model = model_lib.build_model(config)
  fresh = steps.initial_state(config, model, jax.random.PRNGKey(config.seed))
  mngr = checkpoint.manager(workdir, max_to_keep=config.checkpoint_max_to_keep,
                            keep=(schedule.epoch_offset(config, 1),))
  start_stage, start_epoch, state = restore_latest(config, workdir, mngr, fresh)
  state = state or fresh
  write_split_lists(config, workdir)
  logging.info('Training on %d device(s) in %d process(es); %d train examples.',
               jax.device_count(), jax.process_count(),
               input_pipeline.num_examples(config, config.dataset.train_split))

  try:
    run_stages(config, workdir, model, mngr, state, start_stage, start_epoch)
  except jax.errors.JaxRuntimeError:
    # In a multi-process run this is most often a peer that died: its part of
    # a save in flight never comes, and waiting would hang. Finished
    # checkpoints are whole on disk either way.
    if parallel.process_count() == 1:
      checkpoint.finish(mngr)
    raise
  except BaseException:  # A stopped run keeps its last checkpoint whole.
    checkpoint.finish(mngr)
    raise
  checkpoint.finish(mngr)

  if parallel.is_main_process():
    results = report.write(config, workdir)
    print(report.test_rho_table(results))
    logging.info('Results in %s and %s; `python run.py --mode=report --workdir=%s` adds '
                 'the figures.', os.path.join(workdir, workdir_lib.REPORT_FILE),
                 os.path.join(workdir, workdir_lib.RESULTS_FILE), workdir)
  parallel.sync('report')
  return 0


def run_stages(config, workdir, model, mngr, state, start_stage, start_epoch):
  """Stages `start_stage`.. from host `state`, resuming at `start_epoch` of the first."""
  for stage_index in range(start_stage, len(STAGES)):
    stage_name, stage = STAGES[stage_index], config[STAGES[stage_index]]
    first_epoch = start_epoch if stage_index == start_stage else 0
    # Process 0 decides: a file another process cannot see yet must not split the run.
    test_done = parallel.agree(int(predictions_saved(
        workdir, stage_name, config.dataset.test_split))) == 1
    if first_epoch == stage.epochs and test_done:
      continue
    start = time.time()
    optimizer = optim.stage_optimizer(stage, state['params'])
    if first_epoch == 0:
      state = steps.stage_state(state, optimizer)
    replicated = parallel.replicate(state)
    passes = []
    source = stage_source(config, workdir, model, replicated['params'], state['params'],
                          stage_index, passes)
    cache_seconds = time.time() - start
    if first_epoch < stage.epochs:
      replicated = run_stage(config, workdir, model, optimizer, mngr, replicated, source,
                             stage_index, first_epoch)
    if not test_done:
      test_stage(config, workdir, model, replicated['params'], source, stage_name)
    state = parallel.unreplicate(replicated)
    append_metrics(workdir, dict(stage=stage_name, timing=dict(
        seconds=time.time() - start, feature_cache_seconds=cache_seconds,
        first_epoch=first_epoch, epochs=stage.epochs,
        source=source.kind or 'image', cache_passes=passes)))


def run_stage(config, workdir, model, optimizer, mngr, state, source, stage_index,
              first_epoch):
  """Epochs `first_epoch`.. of one stage on replicated `state`, validating and
  checkpointing after each; returns the replicated state."""
  stage_name, stage = STAGES[stage_index], config[STAGES[stage_index]]
  # Labels depend on the tree's paths only: no need to fetch the values.
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  train_step = source.train_step(model, optimizer, labels)
  predict_step = source.predict_step(model)
  overall = targets.model_output_names(config)[0]
  for epoch in range(first_epoch, stage.epochs):
    global_epoch = schedule.epoch_offset(config, stage_index) + epoch
    state, loss, images_per_s, seconds, input_s = train_epoch(
        config, train_step, state, source, stage_name, stage, epoch, global_epoch)
    val, predictions = evaluate_split(config, predict_step, state['params'],
                                      config.dataset.val_split, source)
    _check_not_collapsed(config, predictions, stage_name, stage, epoch, global_epoch)
    checkpoint.save(mngr, global_epoch + 1, parallel.unreplicate(state),
                    dict(stage_index=stage_index, stage=stage_name, epoch=epoch + 1))
    logging.info('%s epoch %d/%d: loss %.5f, val rho(%s) %.4f, %.1f images/s',
                 stage_name, epoch + 1, stage.epochs, loss, overall,
                 val[overall]['spearman'], images_per_s)
    append_metrics(workdir, dict(stage=stage_name, epoch=epoch + 1, train_loss=loss,
                                 images_per_second=images_per_s, epoch_seconds=seconds,
                                 input_wait_seconds=input_s, validation=val))
  return state


def test_stage(config, workdir, model, params, source, stage_name):
  """Evaluates the test split at the end of a stage (Table 5/10's columns)."""
  test, predictions = evaluate_split(config, source.predict_step(model), params,
                                     config.dataset.test_split, source)
  save_predictions(workdir, stage_name, config.dataset.test_split, predictions)
  append_metrics(workdir, dict(stage=stage_name, test=test))
  parallel.sync(f'{stage_name} test predictions')
  overall = targets.model_output_names(config)[0]
  logging.info('%s test rho(%s) %.4f', stage_name, overall, test[overall]['spearman'])


def load_trained(workdir):
  """(config, model, params) of a trained workdir, from its files alone."""
  config = checkpoint.trained_config(workdir)
  model = model_lib.build_model(config)
  like = model_lib.param_shapes(model, config.dataset.image_size)
  return config, model, checkpoint.restore_params(workdir, like)


def evaluate_workdir(workdir, dataset=None, data_dir=None, manual_dir=None,
                     builder_kwargs=None):
  """Evaluates a trained workdir on a test split; returns (results, path written).

  `dataset` other than the training one gives the cross-dataset test of
  Table 11: the overall score only, in the other dataset's scale.
  """
  config, model, params = load_trained(workdir)
  eval_config = config.copy_and_resolve_references()
  eval_config.dataset.name = dataset or config.dataset.name
  if data_dir:
    eval_config.dataset.data_dir = data_dir
  if manual_dir:
    eval_config.dataset.manual_dir = manual_dir
  cross = eval_config.dataset.name != config.dataset.name
  if cross:  # The other dataset's own files, not the training set's subset options.
    eval_config.dataset.builder_kwargs = builder_kwargs
    eval_config.model.tasks = 'overall'
  split = eval_config.dataset.test_split
  _, true, pred = predict_split(eval_config, steps.make_predict_step(model),
                                parallel.replicate(params), split)
  names = targets.model_output_names(eval_config)
  n = len(names)
  true = targets.from_unit(eval_config.dataset.name, true[:, :n])
  pred = targets.from_unit(eval_config.dataset.name, pred[:, :n])
  result = dict(trained_on=config.dataset.name, evaluated_on=eval_config.dataset.name,
                split=split, metrics=metrics.output_metrics(names, true, pred))
  path = os.path.join(workdir, f'evaluation_{eval_config.dataset.name}_{split}.json')
  if parallel.is_main_process():
    workdir_lib.write_json(path, result, indent=2)
  parallel.sync('evaluation written')
  return result, path
