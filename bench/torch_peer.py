"""The paper's two-stage schedule in plain PyTorch eager: a peer for the benchmark.

Used by `bench.keras_vs_aesthetix` for its PyTorch columns; it imports torch at
the top, so the bench imports this module only where torch is installed
(`pip install -r requirements-bench.txt`).

The same model, weights, optimizer and data as the other sides:
- a hand-written VGG16 conv base in NCHW with Keras' layer names and shapes
  (torchvision's wheel does not import beside this torch), GAP and the head
  (Dense 128/64 ReLU, dropout, Dense K+1 sigmoid);
- weights from the Keras .weights.h5 the bench writes for the seed
  (`aesthetix.keras_weights` reads it; HWIO conv kernels become OIHW, Dense
  (in, out) kernels Linear (out, in));
- Keras' Adam (`KerasAdam`: eps added before the bias corrections, which
  torch.optim.Adam, like optax, adds after them) and Keras' ExponentialDecay;
- MSE over all outputs; the batches of `aesthetix.input_pipeline`, read from
  the same TFDS build with the same order and flips, NHWC -> NCHW on the host.

Two variants: on images every step ("PyTorch eager"), and on caches of the
frozen layers computed once per image and mirror image, as aesthetix's
feature caches do ("cached"): stage 1 trains the head on pooled features,
stage 2 starts from block4_conv1's output. Dropout masks are torch's own
draws (seeded by the plan's seed), not those of Keras or JAX.

Every function takes the run's `Plan` (aesthetix.training.plan.resolve of
the bench's config), as aesthetix's own modules do.
"""

import dataclasses
import math
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aesthetix.data import input_pipeline
from aesthetix.model import keras_weights
from aesthetix.model import multitask as model_lib
from aesthetix.model import vgg16
from aesthetix.training import plan as plan_lib
from bench import rates

IMAGE, FEATURES, PREFIX = plan_lib.IMAGES, plan_lib.FEATURES, plan_lib.PREFIX
TRAIN_VIEWS, EVAL_VIEWS = 2, 1  # As stored and mirrored; evaluation: as stored.
# Activations and conv kernels in NHWC memory order (channels_last): oneDNN's
# convolutions ran the VGG16 forward and the stage-2 step faster so on the
# development CPU (`python -m bench.torch_peer` measures both layouts).
MEMORY_FORMAT = torch.channels_last
MEMORY_FORMATS = {'NCHW': torch.contiguous_format, 'channels_last': torch.channels_last}
# Caches are written as memory-mapped .npy files in the run's directory (the
# block4_conv1 prefix takes 1.5 MiB per image and view at 224x224).
PREFIX_FILE = 'torch_{split}_prefix.npy'
RANDOM = 'random'


def configure_threads(threads=None):
  """Intra-op threads: every core this process may run on (default)."""
  threads = threads or len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  return threads


def format_name(memory_format):
  return next(k for k, v in MEMORY_FORMATS.items() if v == memory_format)


def version_line():
  return (f'PyTorch {torch.__version__} eager on {torch.get_num_threads()} threads, '
          f'oneDNN {"on" if torch.backends.mkldnn.is_available() else "off"}, '
          f'{format_name(MEMORY_FORMAT)}')


# ------------------------------------------------------------------ the model


def layer_range(start_after=None, stop_after=None):
  """Indices [begin, end) of vgg16.LAYERS between two layer names (as the Flax VGG16)."""
  begin = 0 if start_after is None else vgg16.LAYER_NAMES.index(start_after) + 1
  end = len(vgg16.LAYERS) if stop_after is None else vgg16.LAYER_NAMES.index(stop_after) + 1
  if begin > end:
    raise ValueError(f'Layer {start_after!r} comes after {stop_after!r}.')
  return begin, end


class VGG16(nn.Module):
  """Keras' VGG16(include_top=False) in NCHW: preprocessed float [B, 3, H, W] ->
  [B, 512, H/32, W/32]; `start_after` / `stop_after` run a slice of it."""

  def __init__(self):
    super().__init__()
    self.convs = nn.ModuleDict()
    in_channels = 3
    for name, filters in vgg16.LAYERS:
      if filters:
        self.convs[name] = nn.Conv2d(in_channels, filters, vgg16.KERNEL_SIZE, padding='same')
        in_channels = filters

  def forward(self, x, start_after=None, stop_after=None):
    begin, end = layer_range(start_after, stop_after)
    for name, filters in vgg16.LAYERS[begin:end]:
      # max_pool2d floors odd sizes, as Keras' 'valid' pooling does.
      x = F.relu(self.convs[name](x)) if filters else F.max_pool2d(x, vgg16.POOL_SIZE)
    return x


class Head(nn.Module):
  """Pooled features [B, 512] -> sigmoid scores [B, sum(groups)] (model.MultiTaskHead)."""

  def __init__(self, hidden_units, dropout, groups):
    super().__init__()
    self.hidden = nn.ModuleDict()
    width = vgg16.OUTPUT_FEATURES
    for i, units in enumerate(hidden_units):
      self.hidden[model_lib.hidden_layer_name(i)] = nn.Linear(width, units)
      width = units
    self.dropout = nn.Dropout(dropout)
    self.outputs = nn.ModuleDict({name: nn.Linear(width, n) for n, name in
                                  zip(groups, model_lib.output_layer_names(groups))})

  def forward(self, features):
    x = features
    for layer in self.hidden.values():
      x = F.relu(layer(x))
    x = self.dropout(x)
    return torch.sigmoid(torch.cat([layer(x) for layer in self.outputs.values()], dim=-1))


class MultiTaskNet(nn.Module):
  """Preprocessed images [B, 3, H, W] -> scores [B, n] in [0, 1] (model.AestheticsModel)."""

  def __init__(self, hidden_units, dropout, groups):
    super().__init__()
    self.vgg16 = VGG16()
    self.head = Head(hidden_units, dropout, groups)

  def forward(self, x):
    return self.head(self.features(x))

  def features(self, x, start_after=None):
    """Global average pool [B, 512] of the backbone (from layer `start_after`'s output)."""
    return self.vgg16(x, start_after=start_after).mean(dim=(2, 3))

  def prefix(self, x, stop_after):
    """Output of backbone layer `stop_after` [B, C, h, w]."""
    return self.vgg16(x, stop_after=stop_after)

  def from_prefix(self, activations, start_after):
    """Scores from the output of backbone layer `start_after` (a cached prefix)."""
    return self.head(self.features(activations, start_after))

  def keras_layers(self):
    """{Keras layer name: Conv2d or Linear}, every layer with weights."""
    return {**self.vgg16.convs, **self.head.hidden, **self.head.outputs}


def torch_kernel(kernel):
  """A Keras kernel -> torch's layout: conv HWIO -> OIHW, Dense (in, out) -> (out, in)."""
  kernel = np.asarray(kernel, np.float32)
  return kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T


def load_keras_weights(net, path):
  """Copies every layer of a Keras weights file into `net`'s layer of the same name.

  The file must hold exactly `net`'s layers, with Keras' shapes of them;
  else keras_weights.WeightsError naming the file and the layer.
  """
  layers = keras_weights.read_layers(path)
  modules = net.keras_layers()
  missing, unused = sorted(set(modules) - set(layers)), sorted(set(layers) - set(modules))
  if missing or unused:
    raise keras_weights.WeightsError(
        f'{path}: layers {missing} are missing and {unused} have no counterpart in the '
        'PyTorch model.')
  with torch.no_grad():
    for name, module in modules.items():
      for var, value in (('weight', torch_kernel(layers[name]['kernel'])),
                         ('bias', np.asarray(layers[name]['bias'], np.float32))):
        param = getattr(module, var)
        if tuple(value.shape) != tuple(param.shape):
          raise keras_weights.WeightsError(
              f'{path}: layer {name!r} {var} has shape {value.shape} in torch\'s layout, '
              f'the model expects {tuple(param.shape)}.')
        param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
  return net


def build_net(plan, memory_format=MEMORY_FORMAT, weights=None):
  """The float32 net of `plan.model` with the Keras weights file `weights`
  (default: the plan's backbone_weights, which the bench fills with Keras'
  initial weights; RANDOM: torch's own initialisation, for timing alone)."""
  spec = plan.model
  net = MultiTaskNet(tuple(spec.hidden_units), spec.dropout, tuple(spec.groups))
  weights = weights or spec.backbone_weights
  if weights != RANDOM:
    load_keras_weights(net, weights)
  return net.to(memory_format=memory_format)


def set_trainable(net, trainable_layers):
  """The head and `trainable_layers` of the backbone train; the rest is frozen
  (no gradient, so no backward pass runs below the lowest trained layer)."""
  for name, conv in net.vgg16.convs.items():
    conv.requires_grad_(name in trainable_layers)
  net.head.requires_grad_(True)
  return [p for p in net.parameters() if p.requires_grad]


# ------------------------------------------------------------------ the optimizer


def learning_rate_fn(stage):
  """step -> learning rate: constant, or Keras' ExponentialDecay(lr, decay_steps,
  decay_rate, staircase) at Keras' iteration count (0 at the first step)."""
  if not stage.decay_steps:
    return lambda step: stage.learning_rate

  def decayed(step):
    p = step / stage.decay_steps
    return stage.learning_rate * stage.decay_rate ** (math.floor(p) if stage.staircase else p)
  return decayed


class KerasAdam:
  """Adam as Keras 3 updates a variable (optim.scale_by_keras_adam):

    m <- m + (g - m)(1 - b1);  v <- v + (g^2 - v)(1 - b2)
    p <- p - lr(t - 1) sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

  eps is added to sqrt(v) before the bias corrections. torch.optim.Adam adds
  it after them (m_hat / (sqrt(v_hat) + eps)), an epsilon larger by
  1 / sqrt(1 - b2^t) (32x at the first step), and has no option for Keras'
  placement. One step counter for all parameters, as Keras' `iterations`.
  """

  def __init__(self, params, learning_rate, b1, b2, eps):
    self.params = list(params)
    self.learning_rate = learning_rate if callable(learning_rate) else (
        lambda step: learning_rate)
    self.b1, self.b2, self.eps = b1, b2, eps
    self.m = [torch.zeros_like(p) for p in self.params]
    self.v = [torch.zeros_like(p) for p in self.params]
    self.iterations = 0

  def zero_grad(self):
    for p in self.params:
      p.grad = None

  @torch.no_grad()
  def step(self):
    lr = self.learning_rate(self.iterations)
    self.iterations += 1
    t = self.iterations
    alpha = lr * math.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
    for p, m, v in zip(self.params, self.m, self.v):
      if p.grad is None:
        continue
      m.lerp_(p.grad, 1 - self.b1)
      v.lerp_(p.grad * p.grad, 1 - self.b2)
      p.addcdiv_(m, v.sqrt().add_(self.eps), value=-alpha)


def stage_optimizer(net, stage):
  """Keras' Adam with the stage's numbers over the parameters it trains."""
  return KerasAdam(set_trainable(net, stage.trainable_layers), learning_rate_fn(stage),
                   stage.b1, stage.b2, stage.eps)


# ------------------------------------------------------------------ data


def image_tensor(images, memory_format=MEMORY_FORMAT):
  """uint8 RGB NHWC (numpy) -> float32 [B, 3, H, W] in `memory_format`, Keras'
  'caffe' preprocessing: BGR, ImageNet mean subtracted, unscaled."""
  x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).flip(1)
  mean = torch.tensor(vgg16.IMAGENET_MEAN_BGR, dtype=torch.float32).view(1, 3, 1, 1)
  return (x.float() - mean).contiguous(memory_format=memory_format)


def activation_tensor(activations, memory_format=MEMORY_FORMAT):
  """Cached activations (numpy): NHWC -> [B, C, h, w] in `memory_format` (no
  copy for channels_last); pooled features [B, 512] as they are."""
  x = torch.from_numpy(np.ascontiguousarray(activations, np.float32))
  return x.permute(0, 3, 1, 2).contiguous(memory_format=memory_format) if x.ndim == 4 else x


def nhwc(x):
  """[B, C, h, w] tensor -> float32 numpy [B, h, w, C]."""
  return x.permute(0, 2, 3, 1).contiguous().numpy()


@dataclasses.dataclass(frozen=True)
class Feed:
  """Where a stage's batches come from (images, or a cache of frozen layers)
  and which part of the net runs on them.

  key: IMAGE, FEATURES or PREFIX; arrays: {split: [examples, views, ...]}
  for a cache; layer: the prefix's last layer.
  """
  plan: object
  key: str = IMAGE
  arrays: dict = None
  layer: str = None
  memory_format: object = MEMORY_FORMAT

  def train(self, batch_size, epoch):
    p, split = self.plan, self.plan.data.train_split
    if self.key == IMAGE:
      return input_pipeline.train_batches(p.data, split, batch_size=batch_size, epoch=epoch,
                                          seed=p.seed)
    return input_pipeline.train_feature_batches(
        p.data, split, self.arrays[split], batch_size=batch_size, epoch=epoch, seed=p.seed,
        key=self.key)

  def eval(self, split):
    p = self.plan
    if self.key == IMAGE:
      return input_pipeline.eval_batches(p.data, split, batch_size=p.eval_batch_size)
    return input_pipeline.eval_feature_batches(p.data, split, self.arrays[split],
                                               batch_size=p.eval_batch_size, key=self.key)

  def tensors(self, batch):
    """(input, target [b, K+1]) of the batch's real rows (padding dropped: the
    loss is then their mean, as aesthetix's masked mean)."""
    keep = batch['mask']
    x = batch[self.key][keep]
    x = (image_tensor if self.key == IMAGE else activation_tensor)(x, self.memory_format)
    return x, torch.from_numpy(batch['target'][keep])

  def forward(self, net, x):
    if self.key == FEATURES:
      return net.head(x)
    if self.key == PREFIX:
      return net.from_prefix(x, self.layer)
    return net(x)


def mse(pred, target):
  """MSE over all outputs and examples; target [b, >= n] (model_output_names)."""
  return F.mse_loss(pred, target[:, :pred.shape[-1]])


# ------------------------------------------------------------------ the caches


def cache_pass(plan, net, layer, cache_dir):
  """{split: {FEATURES: [n, views, 512], PREFIX: [n, views, h, w, C]}} of the
  frozen layers, in index order: views 2 for training (as stored and mirrored),
  1 for evaluation. One pass per view: the features continue from `layer`'s
  output (no prefix when `layer` is None). The prefix goes to memory-mapped
  files in `cache_dir`, NHWC as aesthetix's."""
  d = plan.data
  arrays = {}
  for split, views in ((d.train_split, TRAIN_VIEWS), (d.val_split, EVAL_VIEWS),
                       (d.test_split, EVAL_VIEWS)):
    n = input_pipeline.num_examples(d, split)
    cache = {FEATURES: np.zeros((n, views, vgg16.OUTPUT_FEATURES), np.float32)}
    if layer is not None:
      cache[PREFIX] = np.lib.format.open_memmap(
          os.path.join(cache_dir, PREFIX_FILE.format(split=split)), mode='w+',
          dtype=np.float32,
          shape=(n, views) + vgg16.layer_output_shape(d.image_size, layer))
    for batch in input_pipeline.eval_batches(d, split, batch_size=plan.eval_batch_size):
      rows, images = batch['index'][batch['mask']], batch['image'][batch['mask']]
      for view in range(views):
        x = image_tensor(images[:, :, ::-1] if view else images)
        with torch.inference_mode():
          if layer is None:
            cache[FEATURES][rows, view] = net.features(x).numpy()
            continue
          a = net.prefix(x, layer)
          cache[FEATURES][rows, view] = net.features(a, start_after=layer).numpy()
          cache[PREFIX][rows, view] = nhwc(a)
    arrays[split] = cache
  return arrays


def prefix_below(stages):
  """The backbone layer below every layer `stages` train (plan.prefix_layer), or None."""
  return plan_lib.prefix_layer({l for s in stages for l in s.trainable_layers})


def stage_feed(plan, stage_index, caches):
  """The stage's Feed: images, or (with `caches`) features for a stage that
  trains the head alone, else the prefix below the layers it and the later
  stages train (images when there is none: a stage that trains block1_conv1).
  As aesthetix's plan with both caches on."""
  stage = plan.stages[stage_index]
  key = FEATURES if not stage.trainable_layers else PREFIX
  if caches is None or key not in caches[plan.data.train_split]:
    return Feed(plan)
  return Feed(plan, key, {split: c[key] for split, c in caches.items()},
              prefix_below(plan.stages[stage_index:]))


# ------------------------------------------------------------------ the schedule


def train_epoch(net, optimizer, feed, batch_size, epoch):
  """One epoch's training loop; (seconds, mean loss over its examples)."""
  net.train()
  start, loss_sum, count = time.perf_counter(), 0.0, 0
  for batch in feed.train(batch_size, epoch):
    x, y = feed.tensors(batch)
    optimizer.zero_grad()
    loss = mse(feed.forward(net, x), y)
    loss.backward()
    optimizer.step()
    loss_sum, count = loss_sum + loss.detach().item() * len(y), count + len(y)
  return time.perf_counter() - start, loss_sum / max(count, 1)


def predict(net, feed, split):
  """(targets [n, K+1], predictions [n, outputs]) of `split` in index order."""
  net.eval()
  true, pred = [], []
  with torch.inference_mode():
    for batch in feed.eval(split):
      x, y = feed.tensors(batch)
      pred.append(feed.forward(net, x).numpy())
      true.append(y.numpy())
  return np.concatenate(true), np.concatenate(pred)


@dataclasses.dataclass
class Run:
  """A schedule's times and test predictions.

  seconds: {stage or 'whole': wall seconds}; epoch_seconds: {stage: [seconds
  of each epoch's training loop]}; predictions: {stage: test predictions
  [n, outputs] in [0, 1]}; test_targets: [n, K+1]; validation_loss: {stage:
  [MSE on the validation split after each epoch]}.
  """
  seconds: dict
  epoch_seconds: dict
  predictions: dict
  test_targets: np.ndarray
  validation_loss: dict


def run_schedule(plan, cached, cache_dir):
  """Both stages from `plan.model.backbone_weights`, validating after every
  epoch and predicting the test split after each stage; a `Run`.

  Reads the dataset afresh through aesthetix's input pipeline, inside the
  time, as aesthetix's run does. cached: stage 1 on pooled features and
  stage 2 on block4_conv1's output, computed in one pass at stage 1's start
  (inside its time).
  """
  input_pipeline.clear_cache()
  torch.manual_seed(plan.seed)  # Dropout masks.
  start = time.perf_counter()
  net = build_net(plan)
  caches, d = None, plan.data
  seconds, epoch_seconds, predictions, val_loss = {}, {}, {}, {}
  test_targets = None
  for stage_index, stage in enumerate(plan.stages):
    name, stage_start = stage.name, time.perf_counter()
    if cached and caches is None:
      caches = cache_pass(plan, net, prefix_below(plan.stages), cache_dir)
    feed = stage_feed(plan, stage_index, caches)
    optimizer = stage_optimizer(net, stage)
    epoch_seconds[name], val_loss[name] = [], []
    for epoch in range(stage.epochs):
      s, _ = train_epoch(net, optimizer, feed, stage.batch_size,
                         stage.epoch_offset + epoch)
      epoch_seconds[name].append(s)
      true, pred = predict(net, feed, d.val_split)
      val_loss[name].append(float(np.mean((pred - true[:, :pred.shape[-1]]) ** 2)))
    test_targets, predictions[name] = predict(net, feed, d.test_split)
    seconds[name] = time.perf_counter() - stage_start
  seconds['whole'] = time.perf_counter() - start
  return Run(seconds, epoch_seconds, predictions, test_targets, val_loss)


# ------------------------------------------------------------------ throughputs


def forward_call(net, images, memory_format=MEMORY_FORMAT):
  """A call of preprocessing + VGG16 + pooling on a uint8 NHWC batch, to time."""
  def call():
    with torch.inference_mode():
      net.features(image_tensor(images, memory_format))
  return call


def stage2_step_call(plan, net, images, batch_targets, from_prefix=False,
                     memory_format=MEMORY_FORMAT):
  """A call of the stage 2 train step (forward, backward, Keras' Adam) on a
  uint8 NHWC batch, or (from_prefix) on block4_conv1's output computed once,
  to time. Each call trains `net`: pass one made for the measurement."""
  stage = plan.last_stage
  optimizer = stage_optimizer(net, stage)
  feed, x = Feed(plan, memory_format=memory_format), images
  if from_prefix:
    layer = prefix_below(plan.stages[-1:])
    with torch.inference_mode():
      x = nhwc(net.prefix(image_tensor(images, memory_format), layer))
    feed = Feed(plan, PREFIX, layer=layer, memory_format=memory_format)
  x, y = feed.tensors(dict(mask=np.ones(len(images), bool), target=batch_targets,
                           **{feed.key: x}))
  net.train()

  def call():
    optimizer.zero_grad()
    mse(feed.forward(net, x), y).backward()
    optimizer.step()
  return call


def layout_table(config, sizes, batch_size, timed_steps):
  """Markdown: forward and stage 2 step images/s (on images and from the
  prefix) per memory format and image size, on random weights and images; the
  calls of a size timed in interleaved rounds (rates.interleaved_rates)."""
  rng = np.random.default_rng(0)
  outputs = sum(plan_lib.resolve(config).model.groups)
  programs = ('forward', 'step', 'step from block4_conv1')
  lines = ['| image size | layout | ' + ' | '.join(f'{p}, images/s' for p in programs) + ' |',
           '|---:|---|' + '---:|' * len(programs)]
  for size in sizes:
    c = config.copy_and_resolve_references()
    c.dataset.image_size = size
    c = plan_lib.resolve(c)
    images = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    batch_targets = rng.uniform(size=(batch_size, outputs)).astype(np.float32)
    calls = {}
    for name, fmt in MEMORY_FORMATS.items():
      net = lambda: build_net(c, fmt, RANDOM)  # pylint: disable=cell-var-from-loop
      calls[(name, programs[0])] = forward_call(net(), images, fmt)
      for program, from_prefix in zip(programs[1:], (False, True)):
        calls[(name, program)] = stage2_step_call(c, net(), images, batch_targets,
                                                  from_prefix, fmt)
    speed = rates.interleaved_rates({k: (call, batch_size) for k, call in calls.items()},
                                    timed_steps)
    for name in MEMORY_FORMATS:
      lines.append(f'| {size} | {name} | '
                   + ' | '.join(f'{speed[(name, p)]:.1f}' for p in programs) + ' |')
  return '\n'.join(lines)


def main(argv):
  """python -m bench.torch_peer [--sizes=64,224] [--batch_size=32] [--timed_steps=5]"""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from configs import aadb  # pylint: disable=g-import-not-at-top
  del argv
  f = flags.FLAGS
  threads = configure_threads()
  load = os.getloadavg()[0]
  print(f'PyTorch {torch.__version__}, {threads} threads, {rates.cpu_model()}; batch '
        f'{f.batch_size}; images/s: the median of {f.timed_steps} rounds that time one call '
        f'of every row of a size in turn, after {rates.WARMUP_STEPS} warm-up calls each; '
        f'load average {load:.2f} before.\n')
  print(layout_table(aadb.get_config(), [int(s) for s in f.sizes], f.batch_size,
                     f.timed_steps))


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_list('sizes', ['64', '224'], 'Image sizes (pixels per side).')
  flags.DEFINE_integer('batch_size', 32, 'Images per batch.')
  flags.DEFINE_integer('timed_steps', 5, 'Timed calls per measurement.')
  app.run(main)
