"""The phase table: every moment charged to one phase, compilation taken out of
the phase it happened in, and the start-up counted from the process's start."""

import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetix.runtime import phases

SLEEP_S = 0.05


def total(clock):
  return sum(s for _, s in clock.table())


def test_phases_partition_the_wall_time_innermost_wins():
  marks = []
  with phases.clock() as clock:
    time.sleep(SLEEP_S)  # OTHER.
    with phases.timed(phases.VALIDATION):
      marks.append(time.perf_counter())
      time.sleep(SLEEP_S)
      with phases.timed(phases.CHECKPOINTS):
        marks.append(time.perf_counter())
        time.sleep(2 * SLEEP_S)
        marks.append(time.perf_counter())
      time.sleep(SLEEP_S)
      marks.append(time.perf_counter())
  table = dict(clock.table())
  assert list(table) == [phases.VALIDATION, phases.CHECKPOINTS, phases.OTHER]
  assert total(clock) == pytest.approx(clock.wall_seconds(), abs=2e-3)
  # Each block's own time (a loaded machine oversleeps: measured, not assumed).
  inner = marks[2] - marks[1]
  assert table[phases.CHECKPOINTS] == pytest.approx(inner, abs=2e-3)
  assert table[phases.VALIDATION] == pytest.approx(marks[3] - marks[0] - inner, abs=2e-3)
  assert table[phases.OTHER] == pytest.approx(
      clock.wall_seconds() - (marks[3] - marks[0]), abs=2e-3)
  assert phases.STARTUP not in table  # No `since`: no start-up row.


def test_nested_compile_spans_are_counted_once_each_in_its_own_phase():
  clock = phases.Clock()
  clock.switch(phases.TRAIN_STEPS)
  # A backend compile (2 s) inside a trace (5 s in all), then a lone one (1 s).
  clock.compiled(11.0, 13.0, phases.XLA_COMPILE)
  clock.compiled(10.0, 15.0, phases.TRACING)
  clock.compiled(20.0, 21.0, phases.XLA_COMPILE)
  clock.stop()
  table = dict(clock.table())
  assert table[phases.TRACING] == pytest.approx(3.0)
  assert table[phases.XLA_COMPILE] == pytest.approx(3.0)
  # Six seconds moved out of the steps; the rows still add up to the wall time.
  assert table[phases.TRAIN_STEPS] == pytest.approx(-6.0, abs=0.05)
  assert total(clock) == pytest.approx(clock.wall_seconds(), abs=2e-3)


def test_a_real_compilation_leaves_the_phase_it_happened_in():
  f = jax.jit(lambda x: jnp.sin(x) * 3.0 + jnp.cos(x[::-1]))  # A new program.
  x = np.arange(17, dtype=np.float32)
  with phases.clock() as clock:
    with phases.timed(phases.TEST):
      start = time.perf_counter()
      jax.block_until_ready(f(x))
      block = time.perf_counter() - start
  table = dict(clock.table())
  compiled = table[phases.TRACING] + table[phases.XLA_COMPILE]
  assert table[phases.TRACING] > 0 and table[phases.XLA_COMPILE] > 0
  assert compiled + table[phases.TEST] == pytest.approx(block, abs=0.01)
  assert compiled > table[phases.TEST]  # Running 17 sines is quicker than compiling them.


def test_timed_outside_a_clock_or_in_another_thread_times_nothing():
  with phases.timed(phases.REPORT):  # No clock: runs, records nothing.
    pass
  with phases.clock() as clock:
    worker = threading.Thread(target=lambda: phases.timed(phases.REPORT).__enter__())
    worker.start()
    worker.join()
    time.sleep(SLEEP_S)
  assert [p for p, _ in clock.table()] == [phases.OTHER]


def test_the_start_up_row_counts_from_the_process_start():
  code = ('import time; time.sleep(1.0); from aesthetix.runtime import phases; '
          'import sys; c = phases.Clock(since=phases.process_start()); '
          'print(dict(c.table())[phases.STARTUP])')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, timeout=60)
  startup = float(out.stdout)
  assert 1.0 <= startup < 10.0, startup  # The sleep, Python's start and the import.


def test_markdown_lists_every_phase_and_the_wall_time():
  record = dict(wall_seconds=10.0, phases={phases.STARTUP: 4.0, phases.OTHER: 6.0},
                not_covered=phases.NOT_COVERED)
  text = phases.markdown(record)
  assert f'| {phases.STARTUP} | 4.0 | 40.0% |' in text
  assert '| **wall time** | **10.0** | 100% |' in text
  assert phases.NOT_COVERED in text
