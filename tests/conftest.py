"""Test set-up: two CPU devices for the data-parallel tests, TensorFlow kept off GPUs.

XLA_FLAGS must be set before JAX is first imported, which is why it lives here.
"""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=2').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Keras runs on TensorFlow in the equivalence tests: an implementation
# independent of ours, not JAX compared with itself.
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

tf.config.set_visible_devices([], 'GPU')
