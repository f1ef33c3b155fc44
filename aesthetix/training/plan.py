"""A run's facts, resolved once: the data, the model, the stages and how they are fed.

The config (a ConfigDict of configs/*.py and the user's overrides, or a
workdir's config.json read back) stops here. `resolve(config)` checks it and
returns a `Plan`, an immutable value that every other module receives as an
argument: nothing reads the raw config after this point, nothing is
registered on the side, and the order of calls is not part of any API.

Section 4.2 of the paper: stage 1 ("Training" in Tables 5 and 10) trains the
head on a frozen VGG16; stage 2 ("Fine-tuning") unfreezes block4_conv2 and
block4_conv3. Each stage's numbers live in the config under its name.
"""

import dataclasses
import json
from typing import Any, Mapping, Optional

from aesthetix.data import spec as data_spec
from aesthetix.data import targets
from aesthetix.model import multitask
from aesthetix.model import vgg16
from aesthetix.runtime import device_defaults
from aesthetix.runtime import errors
from aesthetix.runtime import frozen

# The config's sections of the stages, in order.
STAGES = ('stage1', 'stage2')
# The paper's words for them, in tables and figure titles.
STAGE_TITLES = {'stage1': 'Training', 'stage2': 'Fine-tuning'}
# Where a stage's batches come from: decoded images, or caches of frozen layers.
IMAGES, FEATURES, PREFIX = 'image', 'features', 'prefix'


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of the schedule.

  Attributes:
    name: its config section ('stage1'), as the workdir's records name it.
    title: the paper's word for it ('Training', 'Fine-tuning').
    index: its position; epoch_offset: epochs of the stages before it (its
      checkpoints are numbered epoch_offset + 1 ... epoch_offset + epochs).
    epochs, batch_size: the global batch.
    learning_rate, decay_steps, decay_rate, staircase: Keras' ExponentialDecay
      (decay_steps 0: constant); b1, b2, eps: Keras' Adam.
    trainable_layers: backbone layers it trains (the head always trains).
    source: where its batches come from: IMAGES, FEATURES (the pooled
      backbone, when it trains no backbone layer) or PREFIX (the output of
      `prefix_layer`, below every layer any stage trains).
    caches: the caches its backbone pass reads or writes (a stage fed from
      images may still write the prefix a later stage reads).
    prefix_layer: the layer whose output the prefix cache holds, or None.
    is_last: whether it is the last stage (its test predictions are the run's).
  """
  name: str
  title: str
  index: int
  epoch_offset: int
  epochs: int
  batch_size: int
  learning_rate: float
  decay_steps: int
  decay_rate: float
  staircase: bool
  b1: float
  b2: float
  eps: float
  trainable_layers: tuple
  source: str = IMAGES
  caches: tuple = ()
  prefix_layer: Optional[str] = None
  is_last: bool = False

  @property
  def end(self):
    """The number of the checkpoint saved at the end of the stage."""
    return self.epoch_offset + self.epochs


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything a run does, resolved from its config (see the module's docstring).

  Attributes:
    data: the dataset as the run reads it (`data.spec.DataSpec`).
    model: the model (`model.multitask.ModelSpec`).
    stages: the schedule, in order.
    seed: initial weights, shuffles, flips and dropout.
    eval_batch_size, checkpoint_max_to_keep, log_every_steps: as configured.
    compilation_cache: whether the run reads and writes JAX's persistent
      compilation cache (set up by run.py before anything compiles).
    profile_steps: training steps of each stage traced by jax.profiler (0: none).
    feature_cache, prefix_cache: whether frozen layers are cached (the
      device's rule where the config left them None); cache_origin says where
      each value came from; feature_cache_dir: their folder (None: the workdir's).
    table2, table2_pan: the paper's Table 2 counts for this model (the audit).
    config_json: the config as a workdir stores it (config.json), JSON text.
  """
  data: data_spec.DataSpec
  model: multitask.ModelSpec
  stages: tuple
  seed: int = 0
  eval_batch_size: int = 64
  checkpoint_max_to_keep: int = 3
  log_every_steps: int = 50
  compilation_cache: bool = True
  profile_steps: int = 0
  feature_cache: bool = False
  prefix_cache: bool = False
  cache_origin: Mapping[str, str] = None
  feature_cache_dir: Optional[str] = None
  table2: Mapping[str, Any] = None
  table2_pan: Mapping[str, Any] = None
  config_json: str = '{}'

  def __post_init__(self):
    for field in ('cache_origin', 'table2', 'table2_pan'):
      object.__setattr__(self, field, frozen.freeze(getattr(self, field) or {}))

  @property
  def output_names(self):
    """What the model predicts, in output order."""
    return self.model.output_names

  @property
  def last_stage(self):
    return self.stages[-1]

  def stage(self, name):
    """The stage called `name` ('stage1', ...)."""
    for s in self.stages:
      if s.name == name:
        return s
    raise KeyError(f'No stage {name!r}; the stages are {", ".join(self.stage_names)}.')

  @property
  def stage_names(self):
    return tuple(s.name for s in self.stages)

  def from_unit(self, values):
    """The model's [0, 1] outputs [..., n] in the dataset's scale."""
    return self.data.targets.from_unit(values)

  def config_dict(self):
    """A fresh copy of the stored config (a JSON object)."""
    return json.loads(self.config_json)


def _choice(value, allowed, field):
  if value not in allowed:
    raise errors.ConfigError(f'--config.{field}={value!r} is not one of {", ".join(map(repr, allowed))}.')
  return value


def _non_negative(value, field):
  if int(value) < 0:
    raise errors.ConfigError(f'--config.{field}={value} must be 0 or more.')
  return int(value)


def resolve_data(dataset, spec=None):
  """The `DataSpec` of `config.dataset` (with the targets `spec`, default its own)."""
  d = dataset
  return data_spec.DataSpec(
      targets=spec or data_spec.dataset_targets(d.name, d.get('outputs'), d.get('manual_dir')),
      image_size=int(d.image_size),
      resize_method=d.get('resize_method', 'bilinear'), train_split=d.train_split,
      val_split=d.val_split, test_split=d.test_split, data_dir=d.get('data_dir'),
      manual_dir=d.get('manual_dir'),
      drop_val_test_overlap=bool(d.get('drop_val_test_overlap', False)),
      max_train_examples=int(d.get('max_train_examples', 0) or 0),
      skip_unreadable=bool(d.get('skip_unreadable', False)),
      builder_kwargs=d.get('builder_kwargs'), cache_decoded=bool(d.get('cache_decoded', False)))


def resolve_model(model, spec):
  """The `ModelSpec` of `config.model` for the dataset's targets `spec`."""
  _choice(model.tasks, multitask.TASKS, 'model.tasks')
  _choice(model.output_layers, multitask.OUTPUT_LAYERS, 'model.output_layers')
  _choice(model.dtype, tuple(multitask.DTYPES), 'model.dtype')
  names = spec.output_names if model.tasks == 'multi' else spec.output_names[:1]
  return multitask.ModelSpec(
      output_names=tuple(names),
      groups=multitask.output_groups(model.tasks, model.output_layers, len(spec.attributes)),
      backbone_weights=model.backbone_weights, tasks=model.tasks,
      output_layers=model.output_layers, hidden_units=tuple(int(u) for u in model.hidden_units),
      dropout=float(model.dropout), dtype=model.dtype)


def prefix_layer(trainable):
  """The last backbone layer below every layer in `trainable`, or None (none
  trained, or block1_conv1 trains)."""
  if not trainable:
    return None
  first = min(vgg16.LAYER_NAMES.index(layer) for layer in trainable)
  return vgg16.LAYER_NAMES[first - 1] if first > 0 else None


def _check_layers(layers, field):
  unknown = [l for l in layers if l not in vgg16.LAYER_NAMES]
  if unknown:
    raise errors.ConfigError(f'--config.{field}: {", ".join(unknown)} are not VGG16 layers; known: '
                      f'{", ".join(vgg16.LAYER_NAMES)}.')
  return tuple(layers)


def resolve_stages(config, feature_cache, prefix_cache):
  """The stages of `config`, each with its input source and caches."""
  trainable = {name: _check_layers(config[name].trainable_layers,
                                   f'{name}.trainable_layers') for name in STAGES}
  stages, offset = [], 0
  for index, name in enumerate(STAGES):
    s = config[name]
    # The prefix below every layer this stage and the later ones train.
    prefix = prefix_layer({l for later in STAGES[index:] for l in trainable[later]})
    caches = []
    if prefix_cache and prefix is not None:
      caches.append(PREFIX)
    if feature_cache and not trainable[name]:
      caches.append(FEATURES)
    source = (FEATURES if FEATURES in caches else PREFIX if PREFIX in caches else IMAGES)
    stages.append(Stage(
        name=name, title=STAGE_TITLES[name], index=index, epoch_offset=offset,
        epochs=int(s.epochs), batch_size=int(s.batch_size),
        learning_rate=float(s.learning_rate), decay_steps=int(s.decay_steps),
        decay_rate=float(s.decay_rate), staircase=bool(s.staircase), b1=float(s.b1),
        b2=float(s.b2), eps=float(s.eps), trainable_layers=trainable[name], source=source,
        caches=tuple(caches), prefix_layer=prefix if PREFIX in caches else None,
        is_last=index == len(STAGES) - 1))
    offset += int(s.epochs)
  return tuple(stages)


def stored_json(config, data):
  """The config as config.json keeps it: with the dataset's declared outputs
  (so that a copied workdir scores without the photos' folder)."""
  stored = json.loads(config.to_json_best_effort())
  if data.name in targets.DECLARED:
    stored['dataset']['outputs'] = [[n, *data.targets.ranges[n]]
                                    for n in data.targets.output_names]
  return json.dumps(stored, sort_keys=True)


def resolve(config, backend=None):
  """The `Plan` of `config` (a run's ConfigDict, or a stored config read back).

  Cache fields left None take the rule of `backend` (default: JAX's default
  backend, which this asks only then); a value the run cannot use raises
  `ConfigError` naming its field.
  """
  data = resolve_data(config.dataset)
  model = resolve_model(config.model, data.targets)
  caches, origin = {}, {}
  for field in ('feature_cache', 'prefix_cache'):
    value = config.get(field)
    if value is None:
      backend = backend or device_defaults.backend()
      value, origin[field] = device_defaults.rule(backend)[field], f'rule for {backend}'
    else:
      origin[field] = 'config'
    caches[field] = bool(value)
  paper = config.get('paper') or {}
  return Plan(
      data=data, model=model,
      stages=resolve_stages(config, caches['feature_cache'], caches['prefix_cache']),
      seed=int(config.seed), eval_batch_size=int(config.eval_batch_size),
      checkpoint_max_to_keep=int(config.checkpoint_max_to_keep),
      log_every_steps=int(config.log_every_steps), cache_origin=origin,
      compilation_cache=bool(config.get('compilation_cache', True)),
      profile_steps=_non_negative(config.get('profile_steps', 0) or 0, 'profile_steps'),
      feature_cache_dir=config.get('feature_cache_dir'),
      table2=dict(paper.get('table2') or {}), table2_pan=dict(paper.get('table2_pan') or {}),
      config_json=stored_json(config, data), **caches)
