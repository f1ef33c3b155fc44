"""What bfloat16 compute does to the results: the same runs in float32 and
bfloat16 over several seeds, paired by seed.

  python -m bench.dtype_seeds --config=configs/demo.py --seeds=0,1,2,3,4
  python -m bench.dtype_seeds --config=configs/aadb.py --seeds=0,1,2 \
      --workdir=/runs/dtype --config.dataset.manual_dir=/data/aadb

Each (seed, dtype) is a whole `experiment.run` (train, then report) in its own
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
from ml_collections import config_flags

from aesthetix.results import experiment
from aesthetix.results import report
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib
from aesthetix.training import train
from bench import paired

DTYPES = ('float32', 'bfloat16')
VARIANTS = (('float32', 'f32', 'float32'), ('bfloat16', 'bf16', 'bfloat16'))


def run_config(base, seed, dtype, cache_dir):
  """`base` with this run's seed and compute dtype, sharing one feature cache dir."""
  config = base.copy_and_resolve_references()
  config.unlock()
  config.seed = seed
  config.model.dtype = dtype
  config.feature_cache_dir = cache_dir
  return config


def run_once(config, workdir):
  """(results of the finished run in `workdir`, wall seconds or None when read back).

  A workdir that holds a run of another config is refused, not read back.
  """
  plan = plan_lib.resolve(config)
  train.claim_workdir(plan, workdir)
  if _finished(plan, workdir):
    return report.build_results(plan, workdir), None
  start = time.perf_counter()
  experiment.run(config, workdir)
  return report.build_results(plan, workdir), time.perf_counter() - start


def _finished(plan, workdir):
  return all(workdir_lib.load_predictions(workdir, stage, plan.data.test_split) is not None
             for stage in plan.stage_names)


def markdown_table(seeds, rhos, seconds, dataset):
  """The sweep as Markdown (`paired.markdown_table`): bfloat16 - float32 per seed.

  rhos[(seed, dtype)][stage] = (overall rho, mean attribute rho);
  seconds[(seed, dtype)]: wall time of the run, None when read back.
  """
  return paired.markdown_table(
      f'Test Spearman rho on {dataset}, float32 vs bfloat16 compute, paired by seed.',
      VARIANTS, seeds, rhos, seconds)


def sweep(base, seeds, workdir):
  """Runs (or reads back) every (seed, dtype); returns the Markdown table."""
  cache_dir = base.get('feature_cache_dir') or os.path.join(workdir, 'feature_cache')
  rhos, seconds = {}, {}
  for seed in seeds:
    for dtype in DTYPES:
      config = run_config(base, seed, dtype, cache_dir)
      results, seconds[(seed, dtype)] = run_once(config, os.path.join(
          workdir, f'seed{seed}_{dtype}'))
      rhos[(seed, dtype)] = paired.stage_rhos(results)
  return markdown_table(seeds, rhos, seconds, base.dataset.name)


def define_flags():
  """The command line's flags, defined only when run as a script (run.py owns
  --config and --workdir in a process that imports both, as pytest does)."""
  config_flags.DEFINE_config_file('config', 'configs/demo.py', 'Config file of the runs.',
                                  lock_config=True)
  flags.DEFINE_list('seeds', ['0', '1', '2', '3', '4'], 'Seeds (config.seed).')
  flags.DEFINE_string('workdir', '', 'Where the runs go, kept and resumed (default: a '
                      'temporary directory, removed at the end).')
  flags.DEFINE_string('output', '', 'Also write the table to this file.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  # Without --workdir the runs go to a temporary directory, removed at the end.
  with tempfile.TemporaryDirectory(prefix='dtype_seeds_') as scratch:
    table = sweep(f.config, [int(seed) for seed in f.seeds], f.workdir or scratch)
  print(table)
  if f.output:
    with open(f.output, 'w') as out:
      out.write(table + '\n')


if __name__ == '__main__':
  define_flags()
  app.run(main)
