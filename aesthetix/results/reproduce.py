"""The paper, reproduced over seeds: every experiment, every table, every claim tested.

`run(spec, workdir, seeds, datasets)` trains each experiment of `spec`
(configs/reproduce.py) once per seed in its own resumable workdir,
W/<name>/seed<N>/ (a finished run is read back, not redone), runs the
cross-dataset tests of Table 11, and writes W/paper.json and W/PAPER.md
(`datasets` keeps the experiments of some datasets, and the cross tests they
allow; what it leaves out is logged and written down: aesthetix.results.
selection). Every dataset a reproduction touches, the cross tests' test data
included, is checked at its own paths before anything runs. PAPER.md has: every table of the paper
with, per cell, the paper's value, this reproduction's mean over seeds with
its 95% interval, and the per-seed values; and each claim of the paper as a
comparison over seeds (paired by seed where it compares two models) with its
difference, interval, p-value and a verdict (aesthetix.stats).

All runs of a dataset share one feature cache, W/caches/<dataset>/: the cache
keys hold only what the frozen layers' outputs depend on (data, size,
weights), and the runs start from the same backbone, so the first run's
stage-1 pass serves the others; paper.json counts the passes.
"""

import importlib
import os

from absl import logging
import jax
import numpy as np

from aesthetix.data import datasets
from aesthetix.model import keras_weights
from aesthetix.model import multitask as model_lib
from aesthetix.results import evaluate
from aesthetix.results import experiment
from aesthetix.results import paper
from aesthetix.results import report
from aesthetix.results import selection as selection_lib
from aesthetix.results import stats
from aesthetix.runtime import preflight as preflight_lib
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib
from configs import common
from configs import paper_numbers

# The paper's order of its tables and figures, for PAPER.md.
TABLE_ORDER = ('Table 1', 'Table 3', 'Table 4', 'Table 5', 'Table 6', 'Fig. 9', 'Table 8',
               'Table 9', 'Table 10', 'Fig. 14', 'Table 11')
PAPER_MD = workdir_lib.PAPER_MD
# The paper's two columns of a stage's results: its first stage ("Training")
# and its last ("Fine-tuning"), as positions in a run's stages.
FIRST, LAST = 0, -1
# What a reproduction can do without ImageNet's file (configs/reproduce.py's backbone).
WEIGHTS_ALTERNATIVES = ('reproduce from one random VGG16 shared by every run (as the demo '
                        'does) with --config.backbone=shared_random')
# What a null in paper.json stands for (strict JSON has no NaN).
NULL_MEANS = ('a value that does not exist: the mean of no seeds, the interval or p-value '
              'of fewer than two seeds, the p-value of a claim judged by its interval '
              'alone, or a correlation of an output whose values are all the same')


def experiment_config(spec, workdir, module_name, variant, seed):
  """The config of one run: the dataset config's variant, seeded, with the
  reproduction's data locations, shared cache and backbone."""
  config = importlib.import_module(f'configs.{module_name}').get_config(variant)
  config.seed = seed
  where = spec.datasets[module_name]
  for field in ('manual_dir', 'data_dir'):
    if where.get(field):
      config.dataset[field] = where[field]
  if where.get('builder_kwargs'):
    config.dataset.builder_kwargs = dict(where.builder_kwargs)
  if spec.share_caches:
    config.feature_cache_dir = os.path.join(workdir, workdir_lib.SHARED_CACHES_DIR,
                                            config.dataset.name)
  if spec.backbone == 'shared_random':
    config.model.backbone_weights = os.path.join(workdir, workdir_lib.SHARED_BACKBONE)
  for dotted, value in spec.overrides:
    common.set_field(config, dotted, value)
  return config


def write_shared_backbone(spec, workdir, experiments):
  """One random VGG16 (seed 0), standing in for ImageNet weights in the demo."""
  path = os.path.join(workdir, workdir_lib.SHARED_BACKBONE)
  if spec.backbone != 'shared_random' or os.path.exists(path):
    return
  name, module_name, variant = experiments[0]
  del name
  config = experiment_config(spec, workdir, module_name, variant, 0)
  config.model.backbone_weights = 'random'
  plan = plan_lib.resolve(config)
  model = model_lib.build_model(plan.model)
  params = model_lib.init_params(model, jax.random.PRNGKey(0), plan.data.image_size)
  layers = {k: {v: np.asarray(x) for v, x in layer.items()}
            for k, layer in jax.device_get(params[model_lib.BACKBONE]).items()}
  keras_weights.write_layers(layers, path)


def finished(workdir, plan):
  """Whether `workdir` holds a finished run of `plan` (results and the last
  stage's test predictions); a run of another config is refused."""
  stored = workdir_lib.stored_json(workdir)
  if stored is None:
    return False
  diff = workdir_lib.config_differences(stored, plan.config_dict())
  if diff:
    raise workdir_lib.IncompatibleWorkdirError(
        f'{workdir} holds a run of another config ({", ".join(diff)} differ); use a new '
        '--workdir for another reproduction.')
  return (os.path.exists(workdir_lib.results_path(workdir)) and
          os.path.exists(workdir_lib.prediction_path(workdir, plan.last_stage.name,
                                                     plan.data.test_split)))


def manual_dir_flag(module_name):
  """The flag that tells a reproduction where `module_name`'s downloads are."""
  return f'--config.datasets.{module_name}.manual_dir=DIR'


def cross_arguments(spec, tested):
  """evaluate_workdir's keyword arguments for a cross test on `tested`: that
  dataset's own folders (spec.datasets.<tested>; None: the TFDS defaults)."""
  where = spec.datasets[tested]
  return dict(data_dir=where.get('data_dir'), manual_dir=where.get('manual_dir'),
              builder_kwargs=dict(where.builder_kwargs) if where.get('builder_kwargs')
              else None)


def touched_data(spec, workdir, selection):
  """[(dataset config, DataSpec)] of every dataset the selection reads, each at
  its own paths: each dataset's training data, and each cross test's test data
  as evaluate_workdir reads it."""
  touched, plans = [], {}
  for name, module_name, variant in selection.experiments:
    plans[name] = plan_lib.resolve(experiment_config(spec, workdir, module_name, variant, 0))
    touched.append((module_name, plans[name].data))
  for name, tested in selection.cross:
    touched.append((tested, evaluate.evaluation_data(plans[name].data, tested,
                                                     **cross_arguments(spec, tested))))
  return touched, plans


def preflight(spec, workdir, selection):
  """Everything the reproduction needs that is missing (data of every dataset it
  touches, weights), listed at once; with data for some datasets only, the
  message names the --datasets flag that runs those."""
  touched, plans = touched_data(spec, workdir, selection)
  by_dataset = {}
  for module_name, data in touched:
    problem = datasets.data_problem(data, manual_dir_flag(module_name))
    by_dataset.setdefault(module_name, [])
    if problem and problem not in by_dataset[module_name]:
      by_dataset[module_name].append(problem)
  problems = [p for found in by_dataset.values() for p in found]
  if spec.backbone != 'shared_random':
    for weights in dict.fromkeys(p.model.backbone_weights for p in plans.values()):
      problems.append(model_lib.weights_problem(weights, download=not any(problems),
                                                alternatives=WEIGHTS_ALTERNATIVES))
  have = [m for m in selection.datasets if not by_dataset.get(m)]
  advice = None
  if any(by_dataset.values()) and have:
    advice = (f'Or reproduce what your data allows: {selection_lib.flag(have)} (PAPER.md '
              'then says what was left out)')
  preflight_lib.raise_if_any(problems, advice)


def run(spec, workdir, seeds=None, datasets=None):
  """Runs (or reads back) every experiment and cross test of `datasets` (None:
  all of `spec`'s); writes PAPER.md and paper.json; returns the paper.json dict."""
  seeds = list(seeds if seeds is not None else spec.seeds)
  selection = selection_lib.select(spec, datasets)
  for line in selection.skipped:
    logging.info('Reproduction: left out: %s', line)
  preflight(spec, workdir, selection)
  # Every seed compiles the same programs: run.py's persistent compilation
  # cache (aesthetix/runtime/compilation_cache.py) serves the later ones.
  os.makedirs(workdir, exist_ok=True)
  write_shared_backbone(spec, workdir, selection.experiments)
  runs = {}
  for name, module_name, variant in selection.experiments:
    for seed in seeds:
      config = experiment_config(spec, workdir, module_name, variant, seed)
      plan = plan_lib.resolve(config)
      path = workdir_lib.reproduction_run_dir(workdir, name, seed)
      reused = finished(path, plan)
      logging.info('Reproduction: %s seed %d %s.', name, seed,
                   'is finished: read back' if reused else 'runs')
      if not reused:
        experiment.run(config, path)
      runs[(name, seed)] = dict(path=path, plan=plan, reused=reused,
                                results=report.build_results(plan, path))
  for name, tested in selection.cross:
    for seed in seeds:
      run_ = runs[(name, seed)]
      test_split = run_['plan'].data.test_split
      if not os.path.exists(workdir_lib.evaluation_path(run_['path'], tested, test_split)):
        evaluate.evaluate_workdir(run_['path'], tested, **cross_arguments(spec, tested))
      run_['results'] = report.build_results(run_['plan'], run_['path'])
  summary = summarize(spec, runs, seeds, selection)
  workdir_lib.write_json(os.path.join(workdir, workdir_lib.PAPER_JSON), summary, indent=2)
  workdir_lib.write_text(os.path.join(workdir, workdir_lib.PAPER_MD), markdown(summary))
  return summary


def verdict_line(summary):
  """'N runs, M claims (a inconclusive, b supported, ...)' of a paper.json summary."""
  counts = {}
  for c in summary['claims']:
    counts[c['verdict']] = counts.get(c['verdict'], 0) + 1
  return (f'{len(summary["runs"])} runs, {len(summary["claims"])} claims ('
          + ', '.join(f'{n} {v}' for v, n in sorted(counts.items())) + ')')


# --------------------------------------------------------------- aggregation


def _stage_name(results, position):
  """The name of the run's stage at `position` (FIRST, LAST)."""
  return list(results['stage_titles'])[position]


def _rho(results, position, output):
  """Test rho of `output` after the stage at `position` (FIRST, LAST), or None."""
  m = results['stages'].get(_stage_name(results, position), {}).get(output)
  return None if m is None else m['spearman']


def _attribute_mean(results, position):
  values = [_rho(results, position, n) for n in results['outputs'][1:]]
  return float(np.mean(values)) if values else None


def _per_seed(runs, name, seeds, fn):
  return [fn(runs[(name, seed)]['results']) for seed in seeds if (name, seed) in runs]


def _cell(table, row, column, paper_value, values):
  return dict(table=table, row=row, column=column, paper=paper_value,
              **stats.mean_interval(values))


# The paper's table (or figure) of each kind of result, per dataset; another
# dataset's results go under AADB's title with the dataset named.
_TABLES = {'per_output': {'aadb': 'Table 5', 'eva': 'Table 10'},
           'intervals': {'aadb': 'Table 3', 'eva': 'Table 9'},
           'correlations': {'aadb': 'Fig. 9', 'eva': 'Fig. 14'},
           'overall': {'aadb': 'Table 6', 'eva': 'Table 8'}}


def _table(kind, dataset):
  by_dataset = _TABLES[kind]
  return by_dataset.get(dataset, f'{by_dataset["aadb"]} ({dataset})')


def _names(experiments):
  return {name: (module_name, variant) for name, module_name, variant in experiments}


def _find(experiments, module_name, variant):
  for name, m, v in experiments:
    if m == module_name and v == variant:
      return name
  return None


def summarize(spec, runs, seeds, selection):
  """paper.json: tables (cells with the paper's value and this one's over seeds),
  claims (with verdicts), the runs, the cache passes and what was left out."""
  cells, claims = [], []
  experiments = selection.experiments
  for module_name in selection.datasets:
    multi = _find(experiments, module_name, 'multi_task')
    single = _find(experiments, module_name, 'single_task')
    separate = _find(experiments, module_name, 'separate_outputs')
    if multi is None:
      continue
    first = runs[(multi, seeds[0])]['results']
    dataset = first['dataset']
    per_output_table, interval_table, fig = (_table(kind, dataset) for kind in (
        'per_output', 'intervals', 'correlations'))
    theirs = paper.per_output(dataset, paper.MULTI)
    for output in first['outputs']:
      for position, title in ((FIRST, _title(first, FIRST)), (LAST, _title(first, LAST))):
        values = _per_seed(runs, multi, seeds,
                           lambda r, o=output, p=position: _rho(r, p, o))
        pair = theirs.get(output)
        cells.append(_cell(per_output_table, output, title,
                           pair[position] if pair else None, values))
    _intervals(cells, runs, multi, seeds, dataset, interval_table)
    _correlations(cells, runs, multi, seeds, dataset, fig)
    _overall_tables(cells, runs, seeds, dataset, multi, single)
    claims += _claims(spec, runs, seeds, dataset, multi, single, separate)
  claims += _cross(cells, selection, runs, seeds)
  passes = {}
  for (name, _), run_ in runs.items():
    dataset = run_['results']['dataset']
    passes.setdefault(dataset, 0)
    first_stage = _stage_name(run_['results'], FIRST)
    for record in workdir_lib.read_jsonl(workdir_lib.metrics_path(run_['path'])):
      if record.get('stage') == first_stage and record.get('timing', {}).get(
          'cache_passes'):
        passes[dataset] += 1
  return dict(
      seeds=seeds, note=spec.note, datasets=list(selection.datasets),
      left_out=list(selection.skipped), null=NULL_MEANS, cells=cells, claims=claims,
      cache_passes=passes,
      runs=[dict(experiment=name, seed=seed, workdir=r['path'], read_back=r['reused'])
            for (name, seed), r in runs.items()],
      choices=next(iter(runs.values()))['results']['choices'] if runs else [])


def _intervals(cells, runs, name, seeds, dataset, table):
  printed = paper.intervals(dataset)
  rows = runs[(name, seeds[0])]['results'].get('score_intervals', [])
  for i, row in enumerate(rows):
    label = printed[i][0] if printed else f"{row['lo']:.2f}-{row['hi']:.2f}"
    cells.append(_cell(table, label, 'test images', printed[i][3] if printed else None,
                       _per_seed(runs, name, seeds,
                                 lambda r, i=i: r['score_intervals'][i]['count'])))
    cells.append(_cell(table, label, 'inside the prediction range', None,
                       _per_seed(runs, name, seeds, lambda r, i=i: r['score_intervals'][i][
                           'inside_prediction_range'])))


def _correlations(cells, runs, name, seeds, dataset, fig):
  quoted = paper.figure_correlations(dataset)
  results = runs[(name, seeds[0])]['results']
  if 'rank_correlation_truth' not in results or len(results['outputs']) < 2:
    return
  for i, output in enumerate(results['outputs'][1:], 1):
    for kind, key in (('truth', 'rank_correlation_truth'),
                      ('prediction', 'rank_correlation_prediction')):
      cells.append(_cell(fig, output, f'rho with the overall score, {kind}',
                         quoted.get(kind, {}).get(output),
                         _per_seed(runs, name, seeds, lambda r, k=key, i=i: r[k][0][i])))


def _title(results, position):
  return results['stage_titles'][_stage_name(results, position)]


def _overall_tables(cells, runs, seeds, dataset, multi, single):
  fine = lambda name: _per_seed(runs, name, seeds, lambda r: _rho(r, LAST, 'score'))
  first = lambda name: _per_seed(runs, name, seeds, lambda r: _rho(r, FIRST, 'score'))
  titles = runs[(multi, seeds[0])]['results']
  if dataset == 'aadb':
    for method, rho in paper_numbers.TABLE1:
      cells.append(_cell('Table 1', method, 'rho', rho, fine(multi) if method == 'this paper'
                         else []))
    for per_rater, raters, rho in paper_numbers.TABLE4:
      cells.append(_cell('Table 4', per_rater if raters else 'this paper',
                         'rho' if raters is None else f'rho ({raters} raters)', rho,
                         fine(multi) if raters is None else []))
  table6 = _table('overall', dataset)
  for variant, name in ((paper.MULTI, multi), (paper.SINGLE, single)):
    if name is None:
      continue
    theirs = paper.overall(dataset, variant) or (None, None)
    for position, values in ((FIRST, first(name)), (LAST, fine(name))):
      cells.append(_cell(table6, variant, _title(titles, position), theirs[position], values))


def _cross(cells, selection, runs, seeds):
  claims, by_pair = [], {}
  names = _names(selection.experiments)
  for name, tested in selection.cross:
    trained = runs[(name, seeds[0])]['results']['dataset']
    values = [runs[(name, s)]['results']['evaluations'].get(tested, {}).get('rho')
              for s in seeds]
    by_pair[(trained, tested)] = values
    cells.append(_cell('Table 11', f'trained on {trained}', f'tested on {tested}',
                       paper.cross_dataset(trained, tested), values))
    same = _find(selection.experiments, names[name][0], 'multi_task')
    cells.append(_cell('Table 11', f'trained on {trained}', f'tested on {trained}',
                       paper.cross_dataset(trained, trained),
                       _per_seed(runs, same, seeds, lambda r: _rho(r, LAST, 'score'))))
  if ('eva', 'aadb') in by_pair and ('aadb', 'eva') in by_pair:
    claims.append(_paired_claim(
        'Table 11', 'A model trained on EVA transfers better to AADB than one trained on '
        'AADB transfers to EVA (0.441 vs 0.321)', by_pair[('aadb', 'eva')],
        by_pair[('eva', 'aadb')], 'EVA->AADB minus AADB->EVA'))
  return claims


def _paired_claim(source, text, a, b, difference):
  s = stats.paired_summary(a, b)
  return dict(source=source, claim=text, difference=difference, **_numbers(s),
              verdict=stats.greater_verdict(s))


def _numbers(s):
  return {k: s[k] for k in ('diff', 'ci_low', 'ci_high', 'p')}


def _claims(spec, runs, seeds, dataset, multi, single, separate):
  claims = []
  fine = lambda name, f: _per_seed(runs, name, seeds, lambda r: f(r, LAST))
  overall = lambda r, stage: _rho(r, stage, 'score')
  label = {'aadb': 'AADB', 'eva': 'EVA'}.get(dataset, dataset)
  if single is not None:
    claims.append(_paired_claim(
        _table('overall', dataset),
        f'The multi-task model beats the single-task model on {label} (overall score)',
        fine(single, overall), fine(multi, overall), 'multi-task minus single task'))
  outputs = runs[(multi, seeds[0])]['results']['outputs'][1:]
  for output in outputs:
    falls = dataset == 'aadb' and output == 'Symmetry'
    before = _per_seed(runs, multi, seeds, lambda r, o=output: _rho(r, FIRST, o))
    after = _per_seed(runs, multi, seeds, lambda r, o=output: _rho(r, LAST, o))
    claim = _paired_claim(
        _table('per_output', dataset),
        f'Fine-tuning {"lowers" if falls else "raises"} {output} on {label}'
        + (' (the paper\'s one exception, 0.194 -> 0.177)' if falls else ''),
        after if falls else before, before if falls else after,
        'training minus fine-tuning' if falls else 'fine-tuning minus training')
    claims.append(claim)
  if separate is not None:
    s = stats.paired_summary(fine(separate, overall), fine(multi, overall))
    claims.append(dict(source='Section 3', claim=f'Shared and separate output layers give a '
                       f'similar overall score on {label} (within ±{spec.similar_margin:g})',
                       difference='shared minus separate', **_numbers(s),
                       verdict=stats.similar_verdict(s, spec.similar_margin)))
    claims.append(_paired_claim(
        'Section 3', f'The shared output layer predicts the attributes better than separate '
        f'ones on {label} (mean attribute rho)', fine(separate, _attribute_mean),
        fine(multi, _attribute_mean), 'shared minus separate'))
  if dataset == 'aadb':
    values = fine(multi, overall)
    s = stats.against_constant(values, paper_numbers.TABLE1[3][1])
    claims.append(dict(source='Table 1', claim='The model beats Pan et al.\'s 0.7041 on AADB',
                       difference='this model minus 0.7041', **_numbers(s),
                       verdict=stats.greater_verdict(s)))
    human = [rho for _, raters, rho in paper_numbers.TABLE4 if raters is not None]
    interval = stats.mean_interval(values)
    claims.append(dict(source='Table 4', claim=f'The model lies within human consistency '
                       f'({min(human):.4f}-{max(human):.4f}) on AADB',
                       difference='mean rho', diff=interval['mean'],
                       ci_low=interval['ci_low'], ci_high=interval['ci_high'], p=np.nan,
                       verdict=stats.within_verdict(interval, min(human), max(human))))
  return claims


# ------------------------------------------------------------------ PAPER.md


def _f(x, digits=4):
  """A number for a table: ints as they are, floats with `digits` decimals, n/a."""
  if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
    return str(x)
  return report.fmt_metric(None if x is None else float(x), digits)


def _interval(c):
  if c['ci_low'] is None or not np.isfinite(c['ci_low']):
    return ''
  return f"[{c['ci_low']:.4f}, {c['ci_high']:.4f}]"


def markdown(summary):
  """PAPER.md: each table with the paper's cells beside this reproduction's."""
  seeds = summary['seeds']
  parts = ['# The paper, reproduced',
           f'Soydaner & Wagemans, arXiv 2305.09373. Seeds {", ".join(map(str, seeds))}; each '
           'cell: the paper\'s value, this reproduction\'s mean over seeds with its 95% '
           'interval (Student\'s t), and the per-seed values. Claims are judged by the '
           'interval of the difference over seeds (paired by seed where two models are '
           'compared): supported when it lies wholly on the claimed side, not supported '
           'when wholly on the other, inconclusive when it holds 0.']
  if summary['note']:
    parts.append(summary['note'])
  if summary.get('left_out'):
    parts.append('## Left out\n\n' + '\n'.join(f'- {line}' for line in summary['left_out']))
  base = lambda t: t.split(' (')[0]  # 'Table 5 (synthetic_aesthetics)' sorts as Table 5.
  tables = sorted(dict.fromkeys(c['table'] for c in summary['cells']),
                  key=lambda t: (TABLE_ORDER.index(base(t)) if base(t) in TABLE_ORDER
                                 else len(TABLE_ORDER), t))
  for table in tables:
    rows = [f'## {table}', '', '| Row | Column | Paper | This reproduction | 95% interval '
            '| Per seed |', '|---|---|---:|---:|---|---|']
    for c in (c for c in summary['cells'] if c['table'] == table):
      counts = c['values'] and all(float(v).is_integer() for v in c['values'])
      per_seed = ', '.join(str(int(v)) if counts else _f(v) for v in c['values'])
      mean = '' if not c['n'] else (f"{c['mean']:g}" if counts else _f(c['mean']))
      rows.append(f"| {c['row']} | {c['column']} | {_f(c['paper'], 4)} | {mean} | "
                  f"{'' if counts and c['ci_low'] == c['ci_high'] else _interval(c)} | "
                  f"{per_seed} |")
    parts.append('\n'.join(rows))
  rows = ['## The paper\'s claims', '', '| Source | Claim | Difference | Value | 95% interval '
          '| p | Verdict |', '|---|---|---|---:|---|---:|---|']
  for c in summary['claims']:
    rows.append(f"| {c['source']} | {c['claim']} | {c['difference']} | {_f(c['diff'])} | "
                f"{_interval(c)} | {_f(c['p'], 3)} | **{c['verdict']}** |")
  parts.append('\n'.join(rows))
  counts = ', '.join(f'{d}: {n}' for d, n in summary['cache_passes'].items())
  parts.append(f'## Runs\n\n{len(summary["runs"])} runs '
               f'({sum(r["read_back"] for r in summary["runs"])} read back, finished '
               f'before); stage-1 backbone passes per dataset: {counts} (the feature cache '
               'is shared by every run of a dataset).')
  rows = ['## What the paper leaves open (section 4.2)', '', '| Left open | This reproduction |',
          '|---|---|']
  rows += [f'| {text} | {choice} |' for _, text, choice in summary['choices']]
  parts.append('\n'.join(rows))
  return '\n\n'.join(parts) + '\n'
