"""A stand-in for `aesthetix.progress.bar` that records what a long step reported."""

import contextlib


class Recorder:
  """Every bar opened: its description, its total, and the sum of its updates."""

  def __init__(self):
    self.bars = []

  def __call__(self, total, desc, **unused_kwargs):
    record = {'desc': desc, 'total': total, 'done': 0}
    self.bars.append(record)

    class Bar(contextlib.AbstractContextManager):
      def update(self, n=1):
        record['done'] += n

      def set_postfix(self, **unused):
        pass

      def close(self):
        pass

      def __exit__(self, *exc):
        return None

    return Bar()
