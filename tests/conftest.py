"""Test set-up: two CPU devices for the data-parallel tests, TensorFlow kept off GPUs.

XLA_FLAGS must be set before JAX is first imported, which is why it lives here.
"""

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


# Modules that compile little of their own: run last, when the session's
# compilation cache holds the programs they share with the others.
LAST_MODULES = ('reproduce_test', 'device_check_test')


def pytest_collection_modifyitems(items):
  late = lambda item: (LAST_MODULES.index(item.module.__name__.rsplit('.', 1)[-1])
                       if item.module.__name__.rsplit('.', 1)[-1] in LAST_MODULES else -1)
  items.sort(key=late)  # Stable: the others keep their order.
