"""The errors a user can cause and fix: run.py prints them as one line and exits 2.

Kept free of heavy imports, so that the entry point can name them before JAX
or TensorFlow load.
"""


class UserError(Exception):
  """Something about the user's input, files or set-up; the message says the fix."""


class ConfigError(UserError):
  """A config field holds a value the run cannot use; the message names the field."""
