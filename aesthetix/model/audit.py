"""Table 2 of the paper beside the parameter counts of the model a `ModelSpec` describes."""

from aesthetix.model import multitask as model_lib

PARTS = ('pretrained', 'fully_connected', 'output')


def table2_counts(params):
  """Parameters per Table 2 part, counted from a params tree (arrays or shapes)."""
  head = params[model_lib.HEAD]
  hidden = {k: v for k, v in head.items() if k.startswith('fc')}
  outputs = {k: v for k, v in head.items() if k.startswith('output')}
  counts = dict(pretrained=model_lib.count_params(params[model_lib.BACKBONE]),
                fully_connected=model_lib.count_params(hidden),
                output=model_lib.count_params(outputs))
  if sum(counts.values()) != model_lib.count_params(params):
    raise AssertionError('Table 2 parts do not cover every parameter.')
  return counts


def compared_parts(model, table2):
  """Parts whose count the paper gives (`table2`) for `model` (a ModelSpec).

  Table 2 describes the multi-task model on the paper's datasets; its output
  row does not apply to the single-task ablation, nor to a user's own outputs
  (no paper count: `table2['output']` None).
  """
  own_outputs = table2['output'] is None
  return PARTS if model.tasks == 'multi' and not own_outputs else PARTS[:2]


def _ratio(a, b):
  return f'{a / b:.2f}x' if b else 'n/a'


def table2_report(model, table2, table2_pan, counts):
  """(Markdown table, list of mismatching parts, a summary line) for `counts` vs
  the paper. Rows the paper has no number for, for this variant, say so."""
  paper, pan = table2, table2_pan
  hidden = '-'.join(str(u) for u in model.hidden_units)
  n_out = sum(model.groups)
  labels = dict(pretrained='Pre-trained network (VGG16 / ResNet-50)',
                fully_connected=f'Fully-connected layers ({hidden} / 512-128)',
                output=f'Output layer ({n_out} / Pan et al.)')
  compared = compared_parts(model, table2)
  rows = ['| Part | Paper | This model | Match | Pan et al. | Pan et al. / this model |',
          '|---|---:|---:|:---:|---:|---:|']
  mismatches = []
  for part in PARTS:
    ok = counts[part] == paper[part]
    if part in compared and not ok:
      mismatches.append(part)
    match = ('yes' if ok else 'NO') if part in compared else 'not in Table 2'
    shown = f'{paper[part]:,}' if part in compared else '-'
    rows.append(f'| {labels[part]} | {shown} | {counts[part]:,} | {match} '
                f'| {pan[part]:,} | {_ratio(pan[part], counts[part])} |')
  whole = len(compared) == len(PARTS)
  total, pan_total = (sum(d[p] for p in PARTS) for d in (counts, pan))
  paper_total = sum(paper[p] for p in PARTS) if whole else None
  rows.append(f'| Total | {f"{paper_total:,}" if whole else "-"} | {total:,} | '
              f'{("yes" if total == paper_total else "NO") if whole else "not in Table 2"} '
              f'| {pan_total:,} | {_ratio(pan_total, total)} |')
  names = {'pretrained': 'the pre-trained network', 'fully_connected':
           'the fully-connected layers', 'output': 'the output layer'}
  given = ', '.join(names[p] for p in compared)
  if mismatches:
    summary = f'MISMATCH with the paper: {", ".join(mismatches)}.'
  else:
    summary = (f'Table 2 gives {given} and the total for this model: all match.' if whole
               else f'Table 2 gives {given} for this variant: they match. It has no '
               'output layer or total for it (its output row is the multi-task model\'s '
               'on the paper\'s datasets), so those are not compared.')
  return '\n'.join(rows), mismatches, summary


def run_audit(model, image_size, table2, table2_pan):
  """Builds the model's params tree (shapes only) and compares it with Table 2."""
  network = model_lib.build_model(model)
  counts = table2_counts(model_lib.param_shapes(network, image_size))
  table, mismatches, summary = table2_report(model, table2, table2_pan, counts)
  return counts, table, mismatches, summary
