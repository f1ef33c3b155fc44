"""metrics.jsonl: the records a training run writes, and the one check of them.

Six kinds of record, one JSON object a line (train.py and
results/experiment.py write them; the report, the figures and the
reproduction read them):

  epoch          {stage, epoch, train_loss, validation, [images_per_second,
                  epoch_seconds, input_wait_seconds]}: after each epoch
  test           {stage, test}: the test split after a stage
  timing         {stage, timing}: a stage's seconds and where its batches came from
  config_change  {config_change}: a last stage started again with other settings

`validation` and `test` are {output name: {spearman, spearman_p, pearson,
pearson_p, mse, n}}. Keys in brackets were added over time: older workdirs
lack them. Every record is checked against its kind when written (a writer
that drifts from the schema fails at once) and when read (a line that parses
but does not fit is named like a torn one: file, line, what is wrong); an
unknown key is damage (a flipped bit in a key), not a newer field.
"""

import json
import os

from aesthetix.runtime import workdir as workdir_lib


class Kind:
  """What a value must be: `description` for the message, `test` value -> bool."""

  def __init__(self, description, test):
    self.description, self.test = description, test


class Record:
  """A JSON object with `required` and `optional` keys {key: spec}; no others."""

  def __init__(self, required, optional=None):
    self.required, self.optional = required, optional or {}

  @property
  def keys(self):
    return {**self.required, **self.optional}


class Table:
  """A JSON object of any string keys (output names), each value a `spec`."""

  def __init__(self, spec, description):
    self.spec, self.description = spec, description


class ListOf:
  def __init__(self, spec, description):
    self.spec, self.description = spec, description


def _is_number(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_count(v):
  return isinstance(v, int) and not isinstance(v, bool) and v >= 0


NUMBER = Kind('a number', _is_number)
NUMBER_OR_NONE = Kind('a number or null', lambda v: v is None or _is_number(v))
COUNT_OR_NONE = Kind('a whole number or null', lambda v: v is None or _is_count(v))
OBJECT = Kind('a JSON object', lambda v: isinstance(v, dict))
COUNT = Kind('a whole number', _is_count)
EPOCH_NUMBER = Kind('a whole number from 1', lambda v: _is_count(v) and v >= 1)
TEXT = Kind('a string', lambda v: isinstance(v, str))
TEXT_OR_NONE = Kind('a string or null', lambda v: v is None or isinstance(v, str))
FLAG = Kind('true or false', lambda v: isinstance(v, bool))
ANY_JSON = Kind('a JSON value', lambda v: True)

# metrics.output_metrics of one output (NaN, written as NaN, where undefined).
METRICS = Record(dict(spearman=NUMBER_OR_NONE, spearman_p=NUMBER_OR_NONE,
                      pearson=NUMBER_OR_NONE, pearson_p=NUMBER_OR_NONE, mse=NUMBER_OR_NONE,
                      n=COUNT),
                 dict(undefined=TEXT))
METRICS_TABLE = Table(METRICS, 'metrics per output')
TIMING = Record(dict(seconds=NUMBER),
                dict(feature_cache_seconds=NUMBER, first_epoch=COUNT, epochs=COUNT,
                     source=TEXT, feature_cache=FLAG,
                     cache_passes=ListOf(TEXT, 'a list of split names')))
CHANGE = Record(dict(time=TEXT, fields=Table(ListOf(ANY_JSON, 'an [old, new] pair'),
                                             'the changed fields'),
                     restarts=TEXT, from_checkpoint=COUNT,
                     superseded=ListOf(COUNT, 'a list of checkpoint numbers')),
                dict(moved_to=TEXT_OR_NONE))

INIT_FROM = Record(dict(path=TEXT, dataset=TEXT, checkpoint=COUNT_OR_NONE,
                        from_source=ListOf(TEXT, 'a list of output names'),
                        fresh=ListOf(TEXT, 'a list of output names')))
EPOCH = 'epoch'
TEST = 'test'
TIMING_RECORD = 'timing'
CONFIG_CHANGE = 'config_change'
INIT_FROM_RECORD = 'init_from'
RUN_TIMING = 'run_timing'
# The kinds that belong to the whole run, not to one of its stages.
RUN_RECORDS = (INIT_FROM_RECORD, RUN_TIMING)
# Each kind of record: its keys. The kind of a line is the one whose keys it
# matches best, so that a damaged key is reported against the record it was.
RECORDS = {
    EPOCH: Record(dict(stage=TEXT, epoch=EPOCH_NUMBER, train_loss=NUMBER,
                       validation=METRICS_TABLE),
                  dict(images_per_second=NUMBER, epoch_seconds=NUMBER,
                       input_wait_seconds=NUMBER)),
    TEST: Record(dict(stage=TEXT, test=METRICS_TABLE)),
    TIMING_RECORD: Record(dict(stage=TEXT, timing=TIMING)),
    CONFIG_CHANGE: Record(dict(config_change=CHANGE)),
    INIT_FROM_RECORD: Record(dict(init_from=INIT_FROM)),
    RUN_TIMING: Record(dict(run_timing=OBJECT)),
}
# The longest excerpt of a bad value quoted in a message.
_QUOTED_CHARS = 40


def _quoted(value):
  text = json.dumps(value)
  return text if len(text) <= _QUOTED_CHARS else text[:_QUOTED_CHARS] + '...'


def _problem(value, spec, where):
  """None when `value` fits `spec`; else what is wrong, naming `where` it is
  (e.g. "the epoch record's validation/score/n")."""
  if isinstance(spec, Kind):
    return None if spec.test(value) else f'{where} is {_quoted(value)}, not {spec.description}'
  if isinstance(spec, (Table, ListOf)):
    expected = dict if isinstance(spec, Table) else list
    if not isinstance(value, expected):
      return f'{where} is {_quoted(value)}, not {spec.description}'
    items = value.items() if isinstance(spec, Table) else enumerate(value)
    return next((p for k, v in items if (p := _problem(v, spec.spec, _inside(where, k)))),
                None)
  if not isinstance(value, dict):
    return f'{where} is {_quoted(value)}, not a JSON object'
  missing = [k for k in spec.required if k not in value]
  unknown = [k for k in value if k not in spec.keys]
  if missing or unknown:
    parts = ([f'no {", ".join(map(_quoted, missing))}'] if missing else []) + (
        [f'an unknown key {", ".join(map(_quoted, unknown))}'] if unknown else [])
    return f'{where} has {" and ".join(parts)}'
  return next((p for k, v in value.items()
               if (p := _problem(v, spec.keys[k], _inside(where, k)))), None)


def _inside(where, key):
  """`where` of the value at `key` of an object: "the epoch record's validation/score"."""
  if "'s " in where:
    return f'{where}/{key}'
  return f"{where}'s {key}"


def kind_of(record):
  """The kind of record (a key of RECORDS) whose keys `record` matches best."""
  keys = set(record)
  return min(RECORDS, key=lambda k: (len(set(RECORDS[k].required) - keys)
                                     + len(keys - set(RECORDS[k].keys))))


def problem(record, stage_names=None):
  """None when `record` is one that training writes; else what is wrong with it.

  stage_names: the run's stages; a record of another stage is wrong too.
  """
  if not isinstance(record, dict):
    return f'it is {_quoted(record)}, not a JSON object'
  kind = kind_of(record)
  found = _problem(record, RECORDS[kind], f'the {kind.replace("_", " ")} record')
  if found or stage_names is None or kind in RUN_RECORDS:
    return found
  stage = record.get('stage', record.get(CONFIG_CHANGE, {}).get('restarts'))
  if stage not in stage_names:
    return f'its stage {_quoted(stage)} is not one of this run ({", ".join(stage_names)})'
  return None


def path(workdir):
  return workdir_lib.metrics_path(workdir)


def read(workdir, stage_names=None):
  """The records of the workdir's metrics.jsonl ([] when absent), each checked:
  a line that does not fit raises WorkdirError naming the file and the line."""
  return workdir_lib.read_jsonl(path(workdir),
                                check=lambda record: problem(record, stage_names))


def append(workdir, record):
  """Appends `record` to the workdir's metrics.jsonl, whole; a record that is
  not of a kind above is a bug of its writer (ValueError)."""
  found = problem(record)
  if found:
    raise ValueError(f'Not a record of {workdir_lib.METRICS_FILE}: {found}: {record}')
  workdir_lib.append_jsonl(os.path.join(workdir, workdir_lib.METRICS_FILE), record)
