"""Immutable copies of the plain values a config holds (dicts, lists), for the
resolved descriptions of a run that every module receives and none may change."""

import types


def freeze(value):
  """dicts -> read-only mappings, lists and tuples -> tuples, all the way down."""
  if isinstance(value, dict) or isinstance(value, types.MappingProxyType):
    return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
  if isinstance(value, (list, tuple)):
    return tuple(freeze(v) for v in value)
  return value


def thaw(value):
  """The inverse of `freeze`: plain dicts and lists, for libraries that want them."""
  if isinstance(value, types.MappingProxyType) or isinstance(value, dict):
    return {k: thaw(v) for k, v in value.items()}
  if isinstance(value, tuple):
    return [thaw(v) for v in value]
  return value
