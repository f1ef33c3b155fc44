"""Two variants of a run over several seeds, paired by seed: test rho per seed,
mean and spread per variant, and the paired difference with its confidence
interval and t-test. Seed-to-seed spread is the yardstick: a difference inside
it is not one.

Used by `bench.dtype_seeds` (float32 vs bfloat16) and `bench.keras_vs_aesthetix
--seeds` (Keras vs aesthetix).
"""

import numpy as np

from aesthetix.results import report
from aesthetix.results import stats
from aesthetix.training import plan as plan_lib

CONFIDENCE = stats.CONFIDENCE
OVERALL, ATTRIBUTE_MEAN = 0, 1
MEASURE_LABELS = {OVERALL: 'overall', ATTRIBUTE_MEAN: 'attribute mean'}


def rho_pair(names, stage_metrics):
  """(overall score rho, mean rho of the attributes) from {output: metrics} of one
  stage (`metrics.output_metrics`); the mean is nan without attributes."""
  attributes = [stage_metrics[n]['spearman'] for n in names[1:]]
  return (stage_metrics[names[0]]['spearman'],
          float(np.mean(attributes)) if attributes else float('nan'))


def stage_rhos(results):
  """{stage: rho_pair} of the test split, from a run's results (`report.build_results`)."""
  return {stage: rho_pair(results['outputs'], metrics)
          for stage, metrics in results['stages'].items()}


def markdown_table(title, variants, seeds, rhos, seconds):
  """The sweep as Markdown: rows per seed, then mean, sd and the paired difference.

  variants: ((key_a, short_a, long_a), (key_b, short_b, long_b)); the
  difference is b - a. rhos[(seed, key)][stage] = rho_pair; seconds[(seed,
  key)]: wall time of the run, None when it was read back.
  """
  fmt = report.fmt_metric
  keys = [v[0] for v in variants]
  short = {v[0]: v[1] for v in variants}
  stages = [s for s in plan_lib.STAGES if all(s in rhos[(seed, k)] for seed in seeds
                                           for k in keys)]
  cols = [(stage, what) for stage in stages for what in MEASURE_LABELS]
  title_of = {s: plan_lib.STAGE_TITLES.get(s, s) for s in stages}
  head = ['seed'] + [f'{title_of[s]} {MEASURE_LABELS[w]} {short[k]}'
                     for s, w in cols for k in keys]
  lines = [title, '',
           '| ' + ' | '.join(head + [f'wall s {short[k]}' for k in keys]) + ' |',
           '|' + '---|' + '---:|' * (len(head) + 1)]
  for seed in seeds:
    cells = [str(seed)] + [fmt(rhos[(seed, k)][s][w]) for s, w in cols for k in keys]
    cells += ['read back' if seconds[(seed, k)] is None else f'{seconds[(seed, k)]:.0f}'
              for k in keys]
    lines.append('| ' + ' | '.join(cells) + ' |')
  summaries = [stats.paired_summary([rhos[(seed, keys[0])][s][w] for seed in seeds],
                              [rhos[(seed, keys[1])][s][w] for seed in seeds])
               for s, w in cols]
  for name, keys_ in (('mean', ('mean_a', 'mean_b')), ('sd', ('sd_a', 'sd_b'))):
    cells = [name] + [fmt(m[k]) for m in summaries for k in keys_]
    lines.append('| ' + ' | '.join(cells + ['', '']) + ' |')
  lines += ['', f'| {variants[1][2]} - {variants[0][2]}, paired | difference | '
            f'{CONFIDENCE:.0%} interval | t-test p |', '|---|---:|---:|---:|']
  for (s, w), m in zip(cols, summaries):
    lines.append(f'| {title_of[s]} {MEASURE_LABELS[w]} | {fmt(m["diff"])} | '
                 f'[{fmt(m["ci_low"])}, {fmt(m["ci_high"])}] | {fmt(m["p"], 3)} |')
  return '\n'.join(lines)
