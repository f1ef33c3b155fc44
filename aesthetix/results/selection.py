"""Which part of a reproduction runs: the experiments of the datasets a user has,
and the cross-dataset tests those allow.

A reproduction config (configs/reproduce.py) names every experiment and every
cross test of the paper; `select(spec, datasets)` keeps the experiments of
`datasets` (None: all) and the cross tests whose model is trained and whose
test data is among them, and says in a sentence what it left out and why, for
the log and PAPER.md. No heavy imports: run.py checks `--datasets` with it
before JAX loads.
"""

import dataclasses

from aesthetix.runtime import errors

DATASETS_FLAG = '--datasets'


@dataclasses.dataclass(frozen=True)
class Selection:
  """What a reproduction runs.

  datasets: the dataset configs (configs/<name>.py) whose experiments run.
  experiments: (name, dataset config, variant) of each experiment that runs.
  cross: (experiment, dataset it is tested on) of each cross test that runs.
  skipped: one sentence per experiment or cross test left out, saying why.
  """
  datasets: tuple
  experiments: tuple
  cross: tuple
  skipped: tuple


def dataset_names(spec):
  """The dataset configs of `spec`'s experiments, in their order."""
  return tuple(dict.fromkeys(module for _, module, _ in spec.experiments))


def flag(datasets):
  """The --datasets flag that selects `datasets`."""
  return f'{DATASETS_FLAG}={",".join(datasets)}'


def datasets_problem(spec, datasets):
  """Why `datasets` (the --datasets values) cannot select from `spec`, or None."""
  if datasets is None:
    return None
  known = dataset_names(spec)
  unknown = [d for d in datasets if d not in known]
  if not datasets or unknown:
    return (f'{flag(datasets)}: {", ".join(unknown) or "no dataset"} has no experiments in '
            f'this reproduction; give some of {", ".join(known)} (e.g. {flag(known[:1])})')
  return None


def select(spec, datasets=None):
  """The `Selection` of `spec` for `datasets` (None: every dataset of its experiments).

  With `datasets`, a cross test runs only when the dataset it is tested on is
  among them too: the data a run touches is the data the user named.
  """
  problem = datasets_problem(spec, datasets)
  if problem:
    raise errors.UserError(problem + '.')
  chosen = dataset_names(spec) if datasets is None else tuple(dict.fromkeys(datasets))
  experiments = tuple(tuple(e) for e in spec.experiments if e[1] in chosen)
  running = {name for name, _, _ in experiments}
  skipped = []
  for module in dataset_names(spec):
    if module not in chosen:
      names = ', '.join(name for name, m, _ in spec.experiments if m == module)
      skipped.append(f'The {module} experiments ({names}): {module} is not among '
                     f'{flag(chosen)}.')
  cross = []
  for name, tested in spec.cross:
    test = f'The cross-dataset test of {name} on {tested} (Table 11)'
    if name not in running:
      skipped.append(f'{test}: {name} is not trained in this reproduction.')
    elif datasets is not None and tested not in chosen:
      skipped.append(f'{test}: it needs {tested}\'s test data, and {tested} is not among '
                     f'{flag(chosen)}.')
    else:
      cross.append((name, tested))
  return Selection(datasets=chosen, experiments=experiments, cross=tuple(cross),
                   skipped=tuple(skipped))
