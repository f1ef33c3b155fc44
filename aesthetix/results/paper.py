"""Which of the paper's numbers (configs/paper_numbers.py) belong beside a run's.

The paper reports AADB and EVA, each with the multi-task model (one shared
output layer), a single-task model and, for AADB in the text of section 3,
separate output layers. A run's dataset and variant pick its tables; the
synthetic demo set has none.
"""

from configs import paper_numbers as numbers

MULTI, SINGLE, SEPARATE = 'multi-task', 'single task', 'separate output layers'
DATASETS = ('aadb', 'eva')


def variant(model):
  """The paper's name for the model a `ModelSpec` describes."""
  if model.tasks == 'overall':
    return SINGLE
  return SEPARATE if model.output_layers == 'separate' else MULTI


def overall(dataset, variant_name):
  """The paper's overall test rho after (stage 1, stage 2), either None where it
  gives none, or None for a dataset or variant it does not report."""
  if dataset == 'aadb':
    return {MULTI: (numbers.TABLE5['score'][0], numbers.TABLE1[-1][1]),
            SINGLE: (None, numbers.TABLE6['this paper']['single'])}.get(variant_name)
  if dataset == 'eva':
    return {MULTI: numbers.TABLE8['multi'], SINGLE: numbers.TABLE8['single']}.get(variant_name)
  return None


def per_output(dataset, variant_name):
  """{output: (stage 1 rho, stage 2 rho)} of Table 5 (AADB) or 10 (EVA, with
  Table 8's overall score), multi-task model only; {} elsewhere."""
  if variant_name != MULTI:
    return {}
  if dataset == 'aadb':
    return dict(numbers.TABLE5)
  if dataset == 'eva':
    return {'score': numbers.TABLE8['multi'], **numbers.TABLE10}
  return {}


def intervals(dataset):
  """Table 3 (AADB) or 9 (EVA): rows (printed, low, high, count, share), or None."""
  return {'aadb': numbers.TABLE3, 'eva': numbers.TABLE9}.get(dataset)


def interval_text(dataset):
  return {'aadb': numbers.TABLE3_TEXT, 'eva': numbers.TABLE9_TEXT}.get(dataset)


def previous_methods(dataset):
  """Table 1 (AADB): (method, rho) of the earlier multi-task networks and the paper."""
  return numbers.TABLE1 if dataset == 'aadb' else ()


def human_consistency(dataset):
  """Table 4 (AADB): (images per rater, raters, rho)."""
  return numbers.TABLE4 if dataset == 'aadb' else ()


def cross_dataset(trained_on, tested_on):
  """Table 11's overall rho of a model trained on one dataset, tested on another."""
  return numbers.TABLE11.get(trained_on, {}).get(tested_on)


def figure_correlations(dataset):
  """The rank correlations with the overall score that the text quotes for Fig. 9
  (AADB) or Fig. 14 (EVA): {'truth': {output: rho}, 'prediction': {...}}."""
  fig = {'aadb': numbers.FIG9, 'eva': numbers.FIG14}.get(dataset)
  return {k: fig[k] for k in ('truth', 'prediction')} if fig else {}


def choices(plan):
  """(item, what the paper leaves open, this run's choice) for section 4.2's list."""
  d, s2 = plan.data, plan.last_stage
  adam_eps = {s.eps for s in plan.stages}
  own = {
      'image_size': f'{d.image_size}x{d.image_size}',
      'resize_method': f'tf.image.resize, {d.resize_method}, from the '
                       'stored size (AADB: 256x256 warped images; TestNew originals)',
      'staircase': ('a staircase decay' if s2.staircase else
                    f'a smooth decay: lr {s2.learning_rate:g} x {s2.decay_rate:g}^(step / '
                    f'{s2.decay_steps}) (Keras\' ExponentialDecay, staircase=False)'),
      'eps': (f'{", ".join(f"{e:g}" for e in sorted(adam_eps))}, added to sqrt(v) before the '
              "bias corrections, as Keras' Adam does"),
      'eva_split': ('a seeded permutation of the numerically sorted ids that have votes: 570 '
                    'test images, validation carved from the rest (data_builders/eva/'
                    'eva_split.py), recorded in the workdir\'s splits/'),
      'eva_attribute_scale': ('each image\'s mean vote in its range mapped to [0, 1] by '
                              'that range (score 0..10, attributes 1..4), reported back in '
                              'the votes\' own scale'),
      'val_test_overlap': ('no model selection: the last epoch\'s parameters are tested; '
                           'validation is only monitored, '
                           + ('without' if d.drop_val_test_overlap else 'with')
                           + ' the 127 images it shares with the test split'),
  }
  only = {'eva_split': 'eva', 'eva_attribute_scale': 'eva', 'val_test_overlap': 'aadb'}
  return [(key, text, own[key] if only.get(key, d.name) == d.name
           else f'does not apply to {d.name}') for key, text in numbers.LEFT_OPEN]
