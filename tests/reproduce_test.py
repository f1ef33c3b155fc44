"""--mode=reproduce on tiny AADB and EVA fixtures with 2 seeds: every experiment,
every table and claim, one cache pass per dataset, and a resume that redoes nothing.

The reproduction is started with the README's command (its downloads at
/data/aadb and /data/eva: here the fixtures), killed after three runs, and
resumed with run.py's usage line (the data then where TFDS keeps it by
default), as a user would type them; readme_commands_test leaves these two
commands to this test. Appended, as there: two seeds, the tiny sizes, and
one random VGG16 shared by every run for ImageNet's weights.
"""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
import scipy.stats

from aesthetix.data import datasets
from aesthetix.data import spec as data_spec
from aesthetix.data import targets
from aesthetix.results import experiment
from aesthetix.results import paper
from aesthetix.results import reproduce
from aesthetix.results import stats
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib
from configs import reproduce as reproduce_config
from tests import fixtures_data
from tests import readme_commands_test
from tests import run_py

SEEDS = (0, 1)
# The README test's sizes (32 px, 1 + 1 epochs, batches of 8): one step per epoch
# on AADB's and EVA's 8 training photos, and a multi-task AADB run compiles the
# programs of the suite's shared trained workdir (12 outputs, the same dropout),
# which the session's compilation cache then holds.
TINY = readme_commands_test.TINY
# Test images of each dataset's fixture (tiny_spec): AADB's test list, EVA's num_test.
TEST_IMAGES = {'aadb': 6, 'eva': 4}
TABLES = ('Table 1', 'Table 3', 'Table 4', 'Table 5', 'Table 6', 'Table 8', 'Table 9',
          'Table 10', 'Table 11', 'Fig. 9', 'Fig. 14')
# The documented commands this test runs: the README's, then run.py's usage line.
README_COMMAND = readme_commands_test.documented(
    'README.md', 'python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4 --config.')
USAGE_COMMAND = readme_commands_test.documented(
    'run.py', 'python run.py --mode=reproduce --workdir=W --seeds=0,1,2,3,4')
EVA_SPLIT = dict(num_test=4, num_validation=4)
APPENDED = [f'--seeds={",".join(map(str, SEEDS))}', f'--config.overrides={tuple(TINY.items())!r}',
            '--config.backbone=shared_random']  # No ImageNet weights here; shared, as they would be.


def command_args(command, places):
  """The arguments of a documented run.py `command`, its placeholders at `places`,
  with APPENDED after them."""
  return [a.split('=', 1)[0] + '=' + places.get(a.split('=', 1)[1], a.split('=', 1)[1])
          for a in command.split()[2:]] + APPENDED


def tiny_downloads(tmp_path):
  """AADB's and EVA's tiny downloads, and EVA built small where TFDS keeps data
  (its split needs builder arguments that no flag takes)."""
  fixtures_data.make_aadb(tmp_path / 'aadb', n_train=8, n_val=4, n_test=6, n_overlap=1)
  fixtures_data.make_eva(tmp_path / 'eva', n_images=16, n_unvoted=1, parts=2)
  datasets.builder(data_spec.DataSpec(targets=targets.spec('eva'), image_size=32,
                                      data_dir=str(tmp_path / 'data'),
                                      manual_dir=str(tmp_path / 'eva'), builder_kwargs=EVA_SPLIT))


class Stop(Exception):
  """A kill in the middle of the reproduction."""


@pytest.fixture(scope='module')
def reproduced(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('reproduce')
  tiny_downloads(tmp_path)
  workdir = str(tmp_path / 'W')
  places = {'W': workdir, '/data/aadb': str(tmp_path / 'aadb'), '/data/eva': str(tmp_path / 'eva')}
  real, trained = experiment.run, []

  def stop_at_the_fourth_run(config, path):
    if len(trained) == 3:
      raise Stop()
    trained.append(path)
    return real(config, path)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tfds.core.constants, 'DATA_DIR', str(tmp_path / 'data'))
    patch.setattr(experiment, 'run', stop_at_the_fourth_run)
    with pytest.raises(Stop):
      run_py.in_process(command_args(README_COMMAND, places), patch)
    first = list(trained)
    patch.setattr(experiment, 'run', lambda c, p: trained.append(p) or real(c, p))
    code, stderr = run_py.in_process(command_args(USAGE_COMMAND, places), patch)
    assert code == 0, stderr[-4000:]
  summary = json.loads(open(os.path.join(workdir, workdir_lib.PAPER_JSON)).read())
  return summary, workdir, first, trained[len(first):]


def test_every_experiment_runs_for_every_seed_and_a_resume_redoes_nothing(reproduced):
  summary, workdir, first, second = reproduced
  expected = [(name, seed) for name, _, _ in reproduce_config.PAPER_EXPERIMENTS
              for seed in SEEDS]
  assert [(r['experiment'], r['seed']) for r in summary['runs']] == expected
  assert len(first) == 3 and not set(first) & set(second) and len(second) == len(expected) - 3
  assert [r['read_back'] for r in summary['runs']] == [True] * 3 + [False] * 7
  variants = {'multi_task': paper.MULTI, 'single_task': paper.SINGLE,
              'separate_outputs': paper.SEPARATE}
  modules = {name: (module, variant) for name, module, variant in
             reproduce_config.PAPER_EXPERIMENTS}
  assert len({r['workdir'] for r in summary['runs']}) == len(expected)
  for r in summary['runs']:
    # Each run is of its own experiment and seed...
    module, variant = modules[r['experiment']]
    plan = plan_lib.resolve(workdir_lib.trained_config(r['workdir']))
    assert (plan.seed, plan.data.name, paper.variant(plan.model)) == (
        r['seed'], module, variants[variant])
    # ...and its results.json holds its own test predictions' numbers.
    results = workdir_lib.read_json(workdir_lib.results_path(r['workdir']))
    saved = workdir_lib.load_predictions(r['workdir'], plan.last_stage.name,
                                         plan.data.test_split)
    assert results['dataset'] == module and results['outputs'] == list(plan.output_names)
    fine = results['stages'][plan.last_stage.name]['score']
    assert fine['n'] == len(saved['ids']) == TEST_IMAGES[module]
    assert fine['spearman'] == pytest.approx(
        scipy.stats.spearmanr(saved['true'][:, 0], saved['pred'][:, 0])[0], nan_ok=True)


def seed_results(summary, experiment_name):
  """The results.json of each seed's run of `experiment_name`, in seed order."""
  runs = {r['seed']: r['workdir'] for r in summary['runs']
          if r['experiment'] == experiment_name}
  return [workdir_lib.read_json(workdir_lib.results_path(runs[seed])) for seed in SEEDS]


def finite(values):
  """`values` without the NaNs (undefined rho), as a cell holds them."""
  return [v for v in values if np.isfinite(v)]


def test_each_cell_holds_each_seeds_own_value(reproduced):
  """A cell's per-seed values are the seeds' own runs' numbers (their results.json
  and evaluation files), in seed order."""
  summary, _, _, _ = reproduced
  cells = {(c['table'], c['row'], c['column']): c['values'] for c in summary['cells']}
  aadb = seed_results(summary, 'aadb_multi')
  stage1, stage2 = aadb[0]['stage_titles']
  fine = lambda runs, output='score': finite([r['stages'][stage2][output]['spearman']
                                              for r in runs])
  assert len(fine(aadb)) == len(SEEDS)
  assert cells[('Table 1', 'this paper', 'rho')] == fine(aadb)
  titles = aadb[0]['stage_titles']
  for output in aadb[0]['outputs']:  # Table 5: every output after each stage.
    for stage in (stage1, stage2):
      assert cells[('Table 5', output, titles[stage])] == finite(
          [r['stages'][stage][output]['spearman'] for r in aadb]), (output, stage)
  for i, output in enumerate(aadb[0]['outputs'][1:], 1):  # Fig. 9.
    assert cells[('Fig. 9', output, 'rho with the overall score, truth')] == finite(
        [r['rank_correlation_truth'][0][i] for r in aadb])
  eva_single = seed_results(summary, 'eva_single')
  assert cells[('Table 8', paper.SINGLE, eva_single[0]['stage_titles'][stage2])] == fine(
      eva_single)
  # Table 11: each seed's evaluation of the AADB model on EVA's test split.
  runs = [r['workdir'] for r in summary['runs'] if r['experiment'] == 'aadb_multi']
  crossed = [workdir_lib.read_json(workdir_lib.evaluation_path(w, 'eva', 'test'))
             for w in runs]
  assert cells[('Table 11', 'trained on aadb', 'tested on eva')] == finite(
      [c['metrics']['score']['spearman'] for c in crossed])


def test_one_cache_pass_per_dataset(reproduced):
  summary, workdir, _, _ = reproduced
  assert summary['cache_passes'] == {'aadb': 1, 'eva': 1}
  for dataset in ('aadb', 'eva'):
    files = os.listdir(os.path.join(workdir, workdir_lib.SHARED_CACHES_DIR, dataset))
    keys = {name.split('-')[:3][2] for name in files if name.endswith('.npy')}
    kinds = {tuple(name.split('-')[:2]) for name in files if name.endswith('.npy')}
    # One file per split and kind: every run read the first run's cache.
    assert len(keys) == len(kinds) == 6, files


def test_paper_md_has_every_table_and_every_claim_with_a_verdict(reproduced):
  summary, workdir, _, _ = reproduced
  text = open(os.path.join(workdir, reproduce.PAPER_MD)).read()
  for table in TABLES:
    assert f'## {table}\n' in text, table
  verdicts = (stats.SUPPORTED, stats.NOT_SUPPORTED, stats.INCONCLUSIVE)
  claims = summary['claims']
  sources = {c['source'] for c in claims}
  assert {'Table 1', 'Table 4', 'Table 5', 'Table 6', 'Table 8', 'Table 10', 'Table 11',
          'Section 3'} <= sources
  assert all(c['verdict'] in verdicts for c in claims)
  assert sum(f'**{v}**' in line for line in text.splitlines() for v in verdicts) == len(claims)
  # Each cell: the paper's value beside this one's mean and both seeds' values.
  [cell] = [c for c in summary['cells'] if c['table'] == 'Table 1' and c['row'] == 'this paper']
  assert cell['paper'] == 0.7067 and cell['n'] == 2 and len(cell['values']) == 2
  lines = [l for l in text.splitlines() if l.startswith('| this paper | rho | 0.7067 |')]
  # Tables 1 and 4, each with both seeds' values in its last cell.
  assert len(lines) == 2 and all(l.strip('|').split('|')[-1].count(',') == 1 for l in lines)
  assert text.index('## Table 1\n') < text.index('## Table 5\n') < text.index('## Table 11\n')
  assert '| 0.05-0.10 | test images | 4 | 0 |' in text  # Counts as counts.
  assert any(c['claim'].startswith('Fine-tuning lowers Symmetry') for c in claims)
  assert 'stage-1 backbone passes per dataset: aadb: 1, eva: 1' in text


def test_each_rho_table_has_the_ensemble_of_the_seeds_beside_their_mean(reproduced):
  summary, workdir, _, _ = reproduced
  row = f'score, {reproduce.ENSEMBLE_ROW}'
  [cell] = [c for c in summary['cells'] if (c['table'], c['row'], c['column'])
            == ('Table 5', row, 'Fine-tuning')]
  saved = [workdir_lib.load_predictions(workdir_lib.reproduction_run_dir(
      workdir, 'aadb_multi', seed), 'stage2', 'test') for seed in SEEDS]
  assert all(list(s['ids']) == list(saved[0]['ids']) for s in saved)
  averaged = sum(s['pred'][:, 0].astype(np.float64) for s in saved) / len(saved)
  expected = scipy.stats.spearmanr(saved[0]['true'][:, 0], averaged).statistic
  assert cell['mean'] == pytest.approx(expected, abs=1e-9) and cell['n'] == len(SEEDS)
  text = open(os.path.join(workdir, reproduce.PAPER_MD)).read()
  assert (f"| {row} | Fine-tuning | n/a | {expected:.4f} |  | the {len(SEEDS)} seeds' "
          'predictions averaged per photo |') in text
  tables = {c['table'] for c in summary['cells'] if c.get('ensemble')}
  assert tables == {'Table 1', 'Table 5', 'Table 6', 'Table 8', 'Table 10'}
