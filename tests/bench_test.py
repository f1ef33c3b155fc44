"""The Keras vs PyTorch vs aesthetix benchmark end to end at toy sizes: every
row, positive numbers, every side from the same weights, the sweep over seeds;
and the PyTorch peer against aesthetix (weights, Adam, a train step), skipped
where torch is not installed.

Most of its time is the schedules' compilation; 2 epochs per stage so that
the steady-state rows have an epoch after the first to measure, and one
training batch per epoch (8 images): more batches add time, not checks.
"""

import dataclasses
import glob
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from aesthetix.model import keras_weights
from aesthetix.model import multitask as model_lib
from aesthetix.runtime import parallel
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import optim
from aesthetix.training import plan as plan_lib
from aesthetix.training import steps
from bench import keras_reference
from bench import keras_vs_aesthetix as bench
from bench import rates
from configs import common as configs_common
from bench import paired
from tests import paired_test

SETTINGS = bench.Settings(num_images=8, num_eval_images=8, image_size=32, batch_size=8,
                          stage1_epochs=2, stage2_epochs=2, timed_steps=2, matmul_size=256)


def row_cells(table, row):
  """The cells of `row`'s line in a Markdown table, after its label."""
  [line] = [l for l in table.splitlines() if l.startswith(f'| {row} |')]
  return [c.strip() for c in line.strip('|').split('|')][1:]


def number(cell):
  return float(cell.replace(',', ''))


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


@pytest.fixture(scope='module')
def result(data_dir, tmp_path_factory):
  """One benchmark run of every side (the PyTorch ones where torch is installed)."""
  workdir = str(tmp_path_factory.mktemp('bench'))
  return bench.run_benchmark(dataclasses.replace(SETTINGS, workdir=workdir, data_dir=data_dir))


def test_table_has_every_row_with_positive_numbers(result):
  ran = [side for side in bench.COLUMNS if side in result['runs']]
  assert ran == list(bench.COLUMNS) if bench.torch_peer else ['keras', 'aesthetix']
  table, lines = result['table'], result['table'].splitlines()
  for row in bench.ROWS:
    for side in ran:
      assert result['values'][row][side] > 0, (row, side)
    # A column per side, then aesthetix's speed-up over each of the three peers.
    cells = row_cells(table, row)
    assert len(cells) == len(bench.COLUMNS) + 3, cells
    columns = list(bench.COLUMNS)
    for side in ran:
      assert number(cells[columns.index(side)]) > 0, (row, cells)
    assert number(cells[-3]) == pytest.approx(
        bench.speedup(row, result['values'][row]['keras'], result['values'][row]['aesthetix']),
        rel=0.01, abs=0.01)
  assert 'Machine:' in table
  if bench.torch_peer:
    assert 'n/a' not in table and bench.TORCH_MISSING not in table
  else:  # Only the PyTorch columns read n/a, under one line.
    assert all(row_cells(table, row)[1:3] == ['n/a'] * 2 for row in bench.ROWS)
    assert sum(bench.TORCH_MISSING in l for l in lines) == 1
  [stalls] = [l for l in lines if l.startswith('Keras spent')]
  assert 'the speed-ups are stage1 ' in stalls and ', whole ' in stalls, stalls
  # Every side's test rho after each stage, and aesthetix's difference to each.
  for title, stage in (('Training', 'stage1'), ('Fine-tuning', 'stage2')):
    for what, label in ((0, 'overall'), (1, 'attribute mean')):
      cells = row_cells(table, f'{title} {label}')
      a = result['rhos']['aesthetix'][stage][what]
      for i, side in enumerate(columns):
        if side not in ran:
          assert cells[i] == cells[len(columns) + i] == 'n/a'
          continue
        rho = result['rhos'][side][stage][what]
        assert number(cells[i]) == pytest.approx(rho, abs=1e-4) and -1 <= rho <= 1
        if side != 'aesthetix':
          assert number(cells[len(columns) + i]) == pytest.approx(a - rho, abs=2e-4)
  # aesthetix's phase table, as its run wrote it to results.json.
  timing = result['timing']
  assert timing == workdir_lib.read_json(workdir_lib.results_path(result['workdir']))['timing']
  assert sum(timing['phases'].values()) == pytest.approx(timing['wall_seconds'], abs=0.02)
  for phase, seconds in timing['phases'].items():
    assert f'| {phase} | {seconds:.1f} |' in result['table'], phase
  assert_rhos_of_run(result['rhos']['aesthetix'], result['workdir'])


def test_torch_columns_are_filled_and_the_cache_trains_as_images_do(result):
  pytest.importorskip('torch', reason='PyTorch not installed: no PyTorch columns')
  values, runs = result['values'], result['runs']
  for row in bench.ROWS:
    assert values[row]['torch'] > 0 and values[row]['torch_cached'] > 0, row
  # One forward and one step on images for both PyTorch columns; the cached one
  # steps from block4_conv1 as aesthetix does.
  assert values[bench.FORWARD]['torch'] == values[bench.FORWARD]['torch_cached']
  assert values[bench.STEP2_RUN]['torch'] == values[bench.STEP2]['torch']
  assert values[bench.STEP2_RUN]['torch_cached'] != values[bench.STEP2]['torch_cached']
  # The FLOP floors of the work each does: images every epoch, or the caches.
  for row in (bench.FLOOR1, bench.FLOOR2, bench.FLOOR):
    assert values[row]['torch'] == values[row]['keras']
    assert values[row]['torch_cached'] == values[row]['aesthetix']
  # The same examples, flips and dropout draws: the cache changes nothing but
  # float rounding (as aesthetix's caches, tests/feature_cache_test.py).
  np.testing.assert_array_equal(runs['torch']['test_targets'], runs['torch_cached']['test_targets'])
  for stage in ('stage1', 'stage2'):
    np.testing.assert_allclose(runs['torch']['predictions'][stage],
                               runs['torch_cached']['predictions'][stage], atol=1e-5)
  [line] = [l for l in result['table'].splitlines() if l.startswith('PyTorch (bench/torch_peer')]
  assert 'Machine:' in result['table'] and 'PyTorch 2.' in result['machine']


def test_without_torch_its_columns_read_na_under_one_line(monkeypatch):
  monkeypatch.setattr(bench, 'torch_peer', None)
  sides = bench.check_sides(['aesthetix', 'torch_cached', 'keras', 'torch'])
  assert sides == ('keras', 'torch', 'torch_cached', 'aesthetix')  # Column order.
  assert bench.torch_sides(sides) == []
  assert bench.torch_notes(sides) == [bench.TORCH_MISSING + '.']
  assert bench.torch_notes(('keras', 'aesthetix')) == []
  values = {row: {'keras': 2.0, 'torch': None, 'torch_cached': None, 'aesthetix': 4.0}
            for row in bench.ROWS}
  table = bench.markdown_table(values, sides, 'a machine', bench.torch_notes(sides))
  assert table.splitlines()[0] == (
      '| | Keras 3 (TF) | PyTorch eager | PyTorch eager, cached | aesthetix | aesthetix '
      'speed-up over Keras (x) | aesthetix speed-up over PyTorch (x) | aesthetix speed-up '
      'over PyTorch cached (x) |')
  assert row_cells(table, bench.FORWARD) == ['2.00', 'n/a', 'n/a', '4.00', '2.00', 'n/a', 'n/a']
  assert row_cells(table, bench.WHOLE) == ['2.00', 'n/a', 'n/a', '4.00', '0.50', 'n/a', 'n/a']
  assert sum(bench.TORCH_MISSING in line for line in table.splitlines()) == 1
  for bad in (['keras', 'torch'], ['aesthetix', 'pytorch']):
    with pytest.raises(ValueError, match='choose among keras, torch, torch_cached, aesthetix'):
      bench.check_sides(bad)


def test_torch_vgg16_on_converted_weights_matches_flax(tmp_path):
  """The same numbers from the same Keras file: the HWIO -> OIHW and (in, out)
  -> (out, in) conversions, the layer names, padding, pooling and preprocessing."""
  pytest.importorskip('torch', reason='PyTorch not installed: no PyTorch peer to test')
  from bench import torch_peer  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  settings = bench.prepare_dirs(dataclasses.replace(SETTINGS, workdir=str(tmp_path)))
  config = bench.shared_initial_weights(bench.bench_config(settings),
                                        str(tmp_path / bench.INITIAL_WEIGHTS_FILE))
  plan = plan_lib.resolve(config)
  model = model_lib.build_model(plan.model)
  params = model_lib.initial_params(plan.model, model, jax.random.key(plan.seed + 1),
                                    plan.data.image_size)
  images = keras_reference.random_images(np.random.default_rng(0), 3, plan.data.image_size)
  for memory_format in torch_peer.MEMORY_FORMATS.values():
    net = torch_peer.build_net(plan, memory_format).eval()
    x = torch_peer.image_tensor(images, memory_format)
    with torch.inference_mode():
      prefix = net.prefix(x, 'block4_conv1')
      scores, features = net(x).numpy(), net.features(x).numpy()
      from_prefix = net.from_prefix(prefix, 'block4_conv1').numpy()
    np.testing.assert_allclose(scores, model.apply({'params': params}, images),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_prefix, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        features, model.apply({'params': params}, images, method=model.features),
        rtol=1e-4, atol=1e-4)
    ours = model.apply({'params': params}, images, stop_after='block4_conv1',
                       method=model.backbone_prefix)
    np.testing.assert_allclose(torch_peer.nhwc(prefix), ours, rtol=1e-4, atol=1e-4)
  # A file that does not fit the net: named, with the layer and what is wrong.
  path = config.model.backbone_weights
  with pytest.raises(keras_weights.WeightsError, match=r"'output' weight has shape \(12, 64\) "
                     r"in torch's layout, the model expects \(5, 64\)"):
    torch_peer.load_keras_weights(torch_peer.MultiTaskNet((128, 64), 0.35, (5,)), path)
  with pytest.raises(keras_weights.WeightsError,
                     match=r"\['output_attributes', 'output_overall'\] are missing and "
                     r"\['output'\] have no counterpart"):
    torch_peer.load_keras_weights(torch_peer.MultiTaskNet((128, 64), 0.35, (1, 11)), path)


def test_torch_keras_adam_takes_optim_keras_adams_steps():
  """Keras' eps placement, bias corrections and ExponentialDecay in torch, step
  for step against optim.keras_adam; torch.optim.Adam's eps placement differs."""
  torch = pytest.importorskip('torch', reason='PyTorch not installed: no PyTorch peer to test')
  from bench import torch_peer  # pylint: disable=g-import-not-at-top
  stage = configs_common.stage_config(epochs=1, batch_size=8, learning_rate=1e-3,
                                      trainable_layers=(), decay_steps=2, decay_rate=0.5)
  rng = np.random.default_rng(0)
  # Small weights: float32 rounds their updates finely.
  start = (rng.normal(size=(64, 3)) * 1e-2).astype(np.float32)
  # Gradients from 1e-9 to 1: those near eps are where the placements part.
  grads = [(rng.normal(size=start.shape) * 10.0 ** rng.uniform(-9, 0, start.shape))
           .astype(np.float32) for _ in range(4)]
  ours, opt = jnp.asarray(start), optim.keras_adam(stage)
  state = opt.init(ours)
  theirs = torch.tensor(start, requires_grad=True)
  keras_adam = torch_peer.KerasAdam([theirs], torch_peer.learning_rate_fn(stage), stage.b1,
                                    stage.b2, stage.eps)
  plain = torch.tensor(start, requires_grad=True)
  torch_adam = torch.optim.Adam([plain], lr=stage.learning_rate,
                                betas=(stage.b1, stage.b2), eps=stage.eps)
  for g in grads:
    updates, state = opt.update(jnp.asarray(g), state, ours)
    ours = optax.apply_updates(ours, updates)
    theirs.grad, plain.grad = torch.from_numpy(g), torch.from_numpy(g.copy())
    keras_adam.step()
    torch_adam.step()
  moved = np.asarray(ours) - start
  np.testing.assert_allclose(theirs.detach().numpy() - start, moved, rtol=1e-4, atol=1e-8)
  # 4 steps at 1e-3, 7.1e-4, 5e-4, 3.5e-4: the decay is in the steps' sizes.
  assert np.abs(moved).max() < 1e-3 * (1 + 0.5 ** 0.5 + 0.5 + 0.5 ** 1.5) * 1.01
  assert not np.allclose(plain.detach().numpy() - start, moved, rtol=1e-2, atol=1e-6)


def test_torch_stage2_step_equals_aesthetix_step_without_dropout(tmp_path):
  """One stage 2 step on the same batch from the same weights, dropout off:
  the same loss and the same updates of the layers that train (and none of
  the frozen ones) in both frameworks."""
  pytest.importorskip('torch', reason='PyTorch not installed: no PyTorch peer to test')
  from bench import torch_peer  # pylint: disable=g-import-not-at-top
  settings = bench.prepare_dirs(dataclasses.replace(SETTINGS, workdir=str(tmp_path)))
  config = bench.shared_initial_weights(bench.bench_config(settings),
                                        str(tmp_path / bench.INITIAL_WEIGHTS_FILE))
  config.model.dropout = 0.0
  rng = np.random.default_rng(0)
  images = keras_reference.random_images(rng, 4, config.dataset.image_size)
  batch_targets = rng.uniform(size=(4, 12)).astype(np.float32)
  plan = plan_lib.resolve(config)
  stage = plan.stage('stage2')
  model = model_lib.build_model(plan.model)
  state = steps.initial_state(plan, model, jax.random.PRNGKey(plan.seed))
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  step = steps.make_train_step(model, optimizer, labels)
  before = jax.device_get(state['params'])
  after, m = step(parallel.replicate(steps.stage_state(state, optimizer)), parallel.put_batch(
      dict(image=images, target=batch_targets, mask=np.ones(4, bool))))
  after = parallel.unreplicate(after)['params']

  net = torch_peer.build_net(plan).train()
  feed = torch_peer.Feed(plan)
  x, y = feed.tensors(dict(image=images, target=batch_targets, mask=np.ones(4, bool)))
  adam = torch_peer.stage_optimizer(net, stage)
  layers = net.keras_layers()
  start = {name: layer.weight.detach().clone() for name, layer in layers.items()}
  loss = torch_peer.mse(feed.forward(net, x), y)
  loss.backward()
  adam.step()
  ours_loss = float(parallel.unreplicate(m)['loss_sum']) / len(images)
  assert loss.detach().item() == pytest.approx(ours_loss, rel=1e-5)
  lr = stage.learning_rate
  for name, layer in layers.items():
    group = model_lib.BACKBONE if name in net.vgg16.convs else model_lib.HEAD
    ours = np.asarray(after[group][name]['kernel']) - np.asarray(before[group][name]['kernel'])
    theirs = torch_peer.torch_kernel(ours)  # The update in torch's layout.
    moved = (layer.weight.detach() - start[name]).numpy()
    np.testing.assert_allclose(moved, theirs, atol=lr * 1e-2, err_msg=name)
    trains = group == model_lib.HEAD or name in stage.trainable_layers
    assert (np.abs(moved).max() > lr / 2) == trains, name


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
  for seed in (3, 4):  # Each run's phase table.
    assert f"aesthetix's phase table, seed {seed}:" in lines
  assert table.count('| **wall time** |') == 2


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


def test_throughputs_time_every_sides_programs_in_the_same_rounds():
  """Each round calls every program once, after the warm-up calls; the step
  as run is the prefix step where a side has one."""
  log = []

  def call(name, seconds):
    def run():
      log.append(name)
      time.sleep(seconds)
    return run
  calls = {'aesthetix': {bench.FORWARD: (call('a forward', 0.001), 8),
                         bench.STEP2: (call('a step', 0.02), 8),
                         bench.PREFIX_STEP: (call('a prefix', 0.001), 8)},
           'keras': {bench.FORWARD: (call('k forward', 0.001), 8),
                     bench.STEP2: (call('k step', 0.001), 8)}}
  out = bench.throughputs(calls, timed_steps=3)
  names = ['a forward', 'a step', 'a prefix', 'k forward', 'k step']
  warmup = [n for n in names for _ in range(rates.WARMUP_STEPS)]
  assert log == warmup + names * 3
  (_, a_step, a_run), (_, k_step, k_run) = out['aesthetix'], out['keras']
  assert a_run > 2 * a_step and a_step < 8 / 0.02 * 1.01  # The prefix step, 20x faster.
  assert k_run == k_step  # Keras has no prefix step: its step as run is on images.
