"""What a run's log shows: absl at INFO, without the notes of libraries that tell
a user nothing (a library's inner steps, read-only notes about a workdir that
is only read)."""

import logging as std_logging
import os

from absl import logging

# (where the record comes from, the lowest level kept, messages dropped at any level).
QUIET = (
    ('/orbax/', std_logging.WARNING, ('Given directory is read only',
                                      'CheckpointManagerOptions.read_only=True')),
    ('/tensorflow_datasets/', std_logging.WARNING, ('has no dataset_info.json',
                                                    'Using custom data configuration')),
    ('/jax/_src/xla_bridge.py', std_logging.WARNING, ()),
)


def keep(record):
  """Whether a log record reaches the run's log."""
  for where, level, drop in QUIET:
    if where in record.pathname:
      message = str(record.msg)
      return record.levelno >= level and not any(m in message for m in drop)
  return True


def setup():
  """INFO logs with the libraries' noise filtered; TensorFlow, which only feeds
  data here, without its C++ start-up notes."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(keep)
