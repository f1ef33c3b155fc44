"""Defaults that depend on the device: which frozen layers to cache, and where.

The one rule, in one place (README: "Device-aware defaults"). An explicit
config value always wins; a field left None takes the rule of the backend the
run computes on (applied where a config is resolved: aesthetix/training/plan.py).

- The stage-1 feature cache (512 floats per image and view, 35 MB for AADB's
  training set) pays everywhere: stage 1 then trains the head alone. It lives
  in host memory, read from its file once.
- The block4_conv1 prefix cache (1.5 MiB per image and view at 224x224,
  25 GiB for AADB) lives on disk, memory-mapped. On a CPU it saves 47% of each
  stage-2 step's FLOPs and was measured 1.5-1.7x faster per step
  (BENCHMARKS.md). On an accelerator the same batch of 64 (96 MiB) would
  cross from disk or host memory for every step, while the device recomputes
  blocks 1-4 (about 9 GFLOP per image) in milliseconds: off by default there,
  until a measurement says otherwise (bench/device_check.sh measures both).
"""

import jax

# backend -> {config field: value for a None field}.
CACHE_RULES = {
    'cpu': dict(feature_cache=True, prefix_cache=True),
    'gpu': dict(feature_cache=True, prefix_cache=False),
    'tpu': dict(feature_cache=True, prefix_cache=False),
}
# Backends not named above (a plugin, say) take the accelerators' rule.
OTHER_BACKENDS = CACHE_RULES['gpu']


def backend():
  """JAX's default backend ('cpu', 'gpu', 'tpu', ...)."""
  return jax.default_backend()


def rule(name=None):
  """The defaults of backend `name` (default: JAX's default backend)."""
  return dict(CACHE_RULES.get(name or backend(), OTHER_BACKENDS))
