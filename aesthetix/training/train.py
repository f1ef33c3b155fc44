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

from aesthetix.data import datasets
from aesthetix.data import input_pipeline
from aesthetix.model import multitask as model_lib
from aesthetix.runtime import errors
from aesthetix.runtime import parallel
from aesthetix.runtime import phases
from aesthetix.runtime import preflight as preflight_lib
from aesthetix.runtime import progress
from aesthetix.runtime import summaries
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import checkpoint
from aesthetix.training import feature_cache
from aesthetix.training import forward
from aesthetix.training import history
from aesthetix.training import metrics
from aesthetix.training import optim
from aesthetix.training import params_file
from aesthetix.training import plan as plan_lib
from aesthetix.training import quantiles
from aesthetix.training import steps
from aesthetix.training import transfer


class NonFiniteLossError(errors.UserError):
  """The loss became NaN or infinite: the settings diverged (the message says which)."""


class CollapsedPredictionsError(errors.UserError):
  """The model predicts the same value for every image: the run diverged."""


class Source:
  """Where a stage's batches come from: images, or a cache of frozen layers.

  kind: plan.IMAGES (decode images), plan.FEATURES or plan.PREFIX; arrays:
  {split: [split examples, views, ...]} (feature_cache.Rows); layer: the
  prefix's last layer.
  """

  def __init__(self, plan, kind=plan_lib.IMAGES, arrays=None, layer=None):
    self.plan, self.kind, self.arrays, self.layer = plan, kind, arrays, layer

  def train(self, *, batch_size, epoch):
    data, seed = self.plan.data, self.plan.seed
    split = data.train_split
    if self.kind == plan_lib.IMAGES:
      return input_pipeline.train_batches(data, split, batch_size=batch_size, epoch=epoch,
                                          seed=seed)
    return input_pipeline.train_feature_batches(data, split, self.arrays[split],
                                                batch_size=batch_size, epoch=epoch,
                                                seed=seed, key=self.kind)

  def eval(self, split, *, batch_size):
    if self.kind == plan_lib.IMAGES:
      return input_pipeline.eval_batches(self.plan.data, split, batch_size=batch_size)
    return input_pipeline.eval_feature_batches(self.plan.data, split, self.arrays[split],
                                               batch_size=batch_size, key=self.kind)

  def train_step(self, model, optimizer, labels):
    return steps.make_train_step(model, optimizer, labels, prefix_layer=self.layer)

  def predict_step(self, model):
    return forward.make_predict_step(model, prefix_layer=self.layer)


def predict_split(plan, predict_step, params, split, source=None):
  """(ids, y_true, y_pred) of every example of `split`, in index order, on every
  process; targets in unit scale.

  Each process predicts its part; the parts are gathered as numbers (index,
  targets, predictions, padding kept so that every process sends the same
  shapes) and mapped back to ids here.
  """
  index, true, pred = [], [], []
  source = source or Source(plan)
  for batch, host in parallel.prefetch(source.eval(split, batch_size=plan.eval_batch_size)):
    pred.append(parallel.local_rows(predict_step(params, batch)))
    index.append(np.where(host['mask'], host['index'], -1))
    true.append(host['target'])
  rows = parallel.gather_examples(
      np.concatenate(index), dict(true=np.concatenate(true), pred=np.concatenate(pred)),
      input_pipeline.num_examples(plan.data, split))
  ids = np.array(input_pipeline.split_ids(plan.data, split), dtype=object)
  return ids, rows['true'], rows['pred']


def evaluate_split(plan, predict_step, params, split, source=None):
  """Metrics per output in the dataset's scale, and the predictions behind them."""
  names = plan.output_names
  ids, true, pred = predict_split(plan, predict_step, params, split, source)
  true = plan.from_unit(true[:, :len(names)])
  pred = plan.from_unit(pred[:, :len(names)])
  return metrics.output_metrics(names, true, pred), dict(ids=ids, true=true, pred=pred)


def train_epoch(plan, train_step, state, source, stage, epoch, events=None, profile=None):
  """Epoch `epoch` (of `stage`) over the training split, its order drawn for the
  run's global epoch; returns (state, mean loss, images/s, seconds, seconds the
  host spent waiting for its batches).

  events: a `summaries.Writer` for the loss and learning rate of every
  log_every_steps steps; profile: a `summaries.ProfileWindow` to trace, or None.
  """
  parallel.host_batch_size(stage.batch_size)  # A clear error for an uneven batch.
  batches = source.train(batch_size=stage.batch_size, epoch=stage.epoch_offset + epoch)
  steps = input_pipeline.num_train_batches(plan.data, plan.data.train_split,
                                           stage.batch_size)
  first = step_after(plan, stage, epoch)  # The schedule's steps before this epoch.
  loss_sum, count, start, waited = 0.0, 0.0, time.time(), 0.0
  pending = []
  bar = progress.bar(steps, f'{stage.name} epoch {epoch + 1}/{stage.epochs}', unit='step')
  batches = iter(parallel.prefetch(batches))
  for i in range(steps):
    if profile is not None:
      state = profile.at_step(i, steps, state)
    asked = time.perf_counter()
    with phases.timed(phases.INPUT_WAIT):
      batch, _ = next(batches)
    waited += time.perf_counter() - asked
    state, m = train_step(state, batch)
    pending.append(m)
    if (i + 1) % plan.log_every_steps == 0 or i + 1 == steps:
      s, c = _collect(pending)
      pending = []
      _check_finite(s, plan, stage, epoch, i)
      loss_sum, count = loss_sum + s, count + c
      bar.set_postfix(loss=f'{loss_sum / max(count, 1):.4f}')
      if events is not None:
        events.scalars(first + i + 1, {
            'train/loss': s / max(c, 1),
            'train/learning_rate': optim.learning_rate_at(stage, epoch * steps + i)})
    bar.update(1)
  if profile is not None:
    state = profile.at_step(steps, steps, state)
  bar.close()
  seconds = time.time() - start
  return state, loss_sum / max(count, 1), count / seconds, seconds, waited


def step_after(plan, stage, epochs):
  """The schedule's training steps after `epochs` epochs of `stage` (TensorBoard's
  step axis counts the steps of the whole schedule)."""
  per_epoch = lambda s: input_pipeline.num_train_batches(plan.data, plan.data.train_split,
                                                         s.batch_size)
  return (sum(s.epochs * per_epoch(s) for s in plan.stages[:stage.index])
          + epochs * per_epoch(stage))


def total_steps(plan):
  """Training steps of the whole schedule."""
  return step_after(plan, plan.last_stage, plan.last_stage.epochs)


def epoch_scalars(record):
  """TensorBoard's scalars of an epoch's metrics.jsonl record."""
  values = {f'epoch/{k}': record[k] for k in ('train_loss', 'images_per_second',
                                              'epoch_seconds', 'input_wait_seconds')}
  values.update({f'validation/rho/{name}': m['spearman']
                 for name, m in record['validation'].items()})
  return values


def _collect(step_metrics):
  """Sums loss and example counts of pending steps (replicated: the local copy)."""
  fetched = parallel.unreplicate([(m['loss_sum'], m['count']) for m in step_metrics])
  return float(sum(s for s, _ in fetched)), float(sum(c for _, c in fetched))


def _check_finite(loss_sum, plan, stage, epoch, step):
  if not math.isfinite(loss_sum):
    raise NonFiniteLossError(
        f'The loss became {loss_sum} in {stage.name}, epoch {epoch + 1}/{stage.epochs}, '
        f'near step {step + 1}. The run stopped; the last good checkpoint is kept. '
        f'{_lower_rate_advice(plan, stage)} Or check the data for broken labels.')


def _lower_rate_advice(plan, stage):
  where = (f'on this workdir: {stage.name} starts again from the end of '
           f'{plan.stages[stage.index - 1].name}'
           if stage.is_last and stage.index > 0 else 'with a new --workdir')
  return (f'Lower the learning rate (--config.{stage.name}.learning_rate, now '
          f'{stage.learning_rate:g}) and run again {where}.')


def collapsed_outputs(names, pred):
  """Names of outputs whose predictions [N, n] are all equal, or not finite."""
  if len(pred) < 2:
    return []
  pred = np.asarray(pred)
  return [name for name, column in zip(names, pred.T)
          if not np.all(np.isfinite(column)) or np.ptp(column) == 0]


def _check_not_collapsed(plan, predictions, stage, epoch, last_good):
  names = plan.output_names
  collapsed = collapsed_outputs(names, predictions['pred'])
  if not collapsed:
    return
  values = ', '.join(f'{n} {v:.4g}' for n, v in zip(
      names, predictions['pred'][0]) if n in collapsed[:4])
  kept = (f'checkpoint {last_good} is kept' if last_good
          else 'there is no earlier checkpoint')
  raise CollapsedPredictionsError(
      f'The predictions collapsed in {stage.name}, epoch {epoch + 1}/{stage.epochs}: '
      f'{len(collapsed)} of {len(names)} outputs ({", ".join(collapsed)}) are the same for '
      f'every image of the {plan.data.val_split} split ({values}{", ..." if len(collapsed) > 4 else ""}), '
      f'so their validation rho is undefined: the training diverged (saturated sigmoids). '
      f'The run stopped before saving this epoch; {kept}. '
      f'{_lower_rate_advice(plan, stage)}')


def append_metrics(workdir, record):
  """Appends a record to metrics.jsonl (process 0 writes; the others skip)."""
  if parallel.is_main_process():
    history.append(workdir, record)


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


def quantiles_saved(workdir):
  """Whether score_quantiles.json is saved and readable; a damaged one is moved
  aside (the training split is then predicted again)."""
  try:
    return workdir_lib.read_score_quantiles(workdir) is not None
  except workdir_lib.WorkdirError as e:
    if parallel.is_main_process():
      workdir_lib.move_aside(workdir, workdir_lib.score_quantiles_path(workdir),
                             str(e).split(' (')[0] + ' could not be read')
    return False


def every_process(ok):
  """Whether `ok` holds on every process (a decision all must share)."""
  return bool(parallel.gather_processes(np.array(ok)).all())


def restore_latest(plan, workdir, mngr, fresh):
  """(stage index, epochs done in it, state) from the newest checkpoint that
  restores, or the start. Checkpoints that do not restore are moved to
  WORKDIR/damaged/ (never deleted) and named in the log."""
  def restore(number):
    meta = checkpoint.restore_meta(mngr, number)
    like = steps.stage_state(fresh, optim.stage_optimizer(plan.stages[meta['stage_index']],
                                                          fresh['params']))
    return meta, checkpoint.restore(mngr, number, like)

  agree = lambda ok: bool(parallel.gather_processes(np.array(ok)).all())
  number, restored, skipped = checkpoint.restore_newest(mngr, restore, agree)
  if skipped:
    if parallel.is_main_process():
      for n, why in skipped.items():
        workdir_lib.move_aside(workdir, os.path.join(workdir_lib.checkpoint_dir(workdir),
                                                     str(n)),
                               f'checkpoint {n} does not restore ({why})',
                               name=f'checkpoint-{n}')
    parallel.sync('damaged checkpoints moved')
    mngr.reload()
  if number is None:
    return 0, 0, None
  meta, state = restored
  stage = plan.stages[meta['stage_index']]
  logging.info('Resuming from checkpoint %d: %s, %d epoch(s) of %d done%s.', number,
               stage.name, meta['epoch'], stage.epochs,
               f' (newer checkpoint(s) {", ".join(map(str, skipped))} did not restore and '
               f'are in {os.path.join(workdir, workdir_lib.DAMAGED_DIR)})' if skipped else '')
  return meta['stage_index'], meta['epoch'], state


def write_split_lists(plan, workdir):
  """Records which images each split held (EVA's split is computed, not official)."""
  if not parallel.is_main_process():
    return
  for split in plan.data.splits:
    workdir_lib.write_lines(workdir_lib.split_list_path(workdir, split),
                            input_pipeline.split_ids(plan.data, split))


def cached_kinds(stage, params):
  """{kind: (prefix layer, weights digest)}: the caches `stage` reads or writes.

  The whole-backbone features are valid while no backbone layer trains; the
  prefix, below every layer any later stage trains, for every stage. The
  digests of the layers that produce them key the cache files. params: host params.
  """
  kinds = {}
  if plan_lib.PREFIX in stage.caches:
    kinds[plan_lib.PREFIX] = (stage.prefix_layer,
                              feature_cache.backbone_digest(params, stage.prefix_layer))
  if plan_lib.FEATURES in stage.caches:
    kinds[plan_lib.FEATURES] = (stage.prefix_layer, feature_cache.backbone_digest(params))
  return kinds


def stage_source(plan, workdir, model, params, host_params, stage, passes=None):
  """The stage's `Source`: a cache of its frozen layers where planned, else images.

  params: replicated, to compute a missing cache; host_params: the same values
  on the host, for the digests that key the cache files. passes: a list that
  gets the splits whose cache a backbone pass computed.
  """
  kinds = cached_kinds(stage, host_params)
  if not kinds:
    return Source(plan)
  cache_dir = plan.feature_cache_dir or os.path.join(workdir, workdir_lib.CACHE_DIR)
  d = plan.data
  arrays = {split: feature_cache.load_or_compute(plan, cache_dir, model, params, split,
                                                 views, kinds, passes)
            for split, views in ((d.train_split, feature_cache.TRAIN_VIEWS),
                                 (d.val_split, feature_cache.EVAL_VIEWS),
                                 (d.test_split, feature_cache.EVAL_VIEWS))}
  layer = stage.prefix_layer if stage.source == plan_lib.PREFIX else None
  return Source(plan, stage.source, {split: a[stage.source] for split, a in arrays.items()},
                layer)


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


def preflight(plan):
  """Everything the run needs that is missing (data, weights), listed at once,
  before anything is built or written."""
  data = datasets.data_problem(plan.data)
  # Without the data the run cannot start: no download then, only the check.
  # A start from a trained workdir reads no backbone weights file.
  weights = (None if plan.init_from else
             model_lib.weights_problem(plan.model.backbone_weights, download=data is None))
  preflight_lib.raise_if_any([data, weights, transfer.source_problem(plan)])


def train_and_evaluate(config, workdir):
  """Runs (or resumes) every stage of `config`, testing after each; returns its Plan.

  The test predictions and metrics land in the workdir (metrics.jsonl,
  predictions/); the results and report are written by whoever runs the
  experiment (aesthetix/results/experiment.py). One training run at a time per
  workdir (a lock held for its life). In a multi-process run
  (`parallel.initialize` first) every process calls this; process 0 alone
  writes the workdir's files, Orbax the checkpoints.
  """
  plan = plan_lib.resolve(config)
  preflight(plan)
  # Built (or found built) before the workdir is touched: data that does not
  # build refuses the run with the workdir as it was.
  datasets.builder(plan.data)
  lock = lock_workdir(workdir)
  try:
    _train_and_evaluate(plan, workdir)
  finally:
    lock.release()
  return plan


def claim_workdir(plan, workdir, write=True):
  """`workdir_lib.claim` for `plan`: its last stage may start again with other
  settings until it has finished."""
  last = plan.last_stage
  return workdir_lib.claim(workdir, plan.config_dict(), last.name, last.epoch_offset,
                           plan.data.test_split, write=write)


def check_history(plan, workdir):
  """Reads the history the run will extend, so that a damaged line stops it
  before it starts (WorkdirError naming the line), not after it trained.
  Process 0 reads; every process stops with it."""
  problem = None
  if parallel.is_main_process():
    try:
      history.read(workdir, plan.stage_names)
    except workdir_lib.WorkdirError as e:
      problem = e
  if not parallel.agree(int(problem is None)):
    raise problem or workdir_lib.WorkdirError(
        f'Process 0 found {history.path(workdir)} damaged; see its message.')


def _train_and_evaluate(plan, workdir):
  main = parallel.is_main_process()
  check_history(plan, workdir)
  if main:
    workdir_lib.repair_jsonl(history.path(workdir))
    workdir_lib.remove_workdir_temporaries(workdir)
  change = claim_workdir(plan, workdir, write=main)
  if change is not None:
    append_metrics(workdir, dict(config_change=change))
  parallel.sync('claim workdir')
  logging.info('Caches: stage-1 features %s, block4 prefix %s (%s).',
               'on' if plan.feature_cache else 'off', 'on' if plan.prefix_cache else 'off',
               ', '.join(f'{k} from the {v}' for k, v in plan.cache_origin.items()))
  with phases.timed(phases.MODEL):
    model = model_lib.build_model(plan.model)
    fresh = steps.initial_state(plan, model, jax.random.PRNGKey(plan.seed))
  with phases.timed(phases.CHECKPOINTS):
    mngr = checkpoint.manager(workdir, max_to_keep=plan.checkpoint_max_to_keep,
                              keep=(plan.stages[0].end,))
    start_stage, start_epoch, state = restore_latest(plan, workdir, mngr, fresh)
  if state is None and plan.init_from:
    append_metrics(workdir, dict(init_from=transfer.summary(plan)))
  state = state or fresh
  with phases.timed(phases.DATASET):
    write_split_lists(plan, workdir)
  logging.info('Training on %d device(s) in %d process(es); %d train examples.',
               jax.device_count(), jax.process_count(),
               input_pipeline.num_examples(plan.data, plan.data.train_split))
  # TensorBoard's event files, written by process 0 alone.
  events = summaries.Writer(workdir_lib.tensorboard_dir(workdir), enabled=main)

  try:
    state = run_stages(plan, workdir, model, mngr, state, start_stage, start_epoch, events)
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
  finally:
    events.close()
  with phases.timed(phases.CHECKPOINTS):
    checkpoint.finish(mngr)
    # The newest checkpoint's params as a plain file: scoring starts without Orbax.
    if main:
      params_file.refresh(workdir, state['params'])
    parallel.sync('params file')


def run_stages(plan, workdir, model, mngr, state, start_stage, start_epoch, events=None):
  """Stages `start_stage`.. from host `state`, resuming at `start_epoch` of the
  first; `events`: the run's TensorBoard writer. Returns the final host state
  (that of the newest checkpoint)."""
  for stage in plan.stages[start_stage:]:
    first_epoch = start_epoch if stage.index == start_stage else 0
    # Process 0 decides: a file another process cannot see yet must not split the run.
    test_done = parallel.agree(int(predictions_saved(
        workdir, stage.name, plan.data.test_split))) == 1
    # The last stage's model also keeps its score distribution on its training photos.
    quantiles_done = not stage.is_last or parallel.agree(int(quantiles_saved(workdir))) == 1
    if first_epoch == stage.epochs and test_done and quantiles_done:
      continue
    start = time.time()
    optimizer = optim.stage_optimizer(stage, state['params'])
    if first_epoch == 0:
      state = steps.stage_state(state, optimizer)
    replicated = parallel.replicate(state)
    passes = []
    with phases.timed(phases.CACHE_PASS):
      source = stage_source(plan, workdir, model, replicated['params'], state['params'],
                            stage, passes)
    cache_seconds = time.time() - start
    if first_epoch < stage.epochs:
      replicated = run_stage(plan, workdir, model, optimizer, mngr, replicated, source,
                             stage, first_epoch, events)
    if not test_done:
      with phases.timed(phases.TEST):
        test_stage(plan, workdir, model, replicated['params'], source, stage, events)
    if not quantiles_done:
      # A prediction pass like the test's (the training split's): timed with it.
      with phases.timed(phases.TEST):
        write_score_quantiles(plan, workdir, model, replicated['params'], source, stage)
    state = parallel.unreplicate(replicated)
    append_metrics(workdir, dict(stage=stage.name, timing=dict(
        seconds=time.time() - start, feature_cache_seconds=cache_seconds,
        first_epoch=first_epoch, epochs=stage.epochs,
        source=source.kind, cache_passes=passes)))
  return state


def run_stage(plan, workdir, model, optimizer, mngr, state, source, stage, first_epoch,
              events=None):
  """Epochs `first_epoch`.. of one stage on replicated `state`, validating and
  checkpointing after each; returns the replicated state. events: a
  `summaries.Writer` for each epoch's metrics (None: none written)."""
  # Labels depend on the tree's paths only: no need to fetch the values.
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  train_step = source.train_step(model, optimizer, labels)
  predict_step = source.predict_step(model)
  overall = plan.output_names[0]
  profile = (summaries.ProfileWindow(workdir_lib.tensorboard_dir(workdir), plan.profile_steps)
             if plan.profile_steps and parallel.is_main_process() else None)
  for epoch in range(first_epoch, stage.epochs):
    global_epoch = stage.epoch_offset + epoch
    with phases.timed(phases.TRAIN_STEPS):
      state, loss, images_per_s, seconds, input_s = train_epoch(
          plan, train_step, state, source, stage, epoch, events,
          profile if epoch == first_epoch else None)
    with phases.timed(phases.VALIDATION):
      val, predictions = evaluate_split(plan, predict_step, state['params'],
                                        plan.data.val_split, source)
    _check_not_collapsed(plan, predictions, stage, epoch, global_epoch)
    with phases.timed(phases.CHECKPOINTS):
      checkpoint.save(mngr, global_epoch + 1, parallel.unreplicate(state),
                      dict(stage_index=stage.index, stage=stage.name, epoch=epoch + 1),
                      agree=every_process)
    logging.info('%s epoch %d/%d: loss %.5f, val rho(%s) %.4f, %.1f images/s',
                 stage.name, epoch + 1, stage.epochs, loss, overall,
                 val[overall]['spearman'], images_per_s)
    record = dict(stage=stage.name, epoch=epoch + 1, train_loss=loss,
                  images_per_second=images_per_s, epoch_seconds=seconds,
                  input_wait_seconds=input_s, validation=val)
    append_metrics(workdir, record)
    if events is not None:
      events.scalars(step_after(plan, stage, epoch + 1), epoch_scalars(record))
      events.flush()
  return state


def write_score_quantiles(plan, workdir, model, params, source, stage):
  """Predicts the training split with the final params (no flips, no dropout) and
  keeps the predictions and their quantiles per output (the dataset's scale):
  what serving reads a score's percentile against."""
  split = plan.data.train_split
  _, predictions = evaluate_split(plan, source.predict_step(model), params, split, source)
  save_predictions(workdir, stage.name, split, predictions)
  if parallel.is_main_process():
    workdir_lib.write_json(workdir_lib.score_quantiles_path(workdir), quantiles.record(
        plan.output_names, predictions['pred'], split, stage.name))
  parallel.sync('score quantiles')


def test_stage(plan, workdir, model, params, source, stage, events=None):
  """Evaluates the test split at the end of a stage (Table 5/10's columns)."""
  test, predictions = evaluate_split(plan, source.predict_step(model), params,
                                     plan.data.test_split, source)
  save_predictions(workdir, stage.name, plan.data.test_split, predictions)
  append_metrics(workdir, dict(stage=stage.name, test=test))
  if events is not None:
    events.scalars(step_after(plan, stage, stage.epochs),
                   {f'test/rho/{name}': m['spearman'] for name, m in test.items()})
  parallel.sync(f'{stage.name} test predictions')
  overall = plan.output_names[0]
  logging.info('%s test rho(%s) %.4f', stage.name, overall, test[overall]['spearman'])
