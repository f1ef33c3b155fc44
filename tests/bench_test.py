"""The Keras vs aesthetix benchmark end to end at toy sizes: every row, positive
numbers, both sides from the same weights, and the sweep over seeds.

Most of its time is the two schedules' compilation; 2 epochs per stage so that
the steady-state rows have an epoch after the first to measure.
"""

import dataclasses
import glob

import jax
import numpy as np
import pytest
import scipy.stats

from aesthetix.model import multitask as model_lib
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import plan as plan_lib
from bench import keras_reference
from bench import keras_vs_aesthetix as bench
from bench import paired
from tests import paired_test

SETTINGS = bench.Settings(num_images=16, num_eval_images=8, image_size=32, batch_size=8,
                          stage1_epochs=2, stage2_epochs=2, timed_steps=2, matmul_size=256)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """The synthetic dataset of SETTINGS' sizes, built once for the module's
  three Keras benchmarks (each test gives its runs its own workdir)."""
  settings = bench.prepare_dirs(dataclasses.replace(
      SETTINGS, workdir=str(tmp_path_factory.mktemp('bench_data'))))
  bench.load_data(settings, bench.bench_config(settings))  # Builds it.
  return settings.data_dir


def assert_rhos_of_run(rhos, workdir):
  """aesthetix's {stage: (overall, attribute mean) test rho} are its run's own
  (the workdir's results.json); NaN (an undefined rho) equals NaN."""
  stored = paired.stage_rhos(workdir_lib.read_json(workdir_lib.results_path(workdir)))
  assert list(rhos) == list(stored) == list(plan_lib.STAGES)
  for stage in stored:
    np.testing.assert_array_equal(rhos[stage], stored[stage], err_msg=stage)


def test_table_has_every_row_with_positive_numbers(data_dir, tmp_path):
  result = bench.run_benchmark(dataclasses.replace(SETTINGS, workdir=str(tmp_path),
                                                   data_dir=data_dir))
  lines = result['table'].splitlines()
  for row in bench.ROWS:
    keras_value, ours = result['values'][row]
    assert keras_value > 0 and ours > 0, (row, keras_value, ours)
    [line] = [l for l in lines if l.startswith(f'| {row} |')]
    cells = [c.strip() for c in line.strip('|').split('|')]
    # Keras, aesthetix and the speed-up: all numbers, none 'n/a'.
    assert len(cells) == 4 and all(float(c.replace(',', '')) > 0 for c in cells[1:]), line
  assert 'Machine:' in result['table'] and 'n/a' not in result['table']
  [stalls] = [l for l in lines if l.startswith('Keras spent')]
  assert 'the speed-ups are stage1 ' in stalls and ', whole ' in stalls, stalls
  # Both sides' test rho after each stage, and their difference.
  for title, stage in (('Training', 'stage1'), ('Fine-tuning', 'stage2')):
    for what, label in ((0, 'overall'), (1, 'attribute mean')):
      [line] = [l for l in lines if l.startswith(f'| {title} {label} |')]
      k, a, diff = (float(c) for c in line.strip('|').split('|')[1:])
      assert (k, a) == pytest.approx((result['rhos']['keras'][stage][what],
                                      result['rhos']['aesthetix'][stage][what]), abs=1e-4)
      assert -1 <= k <= 1 and -1 <= a <= 1 and diff == pytest.approx(a - k, abs=2e-4)
  assert_rhos_of_run(result['rhos']['aesthetix'], result['workdir'])


def test_keras_time_outside_steps_and_speedups_without_it(monkeypatch):
  clock = iter([0.0, 1.0, 3.0, 4.0, 6.0, 10.0, 12.0])  # Epoch, 2 steps, validation, end.
  monkeypatch.setattr(bench.time, 'perf_counter', lambda: next(clock))
  stage1 = bench.EpochTrainTimer()
  stage1.on_epoch_begin(0)
  for step in range(2):
    stage1.on_train_batch_begin(step)
    stage1.on_train_batch_end(step)
  stage1.on_test_begin()
  stage1.on_epoch_end(0)
  assert stage1.train_seconds == [10.0] and stage1.step_seconds == [4.0]
  assert stage1.outside_steps() == 6.0
  stage2 = bench.EpochTrainTimer()
  stage2.train_seconds, stage2.step_seconds = [5.0], [5.0]
  note = bench.keras_stall_note({'stage1': stage1, 'stage2': stage2},
                                {'stage1': 20.0, 'stage2': 30.0, 'whole': 55.0},
                                {'stage1': 5.0, 'stage2': 10.0, 'whole': 16.0})
  assert 'Keras spent 6.0 s of its stage 1 and 0.0 s of its stage 2' in note
  assert 'at most 6.0 s in one epoch' in note
  # (20 - 6) / 5, 30 / 10, (55 - 6) / 16.
  assert note.endswith('speed-ups are stage1 2.80, stage2 3.00, whole 3.06.'), note


def test_both_sides_start_from_the_same_weights(tmp_path):
  settings = bench.prepare_dirs(dataclasses.replace(SETTINGS, workdir=str(tmp_path)))
  config = bench.shared_initial_weights(bench.bench_config(settings),
                                        str(tmp_path / bench.INITIAL_WEIGHTS_FILE))
  plan = plan_lib.resolve(config)
  model = model_lib.build_model(plan.model)
  params = model_lib.initial_params(plan.model, model, jax.random.key(config.seed + 1),
                                    plan.data.image_size)
  keras_model = bench.keras_model(config)  # Fresh random weights, then the file's.
  keras_model.load_weights(config.model.backbone_weights)
  images = keras_reference.random_images(np.random.default_rng(0), 4, config.dataset.image_size)
  ours = model.apply({'params': params}, images, train=False)
  theirs = keras_model.predict(keras_reference.keras_preprocess(images), verbose=0)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
  # Another seed draws other weights.
  other = bench.shared_initial_weights(bench.bench_config(dataclasses.replace(settings, seed=1)),
                                       str(tmp_path / 'other.weights.h5'))
  keras_model.load_weights(other.model.backbone_weights)
  assert not np.allclose(keras_model.predict(keras_reference.keras_preprocess(images),
                                             verbose=0), theirs)


def test_seed_sweep_pairs_both_sides_by_seed(data_dir, tmp_path):
  settings = dataclasses.replace(SETTINGS, workdir=str(tmp_path), data_dir=data_dir,
                                 stage1_epochs=1, stage2_epochs=1)
  seeds = (3, 4)
  table = bench.run_seeds(settings, list(seeds))
  lines = table.splitlines()
  assert lines[0].startswith('Test Spearman rho on synthetic_aesthetics (8 test images), '
                             'Keras 3 vs aesthetix')
  cells = {}
  for seed in seeds:
    rho_row, speed_row = [l for l in lines if l.startswith(f'| {seed} |')]
    cells[seed] = [paired_test.number(c) for c in paired_test.seed_rho_cells(table, seed)]
    # aesthetix's cells (every second one) are its run's own test rho: that
    # seed's results.json.
    [run_dir] = glob.glob(str(tmp_path / f'seed{seed}_*'))
    results = workdir_lib.read_json(workdir_lib.results_path(run_dir))
    assert paired_test.seed_rho_cells(table, seed)[1::2] == paired_test.variant_cells(
        paired.stage_rhos(results)), rho_row
    wall = [c.strip() for c in rho_row.strip('|').split('|')][9:]
    assert len(wall) == 2 and all(float(c) > 0 for c in wall), rho_row  # Whole schedules.
    speeds = [c.strip() for c in speed_row.strip('|').split('|')]
    assert all(float(v) > 0 for c in speeds[1:] for v in c.split(' / ')), speed_row
  assert any(l.startswith('| aesthetix - Keras, paired |') for l in lines)
  # Each paired row is the seeds' differences aesthetix - Keras of that column
  # pair, from the per-seed cells (4 decimals each: hence the tolerances).
  rows = paired_test.paired_rows(table)
  assert list(rows) == ['Training overall', 'Training attribute mean', 'Fine-tuning overall',
                        'Fine-tuning attribute mean']
  for i, (name, (diff, low, high, _)) in enumerate(rows.items()):
    d = np.array([cells[seed][2 * i + 1] - cells[seed][2 * i] for seed in seeds])
    assert diff == pytest.approx(d.mean(), abs=1.5e-4), name
    half = scipy.stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half), abs=2e-3), name
  [mean] = [l for l in lines if l.startswith('| mean | | | |')]
  assert all(float(v) > 0 for v in mean.strip('|').split('|')[-1].split(' / '))
  assert lines[-1].startswith('Machine: ')


def test_keras_stages_share_one_shuffling_pipeline():
  """Stage 2 iterates the schedule's training pipeline again: new orders, not
  stage 1's replayed (a pipeline rebuilt from the seed replays them)."""
  config = bench.bench_config(SETTINGS)
  images = np.arange(32, dtype=np.uint8).reshape(32, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
  targets = np.arange(32, dtype=np.float32)[:, None]
  data = {split: (images, targets) for split in ('train', 'validation', 'test')}
  order = lambda ds: np.concatenate([y[:, 0] for _, y in ds.as_numpy_iterator()])
  datasets = bench.keras_datasets(config, data, batch_size=8)
  first, second = order(datasets['train']), order(datasets['train'])
  assert sorted(first) == sorted(second) == list(range(32))
  assert list(first) != list(second)
  rebuilt = bench.keras_datasets(config, data, batch_size=8)['train']
  assert list(order(rebuilt)) == list(first)  # What reusing the pipeline avoids.
  assert list(order(datasets['test'])) == list(range(32))  # Evaluation: in order.


def test_same_stage2_start_gives_aesthetix_keras_stage1_weights(data_dir, tmp_path,
                                                                monkeypatch):
  """With same_stage2_start, aesthetix trains no stage 1: its stage 1 test rho is
  Keras' after stage 1, from the very weights Keras saved."""
  built, keras_datasets = [], bench.keras_datasets

  def counted(*args, **kwargs):
    built.append(args)
    return keras_datasets(*args, **kwargs)

  monkeypatch.setattr(bench, 'keras_datasets', counted)
  settings = dataclasses.replace(SETTINGS, workdir=str(tmp_path), data_dir=data_dir,
                                 stage1_epochs=1, stage2_epochs=1)
  settings = bench.prepare_dirs(settings)
  data = bench.load_data(settings, bench.bench_config(settings))
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  config, sides = bench.run_schedules(bench.bench_config(settings), data, str(run_dir),
                                      same_stage2_start=True)
  assert config.stage1.epochs == 0
  assert config.model.backbone_weights == str(run_dir / bench.STAGE1_WEIGHTS_FILE)
  keras_rho, ours = sides['keras']['rhos']['stage1'], sides['aesthetix']['rhos']['stage1']
  assert ours == pytest.approx(keras_rho, abs=1e-6)
  records = workdir_lib.read_jsonl(str(run_dir / workdir_lib.METRICS_FILE))
  assert [r['epoch'] for r in records if 'epoch' in r] == [1]  # Stage 2's epoch alone.
  # Its stage 2 rho is its run's own (results.json), not stage 1's carried over.
  assert_rhos_of_run(sides['aesthetix']['rhos'], str(run_dir))
  assert len(built) == 1  # Keras' two stages ran on one set of pipelines.
