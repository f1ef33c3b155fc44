"""The command line's own checks, made before JAX or TensorFlow load: the flags a
mode needs, the config file and its overrides, each mistake as one line.

Every message names the flag as the user typed it and says the fix; the
arguments come from the argv that run.py parsed.
"""

import difflib
import glob
import importlib.util
import os
import sys

from absl import flags

from aesthetix.cli import flags as cli_flags
from aesthetix.runtime import errors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Files of configs/ that are not a run's config.
NOT_CONFIGS = ('common.py', 'paper_numbers.py', '__init__.py')
CONFIG_PREFIX = '--config.'


def flag_argument(argv, name):
  """The value of --`name` as typed in `argv` (--name=V or --name V; the last
  one wins), or None."""
  value = None
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{name}' and i + 1 < len(args):
      value = args[i + 1]
  return value


def config_argument(argv):
  """The --config value as typed in `argv`, or None."""
  return flag_argument(argv, 'config')


def overrides(argv):
  """The dotted fields of the --config.x.y=... arguments in `argv`, in order."""
  return [a[len(CONFIG_PREFIX):].split('=', 1)[0] for a in argv[1:]
          if a.startswith(CONFIG_PREFIX)]


def mode_argument(argv):
  """The --mode value as typed in `argv`, or None."""
  return flag_argument(argv, 'mode')


def repo_path(relative):
  """`relative`, a path inside the repository, as it can be typed from here."""
  path = os.path.join(REPO, relative)
  near = os.path.relpath(path)
  return path if near.startswith(os.pardir) else near


def with_default_config(argv, defaults):
  """`argv` with --config=<the mode's default config> inserted when it gives no
  --config and its mode has one in `defaults` ({mode: config path in the
  repository}), so that the --config.x overrides of the command line parse
  (absl reads the config file before any mode is known)."""
  default = defaults.get(mode_argument(argv))
  if default is None or config_argument(argv) is not None:
    return list(argv)
  return [argv[0], f'--config={repo_path(default)}', *argv[1:]]


def config_files():
  """The run configs of configs/, as paths relative to the repository."""
  return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
                if os.path.basename(p) not in NOT_CONFIGS)


def _default_config(argument):
  """The ConfigDict that `argument` ('path[:variant]') names, loaded as
  ml_collections loads it, or None when it does not load."""
  path, _, variant = argument.partition(':')
  if not os.path.isfile(path):
    return None
  spec = importlib.util.spec_from_file_location('_aesthetix_config_check', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()
  except Exception:  # pylint: disable=broad-except
    return None  # The config's own error is reported by config_error.


def unknown_field(config, dotted):
  """(the missing field, a close name or None) of override `dotted` on `config`,
  or None when every part of it exists."""
  node = config
  for part in dotted.split('.'):
    keys = list(node.keys()) if hasattr(node, 'keys') else []
    if part not in keys:
      near = difflib.get_close_matches(part, keys, n=1)
      return part, near[0] if near else None
    node = node[part]
  return None


def unknown_override_error(argument, dotted_fields):
  """One line for the first of `dotted_fields` (--config.x.y overrides) that
  names no field of the config file `argument`, or None."""
  config = _default_config(argument) if argument else None
  if config is None:
    return None
  for dotted in dotted_fields:
    missing = unknown_field(config, dotted)
    if missing:
      field, near = missing
      return (f'{CONFIG_PREFIX}{dotted}: {argument} has no field {field!r}'
              + (f' (did you mean {near!r}?)' if near else '') + '.')
  return None


def _error_chain(error):
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__


def config_error(error, argument, dotted_fields=()):
  """One line for a config file `argument` (as typed) that does not load, or an
  override (of `dotted_fields`) that does not fit."""
  argument = argument or '?'
  unknown = unknown_override_error(argument, dotted_fields)
  if unknown:
    return unknown
  for e in _error_chain(error):
    if isinstance(e, FileNotFoundError) or not os.path.isfile(argument.partition(':')[0]):
      return (f'--config={argument}: no such file. Config files: '
              f'{", ".join(config_files())} (a variant after a colon, e.g. '
              'configs/aadb.py:single_task).')
    if isinstance(e, errors.UserError):
      return str(e)
  last = list(_error_chain(error))[-1]
  text = (str(last).strip().splitlines() or [''])[-1]
  return f'--config={argument} does not load ({type(last).__name__}: {text}).'


def flag_error(error, argv):
  """One line for a flag absl could not parse, with the nearest flag name."""
  text = str(error).strip().splitlines()[0]
  unknown = getattr(error, 'flagname', None)
  if isinstance(error, flags.UnrecognizedFlagError) and unknown:
    if unknown.startswith('config.') and config_argument(argv) is None:
      return f'--{unknown} overrides a config field, but no --config is given.'
    if unknown.startswith('config.'):
      # The field, its nearest name, or the config's fields (--helpfull lists
      # only the overrides the command line gives, so it cannot show them).
      argument = config_argument(argv)
      config = _default_config(argument)
      return (unknown_override_error(argument, [unknown[len('config.'):]])
              or f'--{unknown}: no such field in --config={argument}'
              + (f'; its fields: {", ".join(sorted(config.keys()))}.' if config else '.'))
    near = difflib.get_close_matches(unknown, list(flags.FLAGS), n=1)
    return f'Unknown flag --{unknown}' + (f'; did you mean --{near[0]}?' if near else '.')
  return text.replace('flag --', '--', 1)


def is_config_error(error):
  """Whether a parse error is about the config file or its overrides (ml_collections
  raises AttributeError or KeyError for a field that does not exist)."""
  return (isinstance(error, (AttributeError, KeyError))
          or str(error).startswith(('flag --config=', 'flag --config ')))


def parse_error(error, argv):
  """The one line for a command line `argv` that absl or ml_collections refused."""
  if is_config_error(error):
    return config_error(error, config_argument(argv), overrides(argv))
  return flag_error(error, argv)


def load_config():
  """The --config, loaded (ml_collections defers a failed load to its first use)."""
  try:
    config = cli_flags.CONFIG.value
    if config is not None:
      config.keys()
  except Exception as e:  # pylint: disable=broad-except
    raise errors.UserError(config_error(e, flags.FLAGS['config'].config_filename,
                                        cli_flags.config_overrides())) from e
  return config


def check_flags(mode):
  """The flags `mode` needs are given; a warning on stderr for each one it ignores."""
  missing = [n for n in mode.needs if not (cli_flags.given(n) if n == 'config'
                                           else cli_flags.value(n))]
  if missing:
    raise errors.UserError(f'--mode={mode.name} needs ' + ' and '.join(
        f'--{n}={cli_flags.VALUES.get(n, n.upper())}' for n in missing) + '.')
  for name in sorted(mode.ignored):
    if cli_flags.given(name):
      why = (" (it uses the workdir's own config.json)" if name == 'config'
             and mode.uses_workdir_config else '')
      print(f'warning: --mode={mode.name} ignores --{name}{why}.', file=sys.stderr)
  given = cli_flags.config_overrides()
  if given and 'config' not in mode.needs + mode.reads:
    print(f'warning: --mode={mode.name} ignores {", ".join("--" + n for n in given)}.',
          file=sys.stderr)
