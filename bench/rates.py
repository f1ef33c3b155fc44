"""Throughput of aesthetix's programs, measured the way train compiles and runs them.

Shared by the benchmarks (keras_vs_aesthetix, device_check). No TensorFlow or
Keras here: the device check runs these where only JAX is installed.
"""

import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from aesthetix.runtime import parallel
from aesthetix.training import forward
from aesthetix.training import optim
from aesthetix.training import plan as plan_lib
from aesthetix.training import steps

WARMUP_STEPS = 2  # Calls before timing: tracing, compilation, first allocations.


def matmul_gflops(n, reps=5):
  """Best measured float32 [n, n] @ [n, n] rate of JAX's default device, GFLOP/s."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  best = float('inf')
  for _ in range(reps):
    start = time.perf_counter()
    dot(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best / 1e9


def cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def median_rate(call, batch_images, timed_steps):
  """Images/s of `call()` (which waits for its result): the median of `timed_steps`
  calls after warm-up, robust to other processes' bursts on a shared machine."""
  for _ in range(WARMUP_STEPS):
    call()
  seconds = []
  for _ in range(timed_steps):
    start = time.perf_counter()
    call()
    seconds.append(time.perf_counter() - start)
  return batch_images / float(np.median(seconds))


def interleaved_rates(calls, timed_steps):
  """{key: images/s} of {key: (call, images per call)}: WARMUP_STEPS calls of
  each, then `timed_steps` rounds that time one call of every key in turn, the
  median per key. Interleaved, so that another process's load on a shared
  machine falls on every key alike, not on the few measured while it ran."""
  for call, _ in calls.values():
    for _ in range(WARMUP_STEPS):
      call()
  seconds = {key: [] for key in calls}
  for _ in range(timed_steps):
    for key, (call, _) in calls.items():
      start = time.perf_counter()
      call()
      seconds[key].append(time.perf_counter() - start)
  return {key: images / float(np.median(seconds[key])) for key, (_, images) in calls.items()}


def flops_of(compiled):
  """FLOPs XLA counts in a compiled program (cost_analysis: a dict, or a list of them)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost['flops'])


def forward_call(model, params, images):
  """(call, FLOPs per image) of the jitted backbone + pooling on one batch,
  compiled as train's programs are; call() runs it once and waits."""
  fwd = jax.jit(lambda p, x: model.apply({'params': p}, x, method=model.features))
  x = jnp.asarray(images)
  compiled = parallel.compile_lowered(fwd.lower(params, x))
  return (lambda: compiled(params, x).block_until_ready(),
          flops_of(compiled) / len(images))


def forward_rate(model, params, images, timed_steps):
  """(images/s, FLOPs per image) of `forward_call`."""
  # Timed as compiled: one compilation, not two.
  call, flops = forward_call(model, params, images)
  return median_rate(call, len(images), timed_steps), flops


def stage2_step_call(plan, model, state, batch, from_prefix=False):
  """(call, FLOPs per image) of the stage 2 train step on `batch` (a host
  batch of the global batch size, with 'image'); call() runs one step and
  waits (each trains on from the one before).

  from_prefix: the step as `train` runs it with the prefix cache, on the
  cached output of the frozen layers below stage 2's; else on images.
  """
  stage = plan.stage('stage2')
  optimizer = optim.stage_optimizer(stage, state['params'])
  labels = optim.stage_labels(state['params'], stage.trainable_layers)
  layer = plan_lib.prefix_layer(stage.trainable_layers) if from_prefix else None
  step = steps.make_train_step(model, optimizer, labels, prefix_layer=layer)
  batch = dict(batch)
  if layer is not None:
    batch[forward.PREFIX] = np.asarray(model.apply(
        {'params': state['params']}, batch.pop('image'), stop_after=layer,
        method=model.backbone_prefix))
  batch = parallel.put_batch(batch)
  replicated = parallel.replicate(steps.stage_state(state, optimizer))
  step = step.compile(replicated, batch)  # As train compiles it; timed too, not compiled twice.
  # A per-device program: FLOPs of one device's share of the batch.
  flops_per_image = flops_of(step) / (stage.batch_size // parallel.device_count())
  current = [replicated]

  def call():  # The state is donated: each step consumes the one before.
    current[0], m = step(current[0], batch)
    jax.block_until_ready((current[0], m))

  return call, flops_per_image


def stage2_step_rate(plan, model, state, batch, timed_steps, from_prefix=False):
  """(images/s, FLOPs per image) of `stage2_step_call`."""
  call, flops = stage2_step_call(plan, model, state, batch, from_prefix)
  return median_rate(call, plan.stage('stage2').batch_size, timed_steps), flops
