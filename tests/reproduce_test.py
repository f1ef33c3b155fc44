"""--mode=reproduce on tiny AADB and EVA fixtures with 2 seeds: every experiment,
every table and claim, one cache pass per dataset, and a resume that redoes nothing."""

import os

import numpy as np
import pytest
import scipy.stats

from aesthetix.results import experiment
from aesthetix.results import paper
from aesthetix.results import reproduce
from aesthetix.results import stats
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib
from configs import reproduce as reproduce_config
from tests import fixtures_data

SEEDS = (0, 1)
TINY = {'dataset.image_size': 32, 'stage1.epochs': 1, 'stage2.epochs': 1,
        'stage1.batch_size': 4, 'stage2.batch_size': 4, 'eval_batch_size': 4,
        'stage2.decay_steps': 2, 'checkpoint_max_to_keep': 1}
# Test images of each dataset's fixture (tiny_spec): AADB's test list, EVA's num_test.
TEST_IMAGES = {'aadb': 6, 'eva': 4}
TABLES = ('Table 1', 'Table 3', 'Table 4', 'Table 5', 'Table 6', 'Table 8', 'Table 9',
          'Table 10', 'Table 11', 'Fig. 9', 'Fig. 14')


def tiny_spec(tmp_path):
  spec = reproduce_config.get_config()
  spec.backbone = 'shared_random'  # No ImageNet weights here; shared, as they would be.
  fixtures_data.make_aadb(tmp_path / 'aadb', n_train=8, n_val=4, n_test=6, n_overlap=1)
  fixtures_data.make_eva(tmp_path / 'eva', n_images=16, n_unvoted=1, parts=2)
  for name in ('aadb', 'eva'):
    spec.datasets[name].manual_dir = str(tmp_path / name)
    spec.datasets[name].data_dir = str(tmp_path / 'data')
  spec.datasets.eva.builder_kwargs = dict(num_test=4, num_validation=4)
  spec.overrides = tuple(TINY.items())
  return spec


class Stop(Exception):
  """A kill in the middle of the reproduction."""


@pytest.fixture(scope='module')
def reproduced(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('reproduce')
  spec, workdir = tiny_spec(tmp_path), str(tmp_path / 'W')
  real, trained = experiment.run, []

  def stop_at_the_fourth_run(config, path):
    if len(trained) == 3:
      raise Stop()
    trained.append(path)
    return real(config, path)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(experiment, 'run', stop_at_the_fourth_run)
    with pytest.raises(Stop):
      reproduce.run(spec, workdir, SEEDS)
  first = list(trained)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(experiment, 'run', lambda c, p: trained.append(p) or real(c, p))
    summary = reproduce.run(spec, workdir, SEEDS)
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
