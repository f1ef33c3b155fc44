"""A run's results: results.json and a Markdown report in the paper's table layout.

Everything is computed from what the run left in its workdir (metrics.jsonl and
the saved test predictions of each stage), so a report can be rebuilt at any
time; all numbers are in the dataset's own scale.
"""

import os

import numpy as np

from aesthetix import checkpoint
from aesthetix import metrics
from aesthetix import schedule
from aesthetix import targets
from aesthetix import workdir as workdir_lib

FIGURES_HEADING = '## Figures'



def read_history(workdir):
  """Validation records per (stage, epoch) and test records per stage, last wins.

  A config change that started a stage again (see checkpoint.claim_workdir)
  drops that stage's earlier records.
  """
  validation, test = {}, {}
  for record in workdir_lib.read_jsonl(os.path.join(workdir, workdir_lib.METRICS_FILE)):
    if 'config_change' in record:
      restarted = record['config_change']['restarts']
      validation = {k: v for k, v in validation.items() if k[0] != restarted}
      test.pop(restarted, None)
    elif 'validation' in record:
      validation[(record['stage'], record['epoch'])] = record
    elif 'test' in record:
      test[record['stage']] = record['test']
  history = [validation[k] for k in sorted(validation, key=lambda k: (
      schedule.STAGES.index(k[0]), k[1]))]
  return history, test


def build_results(config, workdir, split=None):
  """The results dict of a finished run (see `write`)."""
  split = split or config.dataset.test_split
  names = list(targets.model_output_names(config))
  history, _ = read_history(workdir)
  stages = {}
  for stage in schedule.STAGES:
    predictions = workdir_lib.load_predictions(workdir, stage, split)
    if predictions is not None:
      stages[stage] = metrics.output_metrics(names, predictions['true'], predictions['pred'])
  final = workdir_lib.load_predictions(workdir, schedule.STAGES[-1], split)
  results = dict(dataset=config.dataset.name, outputs=names, split=split,
                 stages=stages, history=history,
                 paper=dict(overall_rho=config.paper.overall_rho or None),
                 config_changes=checkpoint.stored_changes(workdir),
                 figures=[name for name in workdir_lib.FIGURES
                          if os.path.exists(os.path.join(workdir, name))])
  if final is not None:
    lo, hi = targets.spec(config.dataset.name).ranges[names[0]]
    rows, summary = metrics.score_intervals(final['true'][:, 0], final['pred'][:, 0], lo, hi)
    results.update(
        score_intervals=rows, prediction_range=summary,
        rank_correlation_truth=metrics.rank_correlation_matrix(final['true']).tolist(),
        rank_correlation_prediction=metrics.rank_correlation_matrix(final['pred']).tolist())
  return results


def write(config, workdir):
  """Writes results.json and report.md to the workdir; returns the results."""
  results = build_results(config, workdir)
  workdir_lib.write_json(os.path.join(workdir, workdir_lib.RESULTS_FILE), results, indent=2,
                         allow_nan=True)
  workdir_lib.write_text(os.path.join(workdir, workdir_lib.REPORT_FILE), markdown(results))
  return results


def fmt_metric(x, digits=4):
  """x with `digits` decimals; n/a for None or nan."""
  return 'n/a' if x is None or (isinstance(x, float) and np.isnan(x)) else f'{x:.{digits}f}'


def test_rho_table(results):
  """Spearman's rho per output on the test split, after each stage."""
  stages = [s for s in schedule.STAGE_TITLES if s in results['stages']]
  rows = ['| Output | ' + ' | '.join(schedule.STAGE_TITLES[s] for s in stages) + ' |',
          '|---|' + '---:|' * len(stages)]
  for name in results['outputs']:
    rows.append(f'| {name} | ' + ' | '.join(
        fmt_metric(results['stages'][s][name]['spearman']) for s in stages) + ' |')
  return '\n'.join(rows)


def _overall_table(results):
  name = results['outputs'][0]
  final = results['stages'].get('stage2') or results['stages'].get('stage1')
  if final is None:
    return 'No test predictions yet.'
  paper = results['paper']['overall_rho']
  rows = ['| | Spearman rho | p-value | Pearson r | MSE | Paper (rho) |',
          '|---|---:|---:|---:|---:|---:|',
          f"| This run, {name} | {fmt_metric(final[name]['spearman'])} | "
          f"{final[name]['spearman_p']:.2e} | {fmt_metric(final[name]['pearson'])} | "
          f"{fmt_metric(final[name]['mse'])} | {fmt_metric(paper)} |"]
  return '\n'.join(rows)


def metrics_table(stage_metrics):
  """Spearman (with p-value), Pearson and MSE per output."""
  rows = ['| Output | Spearman rho | p-value | Pearson r | MSE |', '|---|---:|---:|---:|---:|']
  for name, m in stage_metrics.items():
    rows.append(f"| {name} | {fmt_metric(m['spearman'])} | {m['spearman_p']:.2e} | "
                f"{fmt_metric(m['pearson'])} | {fmt_metric(m['mse'])} |")
  return '\n'.join(rows)


def _intervals_table(results):
  rows = ['| Ground-truth interval | Test images | Inside prediction range |',
          '|---|---:|---:|']
  for r in results['score_intervals']:
    rows.append(f"| [{r['lo']:.2f}, {r['hi']:.2f}] | {r['count']} | "
                f"{r['inside_prediction_range']} |")
  s = results['prediction_range']
  rows.append(f"\nPredictions range over [{s['prediction_min']:.3f}, "
              f"{s['prediction_max']:.3f}]; {100 * s['share_inside_prediction_range']:.1f}% "
              f"of the {s['n']} test images have a true score inside that range.")
  return '\n'.join(rows)


def _matrix_table(names, matrix):
  rows = ['| | ' + ' | '.join(names) + ' |', '|---|' + '---:|' * len(names)]
  for name, row in zip(names, matrix):
    rows.append(f'| {name} | ' + ' | '.join(fmt_metric(x, 2) for x in row) + ' |')
  return '\n'.join(rows)


def _history_table(history, overall):
  rows = ['| Stage | Epoch | Train loss | Val rho (' + overall + ') | Images/s |',
          '|---|---:|---:|---:|---:|']
  for h in history:
    rows.append(f"| {h['stage']} | {h['epoch']} | {h['train_loss']:.5f} | "
                f"{fmt_metric(h['validation'][overall]['spearman'])} | "
                f"{h['images_per_second']:.1f} |")
  return '\n'.join(rows)


def _changes_list(changes):
  rows = []
  for c in changes:
    fields = ', '.join(f'`{k}` {old} -> {new}' for k, (old, new) in c['fields'].items())
    moved = (f"; the checkpoints {', '.join(map(str, c['superseded']))} of the earlier "
             f"settings are kept in `{c['moved_to']}`" if c.get('moved_to') else '')
    rows.append(f"- {c['time']}: {fields}. {c['restarts']} started again from checkpoint "
                f"{c['from_checkpoint']} (the end of stage 1){moved}.")
  return '\n'.join(rows)


def figures_section(names):
  """Links to the workdir's figures (paths relative to report.md)."""
  lines = []
  for name in names:
    title = os.path.splitext(name)[0].replace('_', ' ').capitalize()
    lines += [f'### {title}', '', f'![{title}]({name})', '']
  return '\n'.join(lines).rstrip()


def markdown(results):
  """The report: the paper's tables filled with this run's numbers."""
  names = results['outputs']
  parts = [f"# Results on {results['dataset']} ({results['split']} split)",
           '## Overall aesthetic score (Table 1 / Table 6 style)', _overall_table(results)]
  if results['stages']:
    parts += ['## Spearman rho per output after each stage (Table 5 / Table 10 style)',
              test_rho_table(results)]
    for stage, m in results['stages'].items():
      parts += [f'### {schedule.STAGE_TITLES[stage]} ({stage}): all metrics', metrics_table(m)]
  if 'score_intervals' in results:
    parts += ['## Ground-truth intervals of the overall score (Table 3 / Table 9 style)',
              _intervals_table(results)]
    if len(names) > 1:
      parts += ['## Rank correlations between outputs (Fig. 9 / Fig. 14 data)',
                '### Ground truth', _matrix_table(names, results['rank_correlation_truth']),
                '### Predictions', _matrix_table(names, results['rank_correlation_prediction'])]
  if results['history']:
    parts += ['## Training history', _history_table(results['history'], names[0])]
  if results.get('config_changes'):
    parts += ['## Config changes', _changes_list(results['config_changes'])]
  if results.get('figures'):
    parts += [FIGURES_HEADING, figures_section(results['figures'])]
  parts.append('The paper reports only the overall rho transcribed in '
               'configs/paper_numbers.py; its per-attribute tables are not transcribed.')
  return '\n\n'.join(parts) + '\n'
