"""An experiment: train a config in a workdir, then write its results and report.

The sequence belongs here, above both parts: training never calls the report
(aesthetix/training/train.py leaves its test predictions and metrics in the
workdir), and the report reads only what the workdir holds.
"""

from absl import logging

from aesthetix.results import report
from aesthetix.runtime import parallel
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import train


def run(config, workdir):
  """Trains (or resumes) `config` in `workdir`, then writes results.json and
  report.md and prints the test rho table; returns the run's Plan."""
  plan = train.train_and_evaluate(config, workdir)
  if parallel.is_main_process():
    results = report.write(plan, workdir)
    print(report.test_rho_table(results))
    logging.info('Results in %s and %s; `python run.py --mode=report --workdir=%s` adds '
                 'the figures.', workdir_lib.report_path(workdir),
                 workdir_lib.results_path(workdir), workdir)
  parallel.sync('report')
  return plan
