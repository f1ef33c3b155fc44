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

