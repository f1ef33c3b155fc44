"""Ensembles of seeds vs single seeds, and what a percentile is worth on held-out photos.

  python -m bench.ensembles --workdir=workdirs/bench_scores32 --seeds=0,1,2,3,4,5

Two sets of runs, one per seed (trained here unless finished): "demo", the
demo config from one shared random VGG16 (the synthetic set, 600 training
photos, at bench.transfer's 32x32) with stage 1 alone (DEMO_SCHEDULE: its
stage 2 trains at about 1.5 images/s on this 2-core machine), and "fixture",
the few_photos schedule on bench.transfer's rated photos (200 training photos)
started from the full demo's seed 0 (the runs `bench.transfer` makes). Each ensemble averages its members' test
predictions per photo (what `Scorer.from_workdirs` scores); the seeds are cut
into disjoint groups of k (k = 3, 5), and per group the ensemble's test rho is
compared with the mean of its members' and with the member that validated
best, paired by group, with 95% intervals over the groups
(aesthetix.results.stats). The percentiles of each run's test predictions
among its training quantiles are tested against uniform (Kolmogorov-Smirnov
distance) and for monotonicity in the score.
"""

import os
import time

from absl import app
from absl import flags
import jax
import numpy as np
import scipy.stats

from aesthetix.results import report
from aesthetix.results import stats
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import metrics
from aesthetix.training import plan as plan_lib
from aesthetix.training import quantiles
from bench import dtype_seeds
from bench import transfer
from configs import common

GROUP_SIZES = (3, 5)
FIXTURE_SCHEDULE = 'few_photos'
# The demo runs: stage 1 alone, on the features of the shared random VGG16
# (stage 2 as configured but of 0 epochs: the caches bench.transfer's W made serve).
DEMO_SCHEDULE = {'stage2.epochs': 0}
DEMO_DIR = 'demo_stage1'


def run_dirs(root, which, seeds, data_dir=None):
  """The finished workdirs of `which` ('demo' or 'fixture'), one per seed, trained
  here when missing."""
  dirs = []
  if which == 'demo':
    for seed in seeds:
      path = os.path.join(root, DEMO_DIR, f'seed{seed}')
      config = transfer.demo_config(root, seed, data_dir)
      for dotted, value in DEMO_SCHEDULE.items():
        common.set_field(config, dotted, value)
      dtype_seeds.run_once(config, path)
      dirs.append(path)
    return dirs
  photos = transfer.write_fixture(os.path.join(root, 'photos'))
  source = transfer.source_workdir(root, data_dir)
  for seed in seeds:
    path = os.path.join(root, 'transfer', f'{FIXTURE_SCHEDULE}_from_W', f'seed{seed}')
    config = transfer.user_config(root, photos, FIXTURE_SCHEDULE, 'from_W', seed, source,
                                  data_dir)
    dtype_seeds.run_once(config, path)
    dirs.append(path)
  return dirs


def load_run(workdir):
  """{'plan', 'test' (ids, true, pred of the last stage), 'train' (its training
  predictions), 'quantiles', 'validation' (the last epoch's {output: rho})}."""
  plan = plan_lib.resolve(workdir_lib.trained_config(workdir), backend='cpu')
  last = plan.last_stage.name
  # The last epoch's validation, whichever stage trained last (a stage of 0 epochs has none).
  validation = [r['validation'] for r in workdir_lib.read_jsonl(workdir_lib.metrics_path(workdir))
                if 'validation' in r][-1]
  return dict(plan=plan, test=workdir_lib.load_predictions(workdir, last, plan.data.test_split),
              train=workdir_lib.load_predictions(workdir, last, plan.data.train_split),
              quantiles=workdir_lib.read_score_quantiles(workdir),
              validation={n: m['spearman'] for n, m in validation.items()})


def measures(names, true, pred):
  """(overall rho, mean rho over every output) of test predictions [N, n]."""
  m = metrics.output_metrics(names, true, pred)
  return m[names[0]]['spearman'], float(np.mean([m[n]['spearman'] for n in names]))


def ensemble_pred(runs):
  """The members' test predictions averaged per photo (they share the test photos)."""
  for r in runs[1:]:
    assert np.array_equal(r['test']['ids'], runs[0]['test']['ids'])
  return np.mean(np.stack([r['test']['pred'] for r in runs]), axis=0)


def group_rows(runs, k):
  """Per disjoint group of k runs: (ensemble, mean member, best member by
  validation, best member on test), each a (overall, mean) pair."""
  names = list(runs[0]['plan'].output_names)
  true = runs[0]['test']['true']
  rows = []
  for start in range(0, len(runs) - k + 1, k):
    group = runs[start:start + k]
    single = [measures(names, true, r['test']['pred']) for r in group]
    by_validation = int(np.argmax([r['validation'][names[0]] for r in group]))
    best_test = int(np.argmax([s[0] for s in single]))
    rows.append(dict(ensemble=measures(names, true, ensemble_pred(group)),
                     mean=tuple(np.mean(single, axis=0)), best_validation=single[by_validation],
                     best_test=single[best_test]))
  return rows


def _ci(s, lo='ci_low', hi='ci_high'):
  fmt = report.fmt_metric
  return f'[{fmt(s[lo])}, {fmt(s[hi])}]' if np.isfinite(s[lo]) else '(one group)'


def ensemble_markdown(label, runs):
  """The ensembles of `runs` against their members, as Markdown rows."""
  fmt = report.fmt_metric
  names = list(runs[0]['plan'].output_names)
  true = runs[0]['test']['true']
  single = [measures(names, true, r['test']['pred']) for r in runs]
  lines = []
  for which, title in ((0, 'overall'), (1, 'mean of outputs')):
    s = stats.mean_interval([x[which] for x in single])
    lines.append(f'| {label} | {title} | single seed (n={len(runs)}) | {fmt(s["mean"])} '
                 f'{_ci(s)} | | |')
    for k in GROUP_SIZES:
      rows = group_rows(runs, k)
      if not rows:
        continue
      e = stats.mean_interval([r['ensemble'][which] for r in rows])
      vs_mean = stats.paired_summary([r['mean'][which] for r in rows],
                                     [r['ensemble'][which] for r in rows])
      vs_best = stats.paired_summary([r['best_validation'][which] for r in rows],
                                     [r['ensemble'][which] for r in rows])
      lines.append(f'| {label} | {title} | ensemble of {k} ({len(rows)} disjoint groups) | '
                   f'{fmt(e["mean"])} {_ci(e)} | {fmt(vs_mean["diff"])} {_ci(vs_mean)} | '
                   f'{fmt(vs_best["diff"])} {_ci(vs_best)} |')
    everything = measures(names, true, ensemble_pred(runs))[which]
    oracle = max(x[which] for x in single)
    lines.append(f'| {label} | {title} | ensemble of all {len(runs)} | {fmt(everything)} | '
                 f'{fmt(everything - float(np.mean([x[which] for x in single])))} | '
                 f'{fmt(everything - oracle)} (vs the best on test) |')
  return lines


def percentile_markdown(label, run_):
  """KS distance from uniform of the test photos' percentiles, per output; the
  training photos' own; and monotonicity in the score."""
  fmt = report.fmt_metric
  names = list(run_['plan'].output_names)
  at, values = quantiles.table(run_['quantiles'], names)
  lines = []
  for i, name in enumerate(names):
    test = quantiles.percentile(run_['test']['pred'][:, i], values[:, i], at)
    train = quantiles.percentile(run_['train']['pred'][:, i], values[:, i], at)
    order = np.argsort(run_['test']['pred'][:, i], kind='stable')
    monotone = bool(np.all(np.diff(test[order]) >= 0))
    ks = scipy.stats.kstest(test / 100, 'uniform')
    lines.append(f'| {label} | {name} | {len(test)} | {fmt(ks.statistic, 3)} | '
                 f'{fmt(ks.pvalue, 3)} | {fmt(scipy.stats.kstest(train / 100, "uniform").statistic, 3)} '
                 f'| {"yes" if monotone else "NO"} | {fmt(float(np.mean(test)), 1)} |')
  return lines


def ensemble_run(runs):
  """A run-like record of the ensemble of `runs`: test and training predictions
  averaged per photo, and the quantiles of the latter (as `Scorer.from_workdirs`
  makes them)."""
  plan = runs[0]['plan']
  train = np.mean(np.stack([r['train']['pred'] for r in runs]), axis=0)
  return dict(plan=plan, test=dict(runs[0]['test'], pred=ensemble_pred(runs)),
              train=dict(runs[0]['train'], pred=train),
              quantiles=quantiles.record(plan.output_names, train, plan.data.train_split,
                                         plan.last_stage.name))


def define_flags():
  flags.DEFINE_string('workdir', 'workdirs/bench_scores32', 'Where the runs are (kept, resumed).')
  flags.DEFINE_list('seeds', [str(s) for s in range(6)], 'Seeds of both sets of runs.')
  flags.DEFINE_list('sets', ['demo', 'fixture'], 'Which sets of runs.')
  flags.DEFINE_string('data_dir', None, 'TFDS data dir (default: TFDS\'s).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  jax.config.update('jax_compilation_cache_dir', os.path.join(f.workdir, 'jax_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  began = time.time()
  seeds = [int(s) for s in f.seeds]
  runs = {which: [load_run(w) for w in run_dirs(f.workdir, which, seeds, f.data_dir)]
          for which in f.sets}
  print('| Runs | Test rho | Model | rho [95% over seeds or groups] | ensemble - mean '
        'member [95%] | ensemble - best member by validation [95%] |')
  print('|---|---|---|---|---|---|')
  for which in f.sets:
    print('\n'.join(ensemble_markdown(which, runs[which])))
  print('\n| Runs | Output | test photos | KS distance from uniform | KS p | training photos\' '
        'own KS | monotone in the score | mean percentile |')
  print('|---|---|---:|---:|---:|---:|---|---:|')
  for which in f.sets:
    print('\n'.join(percentile_markdown(f'{which} seed {seeds[0]}', runs[which][0])))
    print('\n'.join(percentile_markdown(f'{which} ensemble of {len(seeds)}',
                                         ensemble_run(runs[which]))))
  print(f'\n{time.time() - began:.0f} s')


if __name__ == '__main__':
  define_flags()
  app.run(main)
