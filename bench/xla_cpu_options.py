"""XLA:CPU options, layouts, batch sizes and bfloat16 for aesthetix's two heaviest
programs: images/s of the VGG16 forward and of the stage-2 step from block4_conv1.

  python -m bench.xla_cpu_options [--sizes=64,224] [--batch_size=32] [--timed_steps=5]
  python -m bench.xla_cpu_options --variants=aesthetix,fast_math --sizes=64

One table: a row per variant, for each image size the forward's and the step's
images/s and their ratio to aesthetix's own compile options (the first row),
and how far the variant's numbers are from the first row's (forward: max
|features - reference| / max |reference|; step: the same of the trained
kernels' change over the same number of steps). Every program of a size is
compiled first; then each is called rates.WARMUP_STEPS times, and
--timed_steps rounds time one call of every program in turn (the median per
program), so that other processes' load on a shared machine falls on all rows
alike.

Options rows compile the very programs train runs (the model's forward,
`steps.make_train_step` on the cached prefix) with another option dict in
place of `parallel.compiler_options()`: aesthetix's dict (Eigen convolutions,
YNNPACK fusions off) plus one option, or XLA's own defaults. The layout rows
run a small re-implementation of the same layers on `lax.conv_general_dilated`
(NHWC/HWIO as the model, or NCHW/OIHW), dropout off, both with aesthetix's
options: their ratio to each other is the layout's effect. Where torch is
installed, a last row gives PyTorch eager's rates (bench/torch_peer.py,
oneDNN) on the same batch, timed in the same rounds: the size of the gap.
"""

import contextlib
import dataclasses
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aesthetix.model import multitask as model_lib
from aesthetix.model import vgg16
from aesthetix.runtime import parallel
from aesthetix.training import forward
from aesthetix.training import optim
from aesthetix.training import plan as plan_lib
from aesthetix.training import steps
from bench import rates
from configs import aadb

PREFIX_END = 'block4_conv1'  # The stage-2 step starts from its cached output.
REFERENCE = 'aesthetix'
XLA_DEFAULTS = None  # Options of a variant that compiles with XLA's own defaults.
MOST_IMAGES = 64  # Images drawn per size: every batch row sees the first of them.
NHWC = ('NHWC', 'HWIO', 'NHWC')
NCHW = ('NCHW', 'OIHW', 'NCHW')


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row: compile options added to aesthetix's (or XLA_DEFAULTS), a model
  dtype, a batch size (None: --batch_size), or a layout of the re-implementation."""
  name: str
  what: str
  options: dict = dataclasses.field(default_factory=dict)
  dtype: str = 'float32'
  batch_size: int = None
  layout: tuple = None


def _opt(name, what, option, value):
  return Variant(name, what, {option: value})


VARIANTS = (
    Variant(REFERENCE, "aesthetix's options: Eigen convolutions (YNNPACK fusions off)"),
    Variant('xla_defaults', "XLA's defaults (YNNPACK convolution fusions)", XLA_DEFAULTS),
    _opt('fast_math', '+ xla_cpu_enable_fast_math', 'xla_cpu_enable_fast_math', True),
    _opt('onednn', '+ xla_cpu_use_onednn', 'xla_cpu_use_onednn', True),
    _opt('onednn_custom_call', '+ xla_cpu_experimental_onednn_custom_call',
         'xla_cpu_experimental_onednn_custom_call', True),
    _opt('ynn_convolutions', '+ YNNPACK convolutions, unfused (ynn_fusion_type='
         'INDIVIDUAL_CONVOLUTION)', parallel.YNN_FUSION_OPTION,
         'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'),
    _opt('onednn_convolutions', '+ xla_cpu_experimental_onednn_fusion_type='
         'INDIVIDUAL_CONVOLUTION', 'xla_cpu_experimental_onednn_fusion_type',
         'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'),
    _opt('no_xnnpack', '+ xla_cpu_use_xnnpack=false', 'xla_cpu_use_xnnpack', False),
    _opt('xnn_graph_greedy', '+ xla_cpu_experimental_xnn_graph_fusion_mode=GREEDY',
         'xla_cpu_experimental_xnn_graph_fusion_mode', 'XNN_GRAPH_FUSION_MODE_GREEDY'),
    _opt('fast_runtime', '+ xla_cpu_opt_preset=FAST_RUNTIME', 'xla_cpu_opt_preset',
         'CPU_OPT_PRESET_FAST_RUNTIME'),
    _opt('concurrency_scheduler', '+ xla_cpu_scheduler_type=CONCURRENCY_OPTIMIZED',
         'xla_cpu_scheduler_type', 'CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED'),
    _opt('memory_scheduler', '+ xla_cpu_scheduler_type=MEMORY_OPTIMIZED',
         'xla_cpu_scheduler_type', 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'),
    _opt('no_fusion_emitters', '+ xla_cpu_use_fusion_emitters=false',
         'xla_cpu_use_fusion_emitters', False),
    _opt('tiling_propagation', '+ xla_cpu_experimental_enable_tiling_propagation',
         'xla_cpu_experimental_enable_tiling_propagation', True),
    _opt('single_thread_eigen', '+ xla_cpu_multi_thread_eigen=false',
         'xla_cpu_multi_thread_eigen', False),
    Variant('bfloat16', "config.model.dtype='bfloat16' (float32 parameters)", dtype='bfloat16'),
    Variant('batch16', 'batch 16', batch_size=16),
    Variant('batch64', 'batch 64', batch_size=64),
    Variant('nhwc', 're-implementation, NHWC / HWIO (as the model)', layout=NHWC),
    Variant('nchw', 're-implementation, NCHW / OIHW', layout=NCHW),
)
BY_NAME = {v.name: v for v in VARIANTS}

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags; defined only when run as a script, so that
  importing this module (its test) adds no flag to a process that has run.py's."""
  flags.DEFINE_list('sizes', ['64', '224'], 'Image sizes (pixels per side).')
  flags.DEFINE_integer('batch_size', 32, 'Images per batch (the batch rows set their own).')
  flags.DEFINE_integer('timed_steps', 5, 'Timed calls per measurement.')
  flags.DEFINE_list('variants', [v.name for v in VARIANTS],
                    f'Rows to measure: {", ".join(BY_NAME)}.')
  flags.DEFINE_bool('torch', True, "PyTorch eager's row, where torch is installed.")


def compile_options(variant):
  """The option dict of a variant: aesthetix's plus its own, or None for XLA's."""
  if variant.options is XLA_DEFAULTS:
    return None
  return {**(parallel.compiler_options() or {}), **variant.options}


@contextlib.contextmanager
def options_in_place(options):
  """parallel.compiler_options() returns `options` inside the block: the one
  place train's programs take their compile options from."""
  saved = parallel.compiler_options
  parallel.compiler_options = lambda: options
  try:
    yield
  finally:
    parallel.compiler_options = saved


def setup(size, dtype, batch_size, seed=0):
  """(plan, model, train state, uint8 images [B, S, S, 3], targets [B, 12]) on
  random weights; the same images for every variant of a size (their first rows)."""
  config = aadb.get_config()
  config.dataset.image_size = size
  config.model.dtype = dtype
  config.model.backbone_weights = 'random'
  plan = plan_lib.resolve(config)
  model = model_lib.build_model(plan.model)
  state = steps.initial_state(plan, model, jax.random.PRNGKey(seed))
  rng = np.random.default_rng(seed)
  most = max(batch_size, MOST_IMAGES)
  images = rng.integers(0, 256, (most, size, size, 3), dtype=np.uint8)[:batch_size]
  targets = rng.uniform(size=(most, 12)).astype(np.float32)[:batch_size]
  return plan, model, state, images, targets


@dataclasses.dataclass
class Measured:
  """A variant's two programs, ready to time: forward() and step() each run one
  batch of `images` and wait for it; `features` [B, 512] is the forward's
  output; updates() the trained kernels' change over the steps run so far."""
  images: int
  forward: object
  step: object
  features: np.ndarray
  updates: object


def forward_program(model, params, images):
  """(call, features) of the jitted backbone + pooling, compiled as
  rates.forward_call compiles it."""
  fwd = jax.jit(lambda p, x: model.apply({'params': p}, x, method=model.features))
  x = jnp.asarray(images)
  compiled = parallel.compile_lowered(fwd.lower(params, x))
  return (lambda: compiled(params, x).block_until_ready(),
          np.asarray(compiled(params, x), np.float32))


def step_program(plan, model, state, images, targets):
  """(call, updates) of train's stage-2 step on the cached block4_conv1 output,
  compiled as train compiles it; updates() -> {trained layer: kernel change}."""
  stage = plan.stage('stage2')
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  step = steps.make_train_step(model, optimizer, labels, prefix_layer=PREFIX_END)
  # float32, as the prefix cache stores it.
  prefix = np.asarray(model.apply({'params': state['params']}, images, stop_after=PREFIX_END,
                                  method=model.backbone_prefix), np.float32)
  batch = parallel.put_batch({forward.PREFIX: prefix, 'target': targets,
                              'mask': np.ones(len(images), bool)})
  before = kernels(jax.device_get(state['params']), stage.trainable_layers)
  current = [parallel.replicate(steps.stage_state(state, optimizer))]
  compiled = step.compile(current[0], batch)

  def call():  # The state is donated: each step consumes the one before.
    current[0], m = compiled(current[0], batch)
    jax.block_until_ready((current[0], m))

  def updates():
    after = kernels(parallel.unreplicate(current[0])['params'], stage.trainable_layers)
    return {name: after[name] - before[name] for name in before}
  return call, updates


def kernels(params, layers):
  """{layer: kernel (numpy)} of the backbone `layers` and the head's layers."""
  out = {name: np.asarray(params[model_lib.BACKBONE][name]['kernel']) for name in layers}
  out.update({name: np.asarray(p['kernel']) for name, p in params[model_lib.HEAD].items()})
  return out


# ------------------------------------------------- the layout re-implementation


def to_layout(kernel, layout):
  """An HWIO kernel in `layout`'s kernel order."""
  return kernel if layout == NHWC else jnp.transpose(kernel, (3, 2, 0, 1))


def conv_stack(backbone, x, layout, start_after=None):
  """vgg16.LAYERS after `start_after` on `x` in `layout`, then the global
  average pool: conv + bias + ReLU, and 2x2 max pools (a reshape and a max;
  'valid', as Keras)."""
  spatial = (1, 2) if layout == NHWC else (2, 3)
  begin = 0 if start_after is None else vgg16.LAYER_NAMES.index(start_after) + 1
  for name, filters in vgg16.LAYERS[begin:]:
    if filters:
      x = jax.lax.conv_general_dilated(x, backbone[name]['kernel'], (1, 1), 'SAME',
                                       dimension_numbers=layout)
      shape = [1, 1, 1, 1]
      shape[3 if layout == NHWC else 1] = filters
      x = jax.nn.relu(x + backbone[name]['bias'].reshape(shape))
    else:
      h, w = (x.shape[i] // 2 * 2 for i in spatial)
      if layout == NHWC:
        b, _, _, c = x.shape
        x = x[:, :h, :w].reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
      else:
        b, c = x.shape[:2]
        x = x[:, :, :h, :w].reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
  return x.mean(axis=spatial)


def layout_params(params, layout):
  """The backbone's params with kernels in `layout` (converted once, outside the timing)."""
  return {name: dict(kernel=to_layout(p['kernel'], layout), bias=p['bias'])
          for name, p in params[model_lib.BACKBONE].items()}


def to_activations(x, layout):
  """NHWC activations -> `layout`."""
  return x if layout == NHWC else jnp.transpose(x, (0, 3, 1, 2))


def layout_forward_program(state, images, layout):
  """(call, features) of preprocessing + the re-implemented VGG16 + pooling."""
  backbone = layout_params(state['params'], layout)
  fn = jax.jit(lambda b, x: conv_stack(b, to_activations(vgg16.preprocess_input(x), layout),
                                       layout))
  x = jnp.asarray(images)
  compiled = parallel.compile_lowered(fn.lower(backbone, x))
  return (lambda: compiled(backbone, x).block_until_ready(),
          np.asarray(compiled(backbone, x)))


def layout_step_program(plan, model, state, images, targets, layout):
  """(call, updates) of a stage-2 step on the re-implementation from
  block4_conv1's output: MSE, gradients of block4_conv2/3 and the head, Keras'
  Adam; dropout off. Updates in the model's HWIO order."""
  stage = plan.stage('stage2')
  params = state['params']
  backbone = layout_params(params, layout)
  # Copies: the step donates them, and the forward program shares the originals.
  trained = jax.tree_util.tree_map(jnp.copy, {
      'convs': {n: backbone[n] for n in stage.trainable_layers},
      model_lib.HEAD: params[model_lib.HEAD]})
  frozen = {n: p for n, p in backbone.items() if n not in stage.trainable_layers}
  adam = optim.keras_adam(stage)

  def loss(trained, prefix, target):
    features = conv_stack({**frozen, **trained['convs']}, prefix, layout,
                          start_after=PREFIX_END)
    pred = model.apply({'params': {model_lib.HEAD: trained[model_lib.HEAD]}}, features,
                       False, method=model.head_only)
    return jnp.mean((pred - target) ** 2)

  def step(carry, prefix, target):
    trained, opt_state = carry
    grads = jax.grad(loss)(trained, prefix, target)
    updates, opt_state = adam.update(grads, opt_state, trained)
    return optax.apply_updates(trained, updates), opt_state

  def hwio_kernels(trained):
    out = {n: np.asarray(trained['convs'][n]['kernel']) for n in stage.trainable_layers}
    if layout == NCHW:
      out = {n: k.transpose(2, 3, 1, 0) for n, k in out.items()}
    out.update({n: np.asarray(p['kernel']) for n, p in trained[model_lib.HEAD].items()})
    return out

  before = hwio_kernels(trained)
  prefix = to_activations(model.apply({'params': params}, images, stop_after=PREFIX_END,
                                      method=model.backbone_prefix), layout)
  target = jnp.asarray(targets)
  carry = [(trained, adam.init(trained))]
  compiled = parallel.compile_lowered(jax.jit(step, donate_argnums=0).lower(
      carry[0], prefix, target))

  def call():
    carry[0] = compiled(carry[0], prefix, target)
    jax.block_until_ready(carry[0])

  def updates():
    after = hwio_kernels(carry[0][0])
    return {n: after[n] - before[n] for n in before}
  return call, updates


# ------------------------------------------------------------------ the table


def prepare(variant, size, batch_size):
  """The variant's two programs at `size`, compiled with its options."""
  plan, model, state, images, targets = setup(size, variant.dtype,
                                                variant.batch_size or batch_size)
  with options_in_place(compile_options(variant)):
    if variant.layout:
      forward, features = layout_forward_program(state, images, variant.layout)
      step, updates = layout_step_program(plan, model, state, images, targets,
                                          variant.layout)
    else:
      forward, features = forward_program(model, state['params'], images)
      step, updates = step_program(plan, model, state, images, targets)
  return Measured(len(images), forward, step, features, updates)


def relative_difference(ours, reference):
  """max |ours - reference| / max |reference| over the rows and leaves both have."""
  if isinstance(reference, dict):
    return max(relative_difference(ours[k], reference[k]) for k in reference)
  rows = min(len(ours), len(reference))
  ours, reference = np.asarray(ours[:rows], np.float32), np.asarray(reference[:rows], np.float32)
  return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-30))


def torch_calls(size, batch_size):
  """{'forward', 'step'}: PyTorch eager's calls (bench/torch_peer.py) on the
  same batch as (call, images), or {} without torch."""
  try:
    from bench import torch_peer  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    if e.name != 'torch':
      raise
    return {}
  torch_peer.configure_threads()
  plan, _, _, images, targets = setup(size, 'float32', batch_size)
  net = lambda: torch_peer.build_net(plan, weights=torch_peer.RANDOM)
  return {'forward': (torch_peer.forward_call(net(), images), len(images)),
          'prefix_step': (torch_peer.stage2_step_call(plan, net(), images, targets,
                                                      from_prefix=True), len(images))}


def size_rows(variants, size, batch_size, timed_steps, with_torch):
  """{variant name: (forward images/s, step images/s, forward diff, step diff or
  None)} at one size, and PyTorch's (forward, step) images/s or None."""
  measured = {v.name: prepare(v, size, batch_size) for v in variants}
  calls = {}
  for name, m in measured.items():
    calls[(name, 'forward')] = (m.forward, m.images)
    calls[(name, 'step')] = (m.step, m.images)
  torch = torch_calls(size, batch_size) if with_torch else {}
  calls.update({('torch', what): call for what, call in torch.items()})
  speed = rates.interleaved_rates(calls, timed_steps)
  ref = measured[REFERENCE]
  ref_updates = ref.updates()
  rows = {}
  for v in variants:
    m = measured[v.name]
    # The re-implementation steps without dropout: NCHW's updates against NHWC's.
    step_ref = ref_updates if not v.layout else (
        measured['nhwc'].updates() if v.layout == NCHW and 'nhwc' in measured else None)
    same = m.images == ref.images and step_ref is not None
    rows[v.name] = (speed[(v.name, 'forward')], speed[(v.name, 'step')],
                    relative_difference(m.features, ref.features),
                    relative_difference(m.updates(), step_ref) if same else None)
  torch_row = ((speed[('torch', 'forward')], speed[('torch', 'prefix_step')]) if torch
               else None)
  return rows, torch_row


def main(argv):
  del argv
  unknown = [v for v in FLAGS.variants if v not in BY_NAME]
  if unknown:
    raise app.UsageError(f'--variants: unknown {unknown}; known: {", ".join(BY_NAME)}.',
                         exitcode=2)
  variants = [BY_NAME[REFERENCE]] + [BY_NAME[v] for v in FLAGS.variants if v != REFERENCE]
  sizes = [int(s) for s in FLAGS.sizes]
  load_before, start = os.getloadavg(), time.perf_counter()
  results, torch_rows = {}, {}
  for size in sizes:
    results[size], torch_rows[size] = size_rows(variants, size, FLAGS.batch_size, FLAGS.timed_steps,
                                                FLAGS.torch)
    print(f'[{time.perf_counter() - start:.0f} s] size {size} measured', flush=True)
  head = ['variant'] + [f'{what} {size}, images/s (x)' for size in sizes
                        for what in ('forward', 'step')] + [
                            f'max rel. diff forward / step, {size}' for size in sizes]
  lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 1)]
  ratio = lambda value, ref: f'{value:.1f} ({value / ref:.2f})'
  for v in variants:
    cells = [v.what]
    for size in sizes:
      ref, ours = results[size][REFERENCE], results[size][v.name]
      cells += [ratio(ours[0], ref[0]), ratio(ours[1], ref[1])]
    for size in sizes:
      _, _, forward_diff, step_diff = results[size][v.name]
      cells.append(f'{forward_diff:.1e} / '
                   f'{"n/a" if step_diff is None else f"{step_diff:.1e}"}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  if all(torch_rows.values()):
    cells = ['PyTorch eager (bench/torch_peer.py: oneDNN), for reference']
    for size in sizes:
      ref = results[size][REFERENCE]
      cells += [ratio(torch_rows[size][0], ref[0]), ratio(torch_rows[size][1], ref[1])]
    lines.append('| ' + ' | '.join(cells + ['n/a'] * len(sizes)) + ' |')
  d = jax.devices()[0]
  print('\n'.join([
      '', f'{rates.cpu_model()}, {os.cpu_count()} cores; JAX {jax.__version__} on '
      f'{d.device_kind} ({d.platform}); batch {FLAGS.batch_size} (the batch rows set their own); '
      f'images/s: the median of {FLAGS.timed_steps} rounds that time one call of every row in '
      f'turn, after {rates.WARMUP_STEPS} warm-up calls each; load average '
      f'{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; '
      f'{time.perf_counter() - start:.0f} s.', '',
      'forward: uint8 images -> pooled VGG16 features; step: the stage-2 train step on '
      "block4_conv1's output (block4_conv2, block4_conv3 and the head train). (x): images/s "
      "over the first row's. Differences: to the first row (forward: on its first rows for "
      'the batch rows; step: the trained kernels\' change over the same steps, n/a for the '
      "batch rows, which train on other batches); the NCHW step to the NHWC "
      "re-implementation's (both without dropout; the NHWC one's: n/a).", ''] + lines))


if __name__ == '__main__':
  define_flags()
  app.run(main)
