"""The Keras vs aesthetix benchmark end to end at toy sizes: every row, positive numbers.

Most of its time is the two schedules' compilation; 2 epochs per stage so that
the steady-state rows have an epoch after the first to measure.
"""

import dataclasses

from bench import keras_vs_aesthetix as bench

SETTINGS = bench.Settings(num_images=16, num_eval_images=8, image_size=32, batch_size=8,
                          stage1_epochs=2, stage2_epochs=2, timed_steps=2, matmul_size=256)


def test_table_has_every_row_with_positive_numbers(tmp_path):
  result = bench.run_benchmark(dataclasses.replace(SETTINGS, workdir=str(tmp_path)))
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
