"""Internal consistency of configs/paper_numbers.py."""

import pytest

from configs import paper_numbers

# Output names as aesthetix names them (overall score first). Hard-coded: the
# module that owns them, aesthetix.targets, is not imported here on purpose.
OUTPUT_NAMES = {
    'aadb': ('score', 'BalacingElements', 'ColorHarmony', 'Content', 'DoF',
             'Light', 'MotionBlur', 'Object', 'Repetition', 'RuleOfThirds',
             'Symmetry', 'VividColor'),
    'eva': ('score', 'visual', 'composition', 'quality', 'semantic'),
}

# VGG16's conv layers (in, out channels) and the head's widths, as Table 2
# counts them.
VGG16_CONVS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256),
               (256, 256), (256, 256), (256, 512), (512, 512), (512, 512),
               (512, 512), (512, 512), (512, 512))
OURS_DENSE = (512, 128, 64)
PAN_DENSE = (2048, 512, 128)


def dense_params(widths):
  """Weights plus biases of the dense chain `widths[0] -> ... -> widths[-1]`."""
  return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def check_rho_table(table, names):
  """Raises ValueError unless `table` maps known output names to [-1, 1]."""
  unknown = set(table) - set(names)
  if unknown:
    raise ValueError(f'Unknown output names {sorted(unknown)}')
  for key, rho in table.items():
    if not -1.0 <= rho <= 1.0:
      raise ValueError(f'rho for {key} is {rho}, outside [-1, 1]')


def test_table2_vgg16_count_matches_its_layers():
  convs = sum(3 * 3 * cin * cout + cout for cin, cout in VGG16_CONVS)
  assert paper_numbers.TABLE2_OURS['pretrained'] == convs == 14_714_688


def test_table2_head_counts_match_layer_widths():
  ours = paper_numbers.TABLE2_OURS
  assert ours['fully_connected'] == dense_params(OURS_DENSE)
  assert paper_numbers.TABLE2_PAN['fully_connected'] == dense_params(PAN_DENSE)
  # Pan et al.: 12 outputs on the 128-unit layer.
  assert paper_numbers.TABLE2_PAN['output'] == dense_params((128, 12))


@pytest.mark.parametrize('name', ['aadb', 'eva'])
def test_for_dataset_table2_output_is_the_k_plus_1_layer(name):
  output = dense_params((OURS_DENSE[-1], len(OUTPUT_NAMES[name])))
  config = paper_numbers.for_dataset(name, table2_output=output)
  assert config.table2.output == {'aadb': 780, 'eva': 325}[name]
  assert config.table2.pretrained == paper_numbers.TABLE2_OURS['pretrained']
  assert config.table2_pan.to_dict() == paper_numbers.TABLE2_PAN


def test_overall_rho_in_range_and_demo_gets_zero():
  check_rho_table({'score': paper_numbers.OVERALL_RHO['aadb']}, ('score',))
  check_rho_table({'score': paper_numbers.OVERALL_RHO['eva']}, ('score',))
  assert paper_numbers.for_dataset('demo', table2_output=0).overall_rho == 0.0



@pytest.mark.parametrize('table, n', [(paper_numbers.TABLE3, 1_000), (paper_numbers.TABLE9, 570)])
def test_interval_tables_add_up_as_the_paper_says(table, n):
  assert sum(row[3] for row in table) == n
  assert sum(row[4] for row in table) == pytest.approx(1.0, abs=0.005)
  for printed, low, high, count, share in table:
    assert printed == f'{low:.2f}-{high:.2f}'
    # Shares are the counts over n, cut (not rounded) to three decimals.
    assert share == int(count / n * 1000 + 1e-9) / 1000, printed
  assert all(a[2] == b[1] for a, b in zip(table, table[1:]))  # Contiguous.


def test_interval_texts_agree_with_their_tables():
  t3, t9 = paper_numbers.TABLE3, paper_numbers.TABLE9
  # Below the prediction range: the first two AADB intervals, the first four of EVA.
  assert paper_numbers.TABLE3_TEXT['below_prediction_range'] == t3[0][3] + t3[1][3]
  assert paper_numbers.TABLE3_TEXT['above_prediction_range'] == t3[-1][3]
  assert paper_numbers.TABLE9_TEXT['below_prediction_range'] == sum(r[3] for r in t9[:4])


def test_every_rho_table_names_known_outputs_in_range():
  check_rho_table({k: v for k, (_, v) in paper_numbers.TABLE5.items()}, OUTPUT_NAMES['aadb'])
  check_rho_table({k: v for k, (v, _) in paper_numbers.TABLE5.items()}, OUTPUT_NAMES['aadb'])
  assert set(paper_numbers.TABLE5) == set(OUTPUT_NAMES['aadb'])
  assert set(paper_numbers.TABLE10) == set(OUTPUT_NAMES['eva'][1:])
  assert set(paper_numbers.TABLE7) == set(OUTPUT_NAMES['eva'])
  for table in (paper_numbers.TABLE10, paper_numbers.TABLE8):
    for pair in table.values():
      assert all(-1 <= r <= 1 for r in pair)


def test_the_tables_agree_where_they_repeat_a_number():
  ours = paper_numbers.TABLE1[-1][1]
  assert paper_numbers.TABLE4[-1][2] == ours == paper_numbers.TABLE6['this paper']['multi']
  assert paper_numbers.TABLE6['Pan et al. 2019']['multi'] == paper_numbers.TABLE1[2][1]
  # Table 5 and 11 round Table 1's 0.7067 and Table 8's 0.695 to three decimals.
  assert paper_numbers.TABLE5['score'][1] == round(ours, 3) == paper_numbers.TABLE11['aadb']['aadb']
  assert paper_numbers.TABLE11['eva']['eva'] == paper_numbers.TABLE8['multi'][1]
  assert paper_numbers.OVERALL_RHO == {'aadb': 0.7067, 'eva': 0.695}
  for low, high in paper_numbers.TABLE7.values():
    assert low < high
