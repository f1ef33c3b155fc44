"""Where a run's wall time went: named phases that partition it, compilation apart.

  with phases.clock(since=phases.process_start()) as clock:   # a run
    with phases.timed(phases.VALIDATION):                      # anywhere below it
      ...
  clock.table()   # [(phase, seconds)], adding up to clock.wall_seconds()

A clock charges every moment of its life to exactly one phase: the innermost
`timed` block open in the clock's thread, or OTHER outside every block. Time
JAX spends compiling (JAX's monitoring events) is taken out of the phase it
happened in, so that "training steps" means steps, and charged to TRACING
(tracing to a jaxpr, lowering to StableHLO: paid by every process, cache or
not) or to XLA_COMPILE (XLA's compilation, or the read of the program from
the persistent compilation cache). With `since` (the process's start), the time
before the clock opened is STARTUP: interpreter start, imports, flag checks,
JAX's backend. The rows therefore add up to the clock's wall time; what
comes after the table is read (writing it, the process's exit) is not in it.

`timed` outside any clock, or in another thread than the clock's, times
nothing: the library's functions run the same when called on their own (a
test, a notebook). Clocks nest (the innermost one is charged).
"""

import contextlib
import os
import threading
import time

STARTUP = 'start-up and imports'
DATASET = 'dataset build or read'
MODEL = 'model and initial weights'
CACHE_PASS = 'feature cache pass'
TRAIN_STEPS = 'training steps'
INPUT_WAIT = 'waiting for input'
VALIDATION = 'validation'
CHECKPOINTS = 'checkpoint saves and restores'
TEST = 'test predictions'
REPORT = 'report'
TRACING = 'compilation: tracing and lowering'
XLA_COMPILE = 'compilation: XLA, or a persistent cache read'
OTHER = 'other (in no phase)'
# Table order; phases a clock never saw are left out.
ORDER = (STARTUP, DATASET, MODEL, CACHE_PASS, TRACING, XLA_COMPILE, TRAIN_STEPS,
         INPUT_WAIT, VALIDATION, CHECKPOINTS, TEST, REPORT, OTHER)
NOT_COVERED = ("the table covers the run from its start to the end of its report; "
               "writing the table and the process's exit come after it")
# JAX's monitoring events of compilation (time spans, in seconds since the
# epoch) -> the phase they are charged to.
COMPILE_EVENTS = {'/jax/core/compile/jaxpr_trace_duration': TRACING,
                  '/jax/core/compile/jaxpr_to_mlir_module_duration': TRACING,
                  '/jax/core/compile/backend_compile_duration': XLA_COMPILE}

_CLOCKS = []
_LISTENING = []
# When this module was first imported: the process's start where /proc cannot tell.
_IMPORTED = time.time()


def process_start():
  """The process's start, seconds since the epoch (Linux: /proc; else this
  module's import)."""
  try:
    with open('/proc/self/stat') as f:
      # The command name (field 2) may hold spaces: count fields after its ')'.
      ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/stat') as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
    return boot + ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError, StopIteration):
    return _IMPORTED


class Clock:
  """Seconds per phase of one run; see the module's docstring."""

  def __init__(self, since=None):
    self.thread = threading.get_ident()
    now = time.time()
    self.start = now if since is None else min(since, now)
    self.seconds = {STARTUP: now - self.start} if since is not None else {}
    self._phase, self._mark, self._end = OTHER, time.perf_counter(), None
    # Compile spans (start, seconds with the spans inside it) of the current
    # phase: a span inside another (an eager op run while tracing) is charged
    # once, to its own phase.
    self._spans = []

  def _charge(self, now):
    self.seconds[self._phase] = self.seconds.get(self._phase, 0.0) + now - self._mark
    self._mark = now
    self._spans = []

  def switch(self, phase):
    """Charges the time since the last switch to the current phase; returns it."""
    previous = self._phase
    self._charge(time.perf_counter())
    self._phase = phase
    return previous

  def compiled(self, start, end, phase):
    """Moves the compile span [start, end] (epoch seconds) out of the current
    phase into `phase`, less the spans inside it (already moved)."""
    seconds = end - start
    while self._spans and self._spans[-1][0] >= start:  # Spans inside this one.
      seconds -= self._spans.pop()[1]
    self._spans.append((start, end - start))
    self.seconds[self._phase] = self.seconds.get(self._phase, 0.0) - seconds
    self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

  def stop(self):
    if self._end is None:
      self._charge(time.perf_counter())
      self._end = time.time()

  def wall_seconds(self):
    """From the clock's start (the process's, with `since`) to its stop (or now)."""
    return (self._end or time.time()) - self.start

  def table(self):
    """[(phase, seconds)] in ORDER, each phase the clock saw; they add up to
    `wall_seconds()` at `stop()`."""
    seconds = dict(self.seconds)
    if self._end is None:  # A running clock: the current phase up to now.
      seconds[self._phase] = seconds.get(self._phase, 0.0) + time.perf_counter() - self._mark
    return [(p, seconds[p]) for p in ORDER if p in seconds] + [
        (p, s) for p, s in seconds.items() if p not in ORDER]

  def record(self):
    """The table as results.json keeps it (JSON-ready)."""
    return dict(wall_seconds=round(self.wall_seconds(), 3),
                phases={p: round(s, 3) for p, s in self.table()},
                not_covered=NOT_COVERED)


def _listen():
  """Routes JAX's compile spans to the innermost clock (once per process)."""
  if _LISTENING:
    return
  from jax import monitoring  # pylint: disable=g-import-not-at-top

  def on_span(event, start, end, **_):
    if event in COMPILE_EVENTS and _CLOCKS and _CLOCKS[-1].thread == threading.get_ident():
      _CLOCKS[-1].compiled(start, end, COMPILE_EVENTS[event])

  monitoring.register_event_time_span_listener(on_span)
  _LISTENING.append(True)


@contextlib.contextmanager
def clock(since=None):
  """A `Clock` for the block: every `timed` phase below it is charged to it.
  since: the run's start (`process_start()`), to count the start-up before it."""
  _listen()
  c = Clock(since)
  _CLOCKS.append(c)
  try:
    yield c
  finally:
    c.stop()
    _CLOCKS.remove(c)


@contextlib.contextmanager
def timed(phase):
  """Charges the block's time to `phase` (on the innermost clock of this thread)."""
  c = _CLOCKS[-1] if _CLOCKS else None
  if c is None or c.thread != threading.get_ident() or c._end is not None:  # pylint: disable=protected-access
    yield
    return
  previous = c.switch(phase)
  try:
    yield
  finally:
    c.switch(previous)


def markdown(record):
  """A results.json timing record -> its Markdown table (seconds and shares)."""
  wall = record['wall_seconds']
  lines = ['| Phase | Seconds | Share |', '|---|---:|---:|']
  for phase, seconds in record['phases'].items():
    lines.append(f'| {phase} | {seconds:.1f} | {100 * seconds / wall if wall else 0:.1f}% |')
  lines.append(f'| **wall time** | **{wall:.1f}** | 100% |')
  return '\n'.join(lines) + f'\n\nNot covered: {record["not_covered"]}.'
