"""A run's results: results.json and a Markdown report in the paper's table layout.

Everything is computed from what the run left in its workdir (metrics.jsonl and
the saved test predictions of each stage), so a report can be rebuilt at any
time; all numbers are in the dataset's own scale.
"""

import os

import numpy as np

from aesthetix.results import paper
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import history as history_lib
from aesthetix.training import metrics

FIGURES_HEADING = '## Figures'
# metrics.jsonl's record of a run's phase table (aesthetix/results/experiment.py).
RUN_TIMING = history_lib.RUN_TIMING



def read_history(workdir, stage_names):
  """Validation records per (stage, epoch), in the order of `stage_names`, and
  test records per stage, last wins.

  A config change that started a stage again (see workdir.claim) drops that
  stage's earlier records. A line that is not a record of the run's stages
  raises WorkdirError naming it (training/history.py).
  """
  validation, test = {}, {}
  for record in history_lib.read(workdir, stage_names):
    if 'config_change' in record:
      restarted = record['config_change']['restarts']
      validation = {k: v for k, v in validation.items() if k[0] != restarted}
      test.pop(restarted, None)
    elif 'validation' in record:
      validation[(record['stage'], record['epoch'])] = record
    elif 'test' in record:
      test[record['stage']] = record['test']
  history = [validation[k] for k in sorted(validation, key=lambda k: (
      list(stage_names).index(k[0]), k[1]))]
  return history, test


def read_timing(workdir):
  """The phase table of the workdir's latest run (metrics.jsonl), or None."""
  timing = None
  for record in workdir_lib.read_jsonl(workdir_lib.metrics_path(workdir)):
    timing = record.get(RUN_TIMING, timing)
  return timing


def write_timing(workdir, timing):
  """Puts a run's phase table into the workdir's results.json (written first by `write`)."""
  path = workdir_lib.results_path(workdir)
  results = workdir_lib.read_json(path, 'results file')
  results['timing'] = timing
  workdir_lib.write_json(path, results, indent=2)


def build_results(plan, workdir, split=None):
  """The results dict of a finished run (see `write`)."""
  split = split or plan.data.test_split
  names = list(plan.output_names)
  history, _ = read_history(workdir, plan.stage_names)
  stages = {}
  for stage in plan.stage_names:
    predictions = workdir_lib.load_predictions(workdir, stage, split)
    if predictions is not None:
      stages[stage] = metrics.output_metrics(names, predictions['true'], predictions['pred'])
  final = workdir_lib.load_predictions(workdir, plan.last_stage.name, split)
  dataset, variant = plan.data.name, paper.variant(plan.model)
  table = paper.intervals(dataset)
  results = dict(dataset=dataset, outputs=names, split=split, variant=variant,
                 stage_titles={s.name: s.title for s in plan.stages},
                 stages=stages, history=history,
                 paper=dict(overall=paper.overall(dataset, variant),
                            per_output=paper.per_output(dataset, variant),
                            previous_methods=paper.previous_methods(dataset),
                            human_consistency=paper.human_consistency(dataset),
                            intervals=table, interval_text=paper.interval_text(dataset),
                            figure_correlations=paper.figure_correlations(dataset)),
                 choices=paper.choices(plan),
                 evaluations=read_evaluations(workdir, dataset),
                 config_changes=workdir_lib.stored_changes(workdir),
                 figures=[name for name in workdir_lib.FIGURES
                          if os.path.exists(os.path.join(workdir, name))],
                 timing=read_timing(workdir))
  if final is not None:
    if table:  # The paper's own intervals, as printed.
      edges = [row[1] for row in table] + [table[-1][2]]
    else:
      edges = metrics.equal_edges(*plan.data.targets.ranges[names[0]])
    rows, summary = metrics.score_intervals(final['true'][:, 0], final['pred'][:, 0], edges)
    results.update(
        score_intervals=rows, prediction_range=summary,
        rank_correlation_truth=metrics.rank_correlation_matrix(final['true']).tolist(),
        rank_correlation_prediction=metrics.rank_correlation_matrix(final['pred']).tolist())
    constant = {kind: metrics.constant_columns(names, final[key])
                for kind, key in (('truth', 'true'), ('prediction', 'pred'))}
    if any(constant.values()):  # Their rows and columns are null in results.json.
      results['rank_correlation_undefined'] = dict(
          constant_outputs=constant, why='an output whose values are all the same has no '
          'rank correlation')
  return results


def read_evaluations(workdir, dataset):
  """The cross-dataset tests (`--mode=evaluate --eval_dataset=...`) the workdir holds:
  {tested on: overall rho}, with the paper's Table 11 number beside it."""
  out = {}
  for path in workdir_lib.evaluation_paths(workdir):
    record = workdir_lib.read_json(path, 'evaluation')
    tested = record['evaluated_on']
    if tested != dataset:
      overall = next(iter(record['metrics'].values()))
      out[tested] = dict(rho=overall['spearman'], n=overall['n'],
                         paper=paper.cross_dataset(dataset, tested))
  return out


def write(plan, workdir):
  """Writes results.json and report.md to the workdir; returns the results."""
  results = build_results(plan, workdir)
  workdir_lib.write_json(workdir_lib.results_path(workdir), results, indent=2)
  workdir_lib.write_text(workdir_lib.report_path(workdir), markdown(results))
  return results


def fmt_metric(x, digits=4):
  """x with `digits` decimals; n/a for None (null in a JSON file) or nan."""
  return 'n/a' if x is None or (isinstance(x, float) and np.isnan(x)) else f'{x:.{digits}f}'


def fmt_p(p):
  """A p-value in scientific notation; n/a for None or nan."""
  return 'n/a' if p is None or (isinstance(p, float) and np.isnan(p)) else f'{p:.2e}'


def test_rho_table(results):
  """Spearman's rho per output on the test split after each stage, the paper's
  (Table 5 / 10) beside where it has them."""
  titles = results['stage_titles']
  stages = [s for s in titles if s in results['stages']]
  theirs = (results.get('paper') or {}).get('per_output') or {}
  header, rule = ['Output'], ['---']
  for s in stages:
    header.append(titles[s])
    rule.append('---:')
    if theirs:
      header.append(f'{titles[s]}, paper')
      rule.append('---:')
  rows = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(rule) + '|']
  for name in results['outputs']:
    cells = [name]
    for s in stages:
      cells.append(fmt_metric(results['stages'][s][name]['spearman']))
      if theirs:
        pair = theirs.get(name)
        cells.append(fmt_metric(pair[list(titles).index(s)], 3) if pair else '')
    rows.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(rows)


def _overall_table(results):
  name = results['outputs'][0]
  final = next((results['stages'][s] for s in reversed(results['stage_titles'])
                if s in results['stages']), None)
  if final is None:
    return 'No test predictions yet.'
  theirs = results['paper']['overall']
  rows = ['| | Spearman rho | p-value | Pearson r | MSE |', '|---|---:|---:|---:|---:|',
          f"| This run ({results['variant']}), {name} | {fmt_metric(final[name]['spearman'])} | "
          f"{fmt_p(final[name]['spearman_p'])} | {fmt_metric(final[name]['pearson'])} | "
          f"{fmt_metric(final[name]['mse'])} |"]
  if theirs and theirs[1] is not None:
    rows.append(f"| The paper ({results['variant']}) | {fmt_metric(theirs[1])} | | | |")
  for method, rho in results['paper']['previous_methods']:
    if method != 'this paper':
      rows.append(f'| Table 1: {method} | {fmt_metric(rho)} | | | |')
  for per_rater, raters, rho in results['paper']['human_consistency']:
    if raters is not None:
      rows.append(f'| Table 4: human consistency, raters with {per_rater} images ({raters}) '
                  f'| {fmt_metric(rho)} | | | |')
  if not theirs:
    rows.append(f"\nThe paper reports no {results['variant']} model on {results['dataset']}.")
  return '\n'.join(rows)


def metrics_table(stage_metrics):
  """Spearman (with p-value), Pearson and MSE per output."""
  rows = ['| Output | Spearman rho | p-value | Pearson r | MSE |', '|---|---:|---:|---:|---:|']
  for name, m in stage_metrics.items():
    rows.append(f"| {name} | {fmt_metric(m['spearman'])} | {fmt_p(m['spearman_p'])} | "
                f"{fmt_metric(m['pearson'])} | {fmt_metric(m['mse'])} |")
  return '\n'.join(rows)


def _intervals_table(results):
  table = results['paper']['intervals']
  if table:
    rows = ['| Ground-truth interval | Test images | Share | Paper: images | Paper: share '
            '| Inside prediction range |', '|---|---:|---:|---:|---:|---:|']
  else:
    rows = ['| Ground-truth interval | Test images | Share | Inside prediction range |',
            '|---|---:|---:|---:|']
  s = results['prediction_range']
  for i, r in enumerate(results['score_intervals']):
    share = f"{r['count'] / max(s['n'], 1):.3f}"
    if table:
      printed, _, _, count, paper_share = table[i]
      rows.append(f"| {printed} | {r['count']} | {share} | {count} | {paper_share:.3f} | "
                  f"{r['inside_prediction_range']} |")
    else:
      rows.append(f"| {r['lo']:.2f}-{r['hi']:.2f} | {r['count']} | {share} | "
                  f"{r['inside_prediction_range']} |")
  rows.append(f"\nThis run's predictions range over [{s['prediction_min']:.3f}, "
              f"{s['prediction_max']:.3f}]: {s['below_prediction_range']} test images lie below "
              f"it, {s['above_prediction_range']} above, "
              f"{100 * s['share_inside_prediction_range']:.1f}% of the {s['n']} inside.")
  text = results['paper']['interval_text']
  if text:
    rows.append(f"The paper's predictions range over {text['prediction_range'][0]:.2f}-"
                f"{text['prediction_range'][1]:.2f} ({text['below_prediction_range']} images "
                f"below, {text['share_inside']} inside); its test truth over "
                f"{text['truth_range'][0]:.2f}-{text['truth_range'][1]:.2f}.")
  if s['outside_intervals']:
    rows.append(f"{s['outside_intervals']} true scores lie outside the paper's intervals.")
  return '\n'.join(rows)


def _figure_correlations_table(results):
  """Correlations with the overall score that the paper's text quotes (Fig. 9/14)."""
  quoted = results['paper']['figure_correlations']
  names = results['outputs']
  if not quoted or 'rank_correlation_truth' not in results:
    return None
  rows = ['| Output | Truth, this split | Truth, paper | Predictions, this run | '
          'Predictions, paper |', '|---|---:|---:|---:|---:|']
  for name in sorted(set(quoted['truth']) | set(quoted['prediction']), key=names.index):
    i = names.index(name)
    rows.append(f"| {name} | {fmt_metric(results['rank_correlation_truth'][0][i], 2)} | "
                f"{fmt_metric(quoted['truth'].get(name), 2)} | "
                f"{fmt_metric(results['rank_correlation_prediction'][0][i], 2)} | "
                f"{fmt_metric(quoted['prediction'].get(name), 2)} |")
  rows.append('\nThe paper\'s truth column is of the whole dataset, this one of the test '
              'split.')
  return '\n'.join(rows)


def _cross_table(results):
  rows = ['| Tested on | Overall rho | Images | Paper (Table 11) |', '|---|---:|---:|---:|']
  for tested, e in results['evaluations'].items():
    rows.append(f"| {tested} | {fmt_metric(e['rho'])} | {e['n']} | {fmt_metric(e['paper'], 3)} |")
  return '\n'.join(rows)


def _choices_table(results):
  rows = ['| Left open by the paper | This run |', '|---|---|']
  rows += [f'| {text} | {choice} |' for _, text, choice in results['choices']]
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
           '## Overall aesthetic score (Tables 1, 4, 6 and 8)', _overall_table(results)]
  if results['stages']:
    parts += ['## Spearman rho per output after each stage (Table 5 / Table 10)',
              test_rho_table(results)]
    for stage, m in results['stages'].items():
      parts += [f"### {results['stage_titles'][stage]} ({stage}): all metrics",
                metrics_table(m)]
  if 'score_intervals' in results:
    parts += ['## Ground-truth intervals of the overall score (Table 3 / Table 9)',
              _intervals_table(results)]
    if len(names) > 1:
      parts += ['## Rank correlations between outputs (Fig. 9 / Fig. 14)',
                '### Ground truth', _matrix_table(names, results['rank_correlation_truth']),
                '### Predictions', _matrix_table(names, results['rank_correlation_prediction'])]
      quoted = _figure_correlations_table(results)
      if quoted:
        parts += ['### With the overall score, beside the numbers the paper quotes', quoted]
  if results.get('evaluations'):
    parts += ['## Cross-dataset test of the overall score (Table 11)', _cross_table(results)]
  if results['history']:
    parts += ['## Training history', _history_table(results['history'], names[0])]
  if results.get('config_changes'):
    parts += ['## Config changes', _changes_list(results['config_changes'])]
  parts += ['## What the paper leaves open (section 4.2)', _choices_table(results)]
  if results.get('figures'):
    parts += [FIGURES_HEADING, figures_section(results['figures'])]
  if results['dataset'] not in paper.DATASETS:
    parts.append(f"The paper reports AADB and EVA; {results['dataset']} has no paper column.")
  return '\n\n'.join(parts) + '\n'
