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
