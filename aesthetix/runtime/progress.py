"""Progress bars for every long step: epochs, the cache pass, scoring, Grad-CAM.

One place, so that each bar shows the same things (count, rate, time left)
and only process 0 of a multi-process run draws them.
"""

import jax
import tqdm


def bar(total, desc, unit='image', leave=False, enabled=True):
  """A tqdm bar of `total` units (images or steps): count, units/s and ETA."""
  return tqdm.tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                   disable=not enabled or jax.process_index() != 0)
