"""An experiment: train a config in a workdir, then write its results and report.

The sequence belongs here, above both parts: training never calls the report
(aesthetix/training/train.py leaves its test predictions and metrics in the
workdir), and the report reads only what the workdir holds.

Every experiment is timed by phase (aesthetix/runtime/phases.py): the table
goes to the end of the log, to metrics.jsonl (a `run_timing` record, so that
`--mode=report` keeps it), to results.json (`timing`) and to TensorBoard.
"""

from absl import logging

from aesthetix.results import report
from aesthetix.runtime import compilation_cache
from aesthetix.runtime import parallel
from aesthetix.runtime import phases
from aesthetix.runtime import summaries
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import history
from aesthetix.training import train


def run(config, workdir, since=None):
  """Trains (or resumes) `config` in `workdir`, then writes results.json and
  report.md and prints the test rho table; returns the run's Plan.

  since: when the run started (run.py: the process's start, so that the
  phase table counts the start-up); None: now.
  """
  before = compilation_cache.counts()
  with phases.clock(since) as clock:
    plan = train.train_and_evaluate(config, workdir)
    if parallel.is_main_process():
      with phases.timed(phases.REPORT):
        results = report.write(plan, workdir)
        print(report.test_rho_table(results))
    parallel.sync('report')
  record = dict(clock.record(), compilation_cache=compilation_cache.summary(before))
  if parallel.is_main_process():
    write_timing(plan, workdir, record)
    logging.info('Results in %s and %s; `python run.py --mode=report --workdir=%s` adds '
                 'the figures.', workdir_lib.report_path(workdir),
                 workdir_lib.results_path(workdir), workdir)
  return plan


def write_timing(plan, workdir, record):
  """The run's phase table: the log, metrics.jsonl, results.json, TensorBoard."""
  table = phases.markdown(record)
  logging.info('Where the time went (this process, %.1f s):\n%s\n%s', record['wall_seconds'],
               table, compilation_cache.summary_line(record['compilation_cache']))
  history.append(workdir, {history.RUN_TIMING: record})
  report.write_timing(workdir, record)
  writer = summaries.Writer(workdir_lib.tensorboard_dir(workdir))
  step = train.total_steps(plan)
  writer.scalars(step, {f'timing/{phase}': s for phase, s in record['phases'].items()})
  writer.text(step, 'timing', table)
  writer.close()
