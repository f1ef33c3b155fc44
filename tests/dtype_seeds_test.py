"""The float32 vs bfloat16 seed sweep: its table, and a tiny sweep that resumes."""

import os

import pytest

from aesthetix.runtime import workdir as workdir_lib
from bench import dtype_seeds
from bench import paired
from tests import paired_test
from tests import tiny

SPLITS = ('train', 'validation', 'test')


def test_table_rows_and_differences():
  rhos = {(0, 'float32'): {'stage1': (0.3, 0.1), 'stage2': (0.5, 0.2)},
          (0, 'bfloat16'): {'stage1': (0.4, 0.1), 'stage2': (0.6, 0.3)},
          (1, 'float32'): {'stage1': (0.2, 0.0), 'stage2': (0.4, 0.1)},
          (1, 'bfloat16'): {'stage1': (0.2, 0.2), 'stage2': (0.6, 0.1)}}
  seconds = {(0, 'float32'): 61.0, (0, 'bfloat16'): None,
             (1, 'float32'): 62.0, (1, 'bfloat16'): 63.0}
  table = dtype_seeds.markdown_table([0, 1], rhos, seconds, 'toy')
  lines = table.splitlines()
  assert lines[0].startswith('Test Spearman rho on toy')
  [seed0] = [l for l in lines if l.startswith('| 0 |')]
  assert seed0.split('|')[1:-1][-2:] == [' 61 ', ' read back ']
  [mean] = [l for l in lines if l.startswith('| mean |')]
  assert ' 0.2500 | 0.3000 ' in mean  # Training overall: float32, then bfloat16.
  [fine] = [l for l in lines if l.startswith('| Fine-tuning overall |')]
  assert fine.split('|')[2].strip() == '0.1500'


def test_tiny_sweep_runs_both_dtypes_and_reads_back(tmp_path):
  base = tiny.config(tmp_path / 'data', stage1_epochs=1, stage2_epochs=1)
  # One batch per split: the runs' programs are the same, their steps fewer.
  base.dataset.builder_kwargs['split_sizes'] = dict.fromkeys(SPLITS, tiny.BATCH_SIZE)
  workdir = str(tmp_path / 'sweep')
  # One seed: both dtypes and the read-back (the paired statistics of several
  # seeds are test_table_rows_and_differences' and paired_test's).
  first = dtype_seeds.sweep(base, [0], workdir)
  again = dtype_seeds.sweep(base, [0], workdir)
  rows = [l for l in first.splitlines() if l.startswith('| 0 |')]
  assert len(rows) == 1
  # The row's rho cells are each dtype's run's own (its results.json), paired.
  runs = {dtype: paired.stage_rhos(workdir_lib.read_json(workdir_lib.results_path(
      os.path.join(workdir, f'seed0_{dtype}')))) for dtype in dtype_seeds.DTYPES}
  cells = paired_test.seed_rho_cells(first, 0)
  assert cells[0::2] == paired_test.variant_cells(runs['float32'])
  assert cells[1::2] == paired_test.variant_cells(runs['bfloat16'])
  walls = [c.strip() for c in rows[0].strip('|').split('|')][1 + len(cells):]
  assert len(walls) == 2 and all(float(c) > 0 for c in walls), rows[0]
  # The second sweep finds every run finished: the same numbers, no wall times.
  assert again.count('read back') == 2
  strip = lambda t: [l.rsplit('|', 3)[0] for l in t.splitlines()]
  assert strip(again) == strip(first)
  # Runs of another config are refused, not read back as this one's.
  other = base.copy_and_resolve_references()  # The sweep's config but for its dropout.
  other.model.dropout = 0.1
  with pytest.raises(workdir_lib.IncompatibleWorkdirError):
    dtype_seeds.sweep(other, [0], workdir)
