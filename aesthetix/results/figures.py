"""The paper's figures for a run, from its workdir: PNGs beside report.md.

Scatter of ground truth vs prediction (Fig. 5/10), the most and least
successful predictions (Fig. 6/7, 11/12), the rank correlations between
outputs, ground truth and predictions (Fig. 9/14), and the loss and
validation curves of both stages. Everything comes from the run's saved test
predictions and metrics.jsonl; the image grids also read the test split.
Drawn with matplotlib's object API (Agg canvas), so no display is needed.
"""

import math
import os

from absl import logging
import matplotlib
from matplotlib.figure import Figure
import numpy as np

from aesthetix.data import input_pipeline
from aesthetix.results import report
from aesthetix.runtime import errors
from aesthetix.runtime import parallel
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import metrics

SCATTER_OVERALL = workdir_lib.SCATTER_OVERALL
SCATTER_OUTPUTS = workdir_lib.SCATTER_OUTPUTS
BEST = workdir_lib.BEST
WORST = workdir_lib.WORST
RANK_CORRELATIONS = workdir_lib.RANK_CORRELATIONS
TRAINING_CURVES = workdir_lib.TRAINING_CURVES

GRID_IMAGES = 8    # Images in each of the best / worst grids.
GRID_COLUMNS = 4
PANEL_COLUMNS = 4  # Scatter panels per row.
DPI = 120
POINT_SIZE = 10
# Scatter axes reach this share of the range beyond it, so that points at the
# limits (sigmoid outputs at 0 or 1) are drawn whole, not cut in half.
SCATTER_PAD = 0.04
# The heatmaps are drawn at the width of one column of a two-column paper
# (3.5 in), stacked, with cell values in a size that stays legible there, and
# printed at print resolution.
COLUMN_WIDTH_IN = 3.5
HEATMAP_CELL_FONT_PT = 5
HEATMAP_LABEL_FONT_PT = 6.5
HEATMAP_DPI = 300
HEATMAP_CMAP = 'RdBu_r'
# Relative luminance above which black text has more contrast than white (WCAG).
LIGHT_CELL = 0.179


def final_predictions(workdir, stages, split):
  """(stage, {'ids', 'true', 'pred'}) of the last of `stages` with saved
  predictions, or (None, None)."""
  for stage in reversed(stages):
    predictions = workdir_lib.load_predictions(workdir, stage.name, split)
    if predictions is not None:
      return stage, predictions
  return None, None


def _save(fig, path):
  with workdir_lib.atomic_file(path, 'wb') as f:
    fig.savefig(f, dpi=DPI, format='png')
  return path


def _scatter_panel(ax, true, pred, name, value_range):
  lo, hi = value_range
  pad = SCATTER_PAD * (hi - lo)
  ax.scatter(true, pred, s=POINT_SIZE, alpha=0.6, edgecolors='none')
  ax.plot([lo, hi], [lo, hi], color='gray', linewidth=1, linestyle='--', label='y = x')
  ax.set_xlim(lo - pad, hi + pad)
  ax.set_ylim(lo - pad, hi + pad)
  ax.set_aspect('equal')
  rho = metrics.output_metrics([name], true[:, None], pred[:, None])[name]['spearman']
  ax.set_title(f'{name} (rho {rho:.3f})' if np.isfinite(rho) else name)
  ax.set_xlabel('ground truth')
  ax.set_ylabel('prediction')


def scatter_overall(path, spec, name, true, pred, title):
  """Fig. 5/10: ground truth [N] vs prediction [N] of the overall score; spec:
  the dataset's `targets.DatasetSpec` (the axes span its range)."""
  fig = Figure(figsize=(5, 5), layout='constrained')
  ax = fig.subplots()
  _scatter_panel(ax, true, pred, name, spec.ranges[name])
  ax.legend(loc='upper left')
  fig.suptitle(title)
  return _save(fig, path)


def scatter_outputs(path, spec, names, true, pred, title):
  """One scatter panel per output; true, pred [N, n]."""
  rows = math.ceil(len(names) / PANEL_COLUMNS)
  cols = min(len(names), PANEL_COLUMNS)
  fig = Figure(figsize=(3.2 * cols, 3.2 * rows), layout='constrained')
  axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
  for k, name in enumerate(names):
    _scatter_panel(axes[k], true[:, k], pred[:, k], name, spec.ranges[name])
  for ax in axes[len(names):]:
    ax.set_axis_off()
  fig.suptitle(title)
  return _save(fig, path)


def best_and_worst(true, pred, count=GRID_IMAGES):
  """Indices of the `count` smallest and largest absolute errors [N] (best first / worst first)."""
  order = np.argsort(np.abs(pred - true), kind='stable')
  return order[:count], order[::-1][:count]


def image_grid(path, images, true, pred, name, title):
  """Images uint8 [n, S, S, 3] with their true and predicted `name` under each."""
  n = len(images)
  cols = min(n, GRID_COLUMNS)
  rows = math.ceil(n / cols)
  fig = Figure(figsize=(2.4 * cols, 2.7 * rows), layout='constrained')
  axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
  for ax, image, t, p in zip(axes, images, true, pred):
    ax.imshow(image)
    ax.set_xlabel(f'true {t:.3f}\npredicted {p:.3f}')
    ax.set_xticks([])
    ax.set_yticks([])
  for ax in axes[n:]:
    ax.set_axis_off()
  fig.suptitle(f'{title} ({name})')
  return _save(fig, path)


def text_color(rgba):
  """'black' on a light cell, 'white' on a dark one (relative luminance of sRGB)."""
  linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
  luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
  return 'black' if luminance > LIGHT_CELL else 'white'


def cell_label(value):
  """A correlation in two decimals without the leading zero (-.61), n/a if undefined."""
  if value is None or not np.isfinite(value):
    return 'n/a'
  text = f'{value:.2f}'
  return {'1.00': '1', '-1.00': '-1'}.get(text, text.replace('0.', '.', 1))


def rank_correlations(path, names, truth, prediction):
  """Fig. 9/14: Spearman rho between outputs [n, n], ground truth above predictions.

  Drawn one paper column wide; each cell's value is written in black or white
  by the cell's brightness; undefined correlations (a constant output) are
  grey and read n/a.
  """
  cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad='0.85')
  n = len(names)
  fig = Figure(figsize=(COLUMN_WIDTH_IN, 2 * COLUMN_WIDTH_IN + 0.5), layout='constrained')
  axes = fig.subplots(2, 1)
  for ax, matrix, title in zip(axes, (truth, prediction), ('Ground truth', 'Predictions')):
    matrix = np.asarray(matrix, float)
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=-1, vmax=1, cmap=cmap)
    ax.set_xticks(range(n), names, rotation=90, fontsize=HEATMAP_LABEL_FONT_PT)
    ax.set_yticks(range(n), names, fontsize=HEATMAP_LABEL_FONT_PT)
    ax.set_title(title, fontsize=HEATMAP_LABEL_FONT_PT + 1)
    for i in range(n):
      for j in range(n):
        value = matrix[i, j]
        color = text_color(cmap(image.norm(value))) if np.isfinite(value) else 'black'
        ax.text(j, i, cell_label(value), ha='center', va='center', color=color,
                fontsize=HEATMAP_CELL_FONT_PT)
  bar = fig.colorbar(image, ax=axes, location='bottom', shrink=0.7, aspect=40)
  bar.set_label("Spearman's rho", fontsize=HEATMAP_LABEL_FONT_PT)
  bar.ax.tick_params(labelsize=HEATMAP_LABEL_FONT_PT)
  with workdir_lib.atomic_file(path, 'wb') as f:
    fig.savefig(f, dpi=HEATMAP_DPI, format='png')
  return path


def training_curves(path, history, overall, stages):
  """Training loss and validation rho of the overall score per epoch, every stage."""
  fig = Figure(figsize=(10, 4), layout='constrained')
  loss_ax, rho_ax = fig.subplots(1, 2)
  epoch = 0
  for stage in stages:
    records = [h for h in history if h['stage'] == stage.name]
    if not records:
      continue
    x = [epoch + h['epoch'] for h in records]
    label = f'{stage.title} ({stage.name})'
    loss_ax.plot(x, [h['train_loss'] for h in records], marker='o', label=label)
    rho = [h['validation'][overall]['spearman'] for h in records]
    rho_ax.plot(x, [np.nan if v is None else v for v in rho],  # null: undefined (JSON).
                marker='o', label=label)
    epoch = x[-1]
  loss_ax.set_xlabel('epoch')
  loss_ax.set_ylabel('training loss (MSE, [0, 1] targets)')
  rho_ax.set_xlabel('epoch')
  rho_ax.set_ylabel(f"validation Spearman's rho ({overall})")
  for ax in (loss_ax, rho_ax):
    ax.legend()
    ax.grid(alpha=0.3)
  fig.suptitle('Training history')
  return _save(fig, path)


def test_images(plan, split, ids):
  """{id: uint8 [S, S, 3]} of the examples `ids` of `split`, as the model saw them.

  None when the dataset cannot be read here (e.g. a workdir copied without it).
  """
  wanted = set(ids)
  found = {}
  try:
    batch_size = parallel.host_batch_size(plan.eval_batch_size)
    for batch in input_pipeline.eval_batches(plan.data, split, batch_size=batch_size):
      for image, example_id, keep in zip(batch['image'], batch['id'], batch['mask']):
        if keep and example_id in wanted:
          found[example_id] = image
  except (errors.UserError, FileNotFoundError, ValueError, RuntimeError, OSError) as e:
    logging.warning('No image grids: cannot read the %s split of %s (%s).', split,
                    plan.data.name, e)
    return None
  return found


def write_all(plan, workdir):
  """Writes every figure the workdir has data for; returns the PNG paths."""
  split = plan.data.test_split
  names = list(plan.output_names)
  spec = plan.data.targets
  paths = []
  stage, predictions = final_predictions(workdir, plan.stages, split)
  if predictions is not None:
    true, pred = predictions['true'], predictions['pred']
    where = f'{plan.data.name}, {split} split, after {stage.title.lower()} ({stage.name})'
    paths.append(scatter_overall(os.path.join(workdir, SCATTER_OVERALL), spec,
                                 names[0], true[:, 0], pred[:, 0], where))
    if len(names) > 1:
      paths.append(scatter_outputs(os.path.join(workdir, SCATTER_OUTPUTS), spec,
                                   names, true, pred, where))
      paths.append(rank_correlations(
          os.path.join(workdir, RANK_CORRELATIONS), names,
          metrics.rank_correlation_matrix(true), metrics.rank_correlation_matrix(pred)))
    best, worst = best_and_worst(true[:, 0], pred[:, 0])
    ids = [str(i) for i in predictions['ids']]
    images = test_images(plan, split, [ids[i] for i in np.concatenate([best, worst])])
    if images is not None:
      for file_name, chosen, title in ((BEST, best, 'Most successful predictions'),
                                       (WORST, worst, 'Least successful predictions')):
        chosen = [i for i in chosen if ids[i] in images]
        if not chosen:
          continue
        paths.append(image_grid(os.path.join(workdir, file_name),
                                np.stack([images[ids[i]] for i in chosen]),
                                true[chosen, 0], pred[chosen, 0], names[0], title))
  history, _ = report.read_history(workdir, plan.stage_names)
  if history:
    paths.append(training_curves(os.path.join(workdir, TRAINING_CURVES), history, names[0],
                                 plan.stages))
  return paths
