"""What bfloat16 compute does to the results: the same runs in float32 and
bfloat16 over several seeds, paired by seed.

  python -m bench.dtype_seeds --config=configs/demo.py --seeds=0,1,2,3,4
  python -m bench.dtype_seeds --config=configs/aadb.py --seeds=0,1,2 \
      --workdir=/runs/dtype --config.dataset.manual_dir=/data/aadb

Each (seed, dtype) is a whole `train.train_and_evaluate` run in its own
workdir, `<workdir>/seed<S>_<dtype>`; a finished run found there is read back,
not repeated, so an interrupted sweep resumes. The feature caches are shared
by runs that can share them (their keys hold the dtype and the backbone
weights). It prints a Markdown table of the test split's Spearman rho per
seed, the mean and standard deviation per dtype, and the paired difference
bfloat16 - float32 with its 95% confidence interval and the paired t-test's p.
Seed-to-seed spread is the yardstick: a dtype effect inside it is not one.
"""

import os
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from ml_collections import config_flags
import scipy.stats

from aesthetix import checkpoint
from aesthetix import report
from aesthetix import train

DTYPES = ('float32', 'bfloat16')
CONFIDENCE = 0.95


def run_config(base, seed, dtype, cache_dir):
  """`base` with this run's seed and compute dtype, sharing one feature cache dir."""
  config = base.copy_and_resolve_references()
  config.unlock()
  config.seed = seed
  config.model.dtype = dtype
  config.feature_cache_dir = cache_dir
  return config


def stage_rhos(results):
  """{stage: (overall score rho, mean rho of the attributes)} on the test split."""
  rhos = {}
  for stage, metrics in results['stages'].items():
    names = results['outputs']
    attributes = [metrics[n]['spearman'] for n in names[1:]]
    rhos[stage] = (metrics[names[0]]['spearman'],
                   float(np.mean(attributes)) if attributes else float('nan'))
  return rhos


def run_once(config, workdir):
  """(results of the finished run in `workdir`, wall seconds or None when read back).

  A workdir that holds a run of another config is refused, not read back.
  """
  checkpoint.claim_workdir(workdir, config)
  if _finished(config, workdir):
    return report.build_results(config, workdir), None
  start = time.perf_counter()
  train.train_and_evaluate(config, workdir)
  return report.build_results(config, workdir), time.perf_counter() - start


def _finished(config, workdir):
  return all(train.load_predictions(workdir, stage, config.dataset.test_split) is not None
             for stage in train.STAGES)


def paired_summary(a, b):
  """Mean and sd of `a` and of `b`, and of b - a paired: CI and t-test p.

  Returns dict(mean_a, sd_a, mean_b, sd_b, diff, ci_low, ci_high, p); the
  spread and interval are nan with fewer than two pairs.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d = b - a
  n = len(d)
  out = dict(mean_a=a.mean(), mean_b=b.mean(), diff=d.mean(),
             sd_a=np.nan, sd_b=np.nan, ci_low=np.nan, ci_high=np.nan, p=np.nan)
  if n >= 2:
    half = scipy.stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)
    out.update(sd_a=a.std(ddof=1), sd_b=b.std(ddof=1),
               ci_low=d.mean() - half, ci_high=d.mean() + half,
               p=scipy.stats.ttest_rel(b, a).pvalue)
  return out


def markdown_table(seeds, rhos, seconds, dataset):
  """The sweep as Markdown: rows per seed, then mean, sd and the paired difference.

  rhos[(seed, dtype)][stage] = (overall rho, mean attribute rho);
  seconds[(seed, dtype)]: wall time of the run, None when read back.
  """
  fmt = report.fmt_metric
  stages = [s for s in train.STAGES if all(s in rhos[(seed, dt)] for seed in seeds
                                           for dt in DTYPES)]
  cols = [(stage, what) for stage in stages for what in (0, 1)]
  label = {0: 'overall', 1: 'attribute mean'}
  short = {'float32': 'f32', 'bfloat16': 'bf16'}
  title = {s: report.STAGE_TITLES.get(s, s) for s in stages}
  head = ['seed'] + [f'{title[s]} {label[w]} {short[dt]}' for s, w in cols for dt in DTYPES]
  lines = [f'Test Spearman rho on {dataset}, float32 vs bfloat16 compute, paired by seed.', '',
           '| ' + ' | '.join(head + [f'wall s {short[dt]}' for dt in DTYPES]) + ' |',
           '|' + '---|' + '---:|' * (len(head) + 1)]
  for seed in seeds:
    cells = [str(seed)] + [fmt(rhos[(seed, dt)][s][w]) for s, w in cols for dt in DTYPES]
    cells += ['read back' if seconds[(seed, dt)] is None else f'{seconds[(seed, dt)]:.0f}'
              for dt in DTYPES]
    lines.append('| ' + ' | '.join(cells) + ' |')
  summaries = [paired_summary([rhos[(seed, DTYPES[0])][s][w] for seed in seeds],
                              [rhos[(seed, DTYPES[1])][s][w] for seed in seeds])
               for s, w in cols]
  for name, keys in (('mean', ('mean_a', 'mean_b')), ('sd', ('sd_a', 'sd_b'))):
    cells = [name] + [fmt(m[k]) for m in summaries for k in keys]
    lines.append('| ' + ' | '.join(cells + ['', '']) + ' |')
  lines += ['', f'| bfloat16 - float32, paired | difference | {CONFIDENCE:.0%} interval | '
            't-test p |', '|---|---:|---:|---:|']
  for (s, w), m in zip(cols, summaries):
    lines.append(f'| {title[s]} {label[w]} | {fmt(m["diff"])} | '
                 f'[{fmt(m["ci_low"])}, {fmt(m["ci_high"])}] | {fmt(m["p"], 3)} |')
  return '\n'.join(lines)


def sweep(base, seeds, workdir):
  """Runs (or reads back) every (seed, dtype); returns the Markdown table."""
  cache_dir = base.get('feature_cache_dir') or os.path.join(workdir, 'feature_cache')
  rhos, seconds = {}, {}
  for seed in seeds:
    for dtype in DTYPES:
      config = run_config(base, seed, dtype, cache_dir)
      results, seconds[(seed, dtype)] = run_once(config, os.path.join(
          workdir, f'seed{seed}_{dtype}'))
      rhos[(seed, dtype)] = stage_rhos(results)
  return markdown_table(seeds, rhos, seconds, base.dataset.name)


def define_flags():
  """The command line's flags, defined only when run as a script (run.py owns
  --config and --workdir in a process that imports both, as pytest does)."""
  config_flags.DEFINE_config_file('config', 'configs/demo.py', 'Config file of the runs.',
                                  lock_config=True)
  flags.DEFINE_list('seeds', ['0', '1', '2', '3', '4'], 'Seeds (config.seed).')
  flags.DEFINE_string('workdir', '', 'Where the runs go (default: a temporary directory).')
  flags.DEFINE_string('output', '', 'Also write the table to this file.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  workdir = f.workdir or tempfile.mkdtemp(prefix='dtype_seeds_')
  table = sweep(f.config, [int(seed) for seed in f.seeds], workdir)
  print(table)
  if f.output:
    with open(f.output, 'w') as out:
      out.write(table + '\n')


if __name__ == '__main__':
  define_flags()
  app.run(main)
