"""A trained workdir tested again, on its own test split or another dataset's (Table 11).

`evaluate_workdir(workdir, dataset)` reads the model back as the Scorer does
(`trained_lib.load_trained`), predicts the test split and writes
WORKDIR/evaluation_<dataset>_<split>.json. A dataset other than the training
one gives the cross-dataset test of Table 11: the overall score only, mapped
to the other dataset's scale, its data read from its own folders.
"""

import dataclasses

from aesthetix.data import targets
from aesthetix.runtime import parallel
from aesthetix.runtime import workdir as workdir_lib
from aesthetix.training import forward
from aesthetix.training import metrics
from aesthetix.training import train
from aesthetix.training import trained as trained_lib


def evaluation_data(data, dataset=None, data_dir=None, manual_dir=None,
                    builder_kwargs=None):
  """The DataSpec to test on: the training data's (`data_dir`, `manual_dir`
  override its folders), or another `dataset`'s, read from its own folders
  (None: the TFDS defaults; never the training data's, which hold another
  dataset) at the trained image size."""
  dataset = dataset or data.name
  if dataset != data.name:
    return dataclasses.replace(data, targets=targets.spec(dataset), data_dir=data_dir,
                               manual_dir=manual_dir, builder_kwargs=builder_kwargs)
  return dataclasses.replace(data, data_dir=data_dir or data.data_dir,
                             manual_dir=manual_dir or data.manual_dir)


def evaluate_workdir(workdir, dataset=None, data_dir=None, manual_dir=None,
                     builder_kwargs=None):
  """Evaluates a trained workdir on a test split; returns (results, path written)."""
  plan, model, params = trained_lib.load_trained(workdir)
  data = evaluation_data(plan.data, dataset, data_dir, manual_dir, builder_kwargs)
  cross = data.name != plan.data.name
  names = data.targets.output_names[:1] if cross else plan.output_names
  eval_plan = dataclasses.replace(plan, data=data)
  split = data.test_split
  _, true, pred = train.predict_split(eval_plan, forward.make_predict_step(model),
                                      parallel.replicate(params), split)
  n = len(names)
  true = data.targets.from_unit(true[:, :n])
  pred = data.targets.from_unit(pred[:, :n])
  result = dict(trained_on=plan.data.name, evaluated_on=data.name, split=split,
                metrics=metrics.output_metrics(names, true, pred))
  path = workdir_lib.evaluation_path(workdir, data.name, split)
  if parallel.is_main_process():
    workdir_lib.write_json(path, result, indent=2)
  parallel.sync('evaluation written')
  return result, path
