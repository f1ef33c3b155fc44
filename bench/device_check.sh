#!/usr/bin/env bash
# The prepared check of one GPU machine, in one short run (under 8 minutes on
# one current GPU): the devices, the tests that exercise the model, the train
# step and checkpoints on the GPU, then the GPU table (bench/device_check.py).
#
#   bash bench/device_check.sh                    # on the GPU machine
#   DEVICE_CHECK_CPU=1 bash bench/device_check.sh # the rehearsal, on a CPU, tiny sizes
#   DEVICE_CHECK_CPU=1 DEVICE_CHECK_FRESH_VENV=1 bash bench/device_check.sh
#       # the rehearsal in a fresh venv, installed as the GPU path installs its own
#       # (on demand: a 2.8 GB install; the tests run the rehearsal in their own
#       # venv, CI's packages, and check make_venv apart on tiny local wheels)
#
# When JAX ($PYTHON, else python3) sees no GPU, or DEVICE_CHECK_FRESH_VENV=1
# (a machine whose Python has another JAX, or lacks TensorFlow), the GPU path
# makes a venv with requirements-cuda.txt and the test runner; the fresh-venv
# rehearsal makes it the same way (make_venv) from requirements.txt, the CPU
# build: what the rehearsal passes with is what the GPU path installs, CUDA
# build aside.
#
# Everything it writes goes under $OUT when that is set, else under
# ./device_check_out: device_check.log, tests.log, device_check.json and
# device_check.md (the table for BENCHMARKS.md). It stops at the first thing
# that is wrong (no GPU, a failed install, failing tests) with one line saying
# what, instead of spending the machine's minutes.
#
# Sourced (`. bench/device_check.sh`), it defines its functions and settings
# and runs nothing: tests/device_check_test.py calls make_venv and main so.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/device_check_out}"
WORK="${DEVICE_CHECK_WORK:-}"
REHEARSAL="${DEVICE_CHECK_CPU:-0}"
FRESH_VENV="${DEVICE_CHECK_FRESH_VENV:-0}"
PY="${PYTHON:-python3}"
# Time limits of the steps, seconds (the whole check: about 7 minutes at most,
# and the install, when there is one: its limit is a backstop against a hung
# download, not an estimate).
INSTALL_LIMIT="${DEVICE_CHECK_INSTALL_LIMIT:-900}"
TESTS_LIMIT="${DEVICE_CHECK_TESTS_LIMIT:-120}"
MEASURE_LIMIT="${DEVICE_CHECK_MEASURE_LIMIT:-360}"
LOG="$OUT/device_check.log"
START=$(date +%s)

say() { echo "device_check: $*" | tee -a "$LOG"; }
fail() { say "FAILED after $(( $(date +%s) - START )) s: $*"; exit 1; }
backend() { "$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null; }
# pip's own error lines (its warnings can come last), else its last lines.
pip_error() { { grep '^ERROR' "$1" || tail -n 2 "$1"; } | tail -n 2 | tr '\n' ' '; }

# The test runner the device tests need: pytest, and pytest-xdist for the
# options in pytest.ini's addopts (-n, --dist). They are pinned in
# requirements-test.txt alone, the file CI installs (it adds requirements.txt,
# which either set has anyway).
TEST_REQUIREMENTS=requirements-test.txt

# make_venv REQUIREMENTS: a venv at $WORK/venv made by $PY, with REQUIREMENTS
# and $TEST_REQUIREMENTS installed; $PY becomes its python. Both paths make
# theirs here, so that the rehearsal installs what the GPU path does.
# --no-compile: byte-compiling all 2.8 GB of it took longer than unpacking it
# (230 s against 95 s from local wheels, development machine, loaded); Python
# compiles what the check imports as it imports it, 26 s more for a process
# importing the whole stack (every process, where PYTHONDONTWRITEBYTECODE is
# set), and the check starts two such.
make_venv() {
  local began=$(date +%s)
  say "installing $1 and $TEST_REQUIREMENTS into the venv $WORK/venv"
  "$PY" -m venv "$WORK/venv" > "$OUT/venv.log" 2>&1 \
    || fail "cannot make a virtual environment with $PY: $(tail -n 1 "$OUT/venv.log")"
  timeout "$INSTALL_LIMIT" "$WORK/venv/bin/python" -m pip install -q --no-compile -r "$1" -r "$TEST_REQUIREMENTS" \
    > "$OUT/pip.log" 2>&1
  local status=$?
  [ "$status" != 124 ] || fail "pip install -r $1 -r $TEST_REQUIREMENTS ran over ${INSTALL_LIMIT} s (see $OUT/pip.log)"
  [ "$status" = 0 ] || fail "pip install -r $1 -r $TEST_REQUIREMENTS failed (see $OUT/pip.log): $(pip_error "$OUT/pip.log")"
  PY="$WORK/venv/bin/python"
  say "installed in $(( $(date +%s) - began )) s"
}

# The check: a venv where one is needed, the devices, the tests, the table.
main() {
  WORK="${WORK:-$(mktemp -d /tmp/device_check.XXXXXX)}"
  mkdir -p "$OUT" "$WORK"
  : > "$LOG"
  if [ "$REHEARSAL" = 1 ]; then
    export JAX_PLATFORMS=cpu
    say "CPU rehearsal: every step at tiny sizes (these are not GPU numbers)"
    MEASURE_FLAGS=--rehearsal
    if [ "$FRESH_VENV" = 1 ]; then make_venv requirements.txt; fi
  else
    MEASURE_FLAGS=
    if [ "$FRESH_VENV" = 1 ]; then
      make_venv requirements-cuda.txt
    elif [ "$(backend)" != gpu ]; then
      say "JAX ($PY) sees no GPU: installing its CUDA build"
      make_venv requirements-cuda.txt
    fi
    if [ "$(backend)" != gpu ]; then
      fail "JAX ($PY) sees no GPU: $("$PY" -c 'import jax; print(jax.devices())' 2>&1 | tail -n 1)"
    fi
    export JAX_PLATFORMS=cuda  # The tests' conftest would otherwise pick the CPU.
  fi
  "$PY" -c 'import sys, jax; print("jax", jax.__version__, "in", sys.executable, jax.devices())' 2>&1 | tee -a "$LOG" \
    || fail "JAX does not start"
  command -v nvidia-smi > /dev/null && nvidia-smi -L 2>&1 | tee -a "$LOG"

  say "tests on the device (limit ${TESTS_LIMIT} s)"
  # -n 0: one module of one test, so pytest.ini's two xdist workers would only
  # start two more processes importing TensorFlow and JAX (the tests took 109 s
  # that way and 65 s in one process, development machine, loaded).
  timeout "$TESTS_LIMIT" "$PY" -m pytest -q -x -n 0 tests/device_smoke_test.py > "$OUT/tests.log" 2>&1 \
    || fail "the device tests failed or ran over ${TESTS_LIMIT} s: $(tail -n 3 "$OUT/tests.log" | tr '\n' ' ')"
  say "tests passed: $(tail -n 1 "$OUT/tests.log")"

  say "measuring (limit ${MEASURE_LIMIT} s)"
  timeout "$MEASURE_LIMIT" "$PY" -m bench.device_check --out="$OUT" --work="$WORK" $MEASURE_FLAGS \
    2>&1 | tee -a "$LOG"
  STATUS=${PIPESTATUS[0]}
  [ "$STATUS" = 0 ] || fail "a measurement failed or ran over ${MEASURE_LIMIT} s (status $STATUS; see $LOG)"
  say "done in $(( $(date +%s) - START )) s; the table is in $OUT/device_check.md, the numbers in $OUT/device_check.json"
}

[ "${BASH_SOURCE[0]}" != "$0" ] || main
