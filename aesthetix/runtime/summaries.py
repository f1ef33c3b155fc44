"""TensorBoard's files: a run's curves and traces for `tensorboard --logdir W/tensorboard`.

Written with TensorBoard's own writer (`tensorboard.summary.writer.
event_file_writer.EventFileWriter`: pure Python, TensorBoard's protos, the
writer PyTorch's SummaryWriter uses), so that no TensorFlow op runs for it.
Scalars are stored as TensorBoard's `simple_value` (float32). One writer per
process that asks for one; a training run opens it on process 0 only, as
flax's examples do (every process would otherwise write the same curves).
A resumed run adds a new event file to the same folder; TensorBoard reads
them as one run. `ProfileWindow` traces a few training steps with
jax.profiler into the same folder (plugins/profile/), for the profile view.
"""

import time

from absl import logging

# Seconds between the writer thread's flushes (a live TensorBoard sees the
# curves move); `flush()` writes at once.
FLUSH_SECONDS = 30
TEXT_PLUGIN = 'text'


class Writer:
  """Scalars and text into `logdir`; `enabled` False writes nothing (and makes
  no folder)."""

  def __init__(self, logdir, enabled=True):
    self.logdir = logdir
    self._events = None
    if enabled:
      # TensorBoard is imported only by a process that writes.
      from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
      self._events = event_file_writer.EventFileWriter(logdir, flush_secs=FLUSH_SECONDS)

  @property
  def enabled(self):
    return self._events is not None

  def scalars(self, step, values):
    """{tag: number} at integer `step`, in one event."""
    if not self.enabled or not values:
      return
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in values.items()])
    self._add(step, summary)

  def text(self, step, tag, markdown):
    """A Markdown text (TensorBoard's Text tab) at `step`."""
    if not self.enabled:
      return
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import tensor_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import types_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.plugins.text import metadata  # pylint: disable=g-import-not-at-top
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING,
                                    string_val=[markdown.encode('utf-8')])
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, tensor=tensor, metadata=metadata.create_summary_metadata(tag, ''))])
    self._add(step, summary)

  def _add(self, step, summary):
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                           summary=summary))

  def flush(self):
    if self.enabled:
      self._events.flush()

  def close(self):
    if self.enabled:
      self._events.close()
      self._events = None


class ProfileWindow:
  """A jax.profiler trace of `steps` training steps of one epoch into `logdir`
  (TensorBoard's profile view reads logdir/plugins/profile/<run>/).

  The trace starts before the epoch's second step (the first compiles), or its
  first when the epoch has no more than `steps`. `at_step(i, epoch_steps,
  state)` is called before step i of the epoch, and with i == epoch_steps after
  its last; before the trace stops it waits for `state` (a pytree of arrays),
  so that the trace holds the steps' device work, not only their dispatch.
  Returns `state`.
  """

  def __init__(self, logdir, steps):
    self.logdir, self.steps = logdir, steps
    self.start = self.stop = None

  def at_step(self, i, epoch_steps, state):
    import jax  # pylint: disable=g-import-not-at-top
    if self.start is None:
      self.start = 1 if epoch_steps > self.steps else 0
      self.stop = min(self.start + self.steps, epoch_steps)
    if i == self.start:
      jax.profiler.start_trace(self.logdir)
    elif i == self.stop:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      logging.info('Traced %d training steps into %s (TensorBoard\'s profile view).',
                   self.stop - self.start, self.logdir)
    return state
