"""Test set-up: two CPU devices for the data-parallel tests, TensorFlow kept off GPUs.

XLA_FLAGS must be set before JAX is first imported, which is why it lives here.
"""

import collections
import os
import tempfile

from aesthetix.runtime import compilation_cache  # No JAX import: XLA_FLAGS below still count.

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=2').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The tests compile the same tiny programs many times (in this process and in
# the run.py processes they start, which inherit the environment, as
# pytest-xdist's workers do): one persistent compilation cache for the session
# turns the repeats into reads. It is the session's own, never the user's
# (run.py's processes put theirs under AESTHETIX_CACHE_DIR): the first process
# makes it, and the workers inherit its name.
if 'AESTHETIX_TEST_SESSION_CACHE' not in os.environ:
  os.environ['AESTHETIX_TEST_SESSION_CACHE'] = tempfile.mkdtemp(prefix='aesthetix_test_cache_')
os.environ['AESTHETIX_CACHE_DIR'] = os.environ['AESTHETIX_TEST_SESSION_CACHE']
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(os.environ['AESTHETIX_CACHE_DIR'], 'jax')
# Bounded as run.py bounds it, so that every process of the session (this one
# too) takes JAX's file lock around the folder.
os.environ['JAX_COMPILATION_CACHE_MAX_SIZE'] = str(compilation_cache.MAX_BYTES)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Keras runs on TensorFlow in the equivalence tests: an implementation
# independent of ours, not JAX compared with itself.
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

tf.config.set_visible_devices([], 'GPU')


# The order in which pytest-xdist's two workers take the modules (pytest.ini:
# --dist loadfile, whole modules, in the order collected: --no-loadscope-reorder).
# The longest first, so that none of them starts last and runs alone while the
# other worker idles: by their share of a whole suite's run on 2 cores
# (2026-12-02, --durations=40, the multi-process runs, the tests' own
# training runs, the paper's reproduction, the bench's runs and the GPU
# check's rehearsal first). Then the rest, most tests first (xdist's own
# default order).
FIRST_MODULES = ('multiprocess_test', 'train_test', 'reproduce_test', 'bench_test',
                 'device_check_test', 'rated_photos_test', 'model_test',
                 'export_test', 'figures_test', 'dtype_seeds_test')


def _module(item):
  return item.module.__name__.rsplit('.', 1)[-1]


def pytest_collection_modifyitems(items):
  counts = collections.Counter(_module(item) for item in items)
  first = lambda m: FIRST_MODULES.index(m) if m in FIRST_MODULES else len(FIRST_MODULES)
  items.sort(key=lambda item: (first(_module(item)), -counts[_module(item)]))  # Stable.
