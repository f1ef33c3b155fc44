"""sha256 digests of trees of arrays: how a checkpoint and the params file
(params_file.py) know that what they read back is what was written."""

import hashlib

import jax
import numpy as np


def _canonical(leaf):
  """A leaf as the digest reads it: integers as 64-bit (a restore widens them
  to the dtype of the state it is shaped like: training saves the step as
  int32, a fresh state holds an int64), floats in their own dtype."""
  a = np.asarray(leaf)
  if np.issubdtype(a.dtype, np.signedinteger):
    a = a.astype(np.int64)
  elif np.issubdtype(a.dtype, np.unsignedinteger):
    a = a.astype(np.uint64)
  return np.ascontiguousarray(a)


def tree_digest(tree):
  """sha256 (hex) of a tree of arrays: each leaf's dtype, shape and bytes
  (`_canonical`), in tree order: the same for the arrays saved and restored."""
  h = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(tree):
    a = _canonical(leaf)
    h.update(f'{a.dtype.str}{a.shape}'.encode())
    h.update(a.reshape(-1).view(np.uint8))
  return h.hexdigest()


def nonfinite_leaf(tree):
  """The path of the first leaf of `tree` holding a NaN or an infinity, or None."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
      return jax.tree_util.keystr(path)
  return None
