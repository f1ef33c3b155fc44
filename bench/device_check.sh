#!/usr/bin/env bash
# The prepared check of one GPU machine, in one short run (under 8 minutes on
# one current GPU): the devices, the tests that exercise the model, the train
# step and checkpoints on the GPU, then the GPU table (bench/device_check.py).
#
#   bash bench/device_check.sh                    # on the GPU machine
#   DEVICE_CHECK_CPU=1 bash bench/device_check.sh # the rehearsal, on a CPU, tiny sizes
#
# Everything it writes goes under $OUT when that is set, else under
# ./device_check_out: device_check.log, tests.log, device_check.json and
# device_check.md (the table for BENCHMARKS.md). It stops at the first thing
# that is wrong (no GPU, a failed install, failing tests) with one line saying
# what, instead of spending the machine's minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_check_out}"
WORK="${DEVICE_CHECK_WORK:-$(mktemp -d /tmp/device_check.XXXXXX)}"
REHEARSAL="${DEVICE_CHECK_CPU:-0}"
PY="${PYTHON:-python3}"
# Time limits of the steps, seconds (the whole check: about 7 minutes at most).
TESTS_LIMIT="${DEVICE_CHECK_TESTS_LIMIT:-120}"
MEASURE_LIMIT="${DEVICE_CHECK_MEASURE_LIMIT:-360}"
mkdir -p "$OUT" "$WORK"
LOG="$OUT/device_check.log"
: > "$LOG"
START=$(date +%s)

say() { echo "device_check: $*" | tee -a "$LOG"; }
fail() { say "FAILED after $(( $(date +%s) - START )) s: $*"; exit 1; }
backend() { "$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null; }

if [ "$REHEARSAL" = 1 ]; then
  export JAX_PLATFORMS=cpu
  say "CPU rehearsal: every step at tiny sizes (these are not GPU numbers)"
  MEASURE_FLAGS=--rehearsal
else
  MEASURE_FLAGS=
  if [ "$(backend)" != gpu ]; then
    say "JAX ($PY) sees no GPU: installing requirements-cuda.txt into $WORK/venv"
    "$PY" -m venv "$WORK/venv" || fail "cannot make a virtual environment with $PY"
    "$WORK/venv/bin/pip" install -q -r requirements-cuda.txt > "$OUT/pip.log" 2>&1 \
      || fail "pip install -r requirements-cuda.txt failed: $(tail -n 2 "$OUT/pip.log" | tr '\n' ' ')"
    PY="$WORK/venv/bin/python"
    [ "$(backend)" = gpu ] || fail "JAX sees no GPU even with its CUDA build: $("$PY" -c 'import jax; print(jax.devices())' 2>&1 | tail -n 1)"
  fi
  export JAX_PLATFORMS=cuda  # The tests' conftest would otherwise pick the CPU.
fi
"$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())' 2>&1 | tee -a "$LOG" \
  || fail "JAX does not start"
command -v nvidia-smi > /dev/null && nvidia-smi -L 2>&1 | tee -a "$LOG"

say "tests on the device (limit ${TESTS_LIMIT} s)"
timeout "$TESTS_LIMIT" "$PY" -m pytest -q -x tests/device_smoke_test.py > "$OUT/tests.log" 2>&1 \
  || fail "the device tests failed or ran over ${TESTS_LIMIT} s: $(tail -n 3 "$OUT/tests.log" | tr '\n' ' ')"
say "tests passed: $(tail -n 1 "$OUT/tests.log")"

say "measuring (limit ${MEASURE_LIMIT} s)"
timeout "$MEASURE_LIMIT" "$PY" -m bench.device_check --out="$OUT" --work="$WORK" $MEASURE_FLAGS \
  2>&1 | tee -a "$LOG"
STATUS=${PIPESTATUS[0]}
[ "$STATUS" = 0 ] || fail "a measurement failed or ran over ${MEASURE_LIMIT} s (status $STATUS; see $LOG)"
say "done in $(( $(date +%s) - START )) s; the table is in $OUT/device_check.md, the numbers in $OUT/device_check.json"
