#!/usr/bin/env bash
# Runs every test of qhost and prints the total last: "N passed, N failed".
#   1. C unit tests (tests/c), normal build and ASan+UBSan build
#   2. busted specs of the Lua library (tests/lua), inside the host
#   3. end-to-end runs (tests/e2e) on the embedded broker
#   4. the same end-to-end runs on a real Apache Kafka started here, then
#      the conformance specs (tests/conformance): the same pipelines in Quix
#      Streams (a venv made by tests/quix-venv.sh) and qhost, same input
#   5. the end-to-end runs on the embedded broker with the ASan+UBSan binary
#   6. the benchmark's smoke run (10,000 messages per workload, outputs verified;
#      qhost and raw C only), then bench/guard.sh: the pipeline workload at
#      200,000 messages fails when qhost's CPU per message passes 2.5x raw C's
#   7. each libFuzzer target (tests/fuzz) for 30 s, built here with clang;
#      a target counts as one test (make fuzz runs them longer)
#   8. the rock and make install from a fresh clone, each running an example
#      (tests/install.sh)
#   9. the fault scenarios, short (tests/faults/run.lua --short, on a Kafka
#      of their own): each scenario counts as one test (make faults runs the
#      full version)
# Expects `make all` and `make SAN=1 all ctest-bins` done (make test does).
# QHOST_TEST_ONLY=c,lua,e2e,kafka,san,bench,fuzz,install,faults limits the stages.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOGS=$ROOT/build/test-logs
mkdir -p "$LOGS"
export QHOST_TEST_ROOT=$ROOT
unset QHOST_BROKER

passed=0
failed=0
only=${QHOST_TEST_ONLY:-c,lua,e2e,kafka,san,bench,fuzz,install,faults}
want() { [[ ",$only," == *",$1,"* ]]; }

# Adds the counts of a C test log ("N passed, N failed" last).
add_c_log() {
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
  if [ -z "$line" ]; then
    echo "  no summary in $1: counted as one failure" >&2
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
  failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
}

# Adds the counts of a busted TAP log; a run that crashed before its plan
# line counts as a failure.
add_tap_log() {
  local ok notok
  ok=$(grep -cE '^ok [0-9]+' "$1")
  notok=$(grep -cE '^not ok [0-9]+' "$1")
  passed=$((passed + ok))
  failed=$((failed + notok))
  if ! grep -qE '^1\.\.[0-9]+' "$1"; then
    echo "  busted did not finish ($1): counted as one failure" >&2
    failed=$((failed + 1))
  fi
  grep -E -A12 '^not ok' "$1" | head -n 200 >&2 || true
}

# The end-to-end tests' folders (tests/e2e/helper.lua H.tmpdir) go under a
# folder of the run's own, removed when all its tests passed and kept (its
# path printed) for a look at a failure.
busted_run() {  # busted_run LOG QHOST_BIN SPEC_DIR [env...]
  local log=$1 bin=$2 dir=$3 pids=$LOGS/started-pids tmp
  shift 3
  : >"$pids"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/qhost-tests.XXXXXX")
  env "$@" QHOST_BIN="$bin" QHOST_TEST_PIDS="$pids" QHOST_TEST_TMP="$tmp" "$ROOT/build/qhost" lua /usr/bin/busted \
    -o TAP --lpath="$ROOT/tests/e2e/?.lua;$ROOT/tests/lua/?.lua" "$dir" >"$log" 2>&1
  local failed_before=$failed
  add_tap_log "$log"
  # A failed test may leave its app running: end the ones the tests started.
  local pid
  while read -r pid; do
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done <"$pids"
  if [ "$failed" -eq "$failed_before" ]; then
    rm -rf "$tmp"
  else
    echo "  the failed run's test folders: $tmp" >&2
  fi
  return 0
}

if want c; then
  echo "== C unit tests" >&2
  for t in build/tests/test_* build/san/tests/test_*; do
    [ -x "$t" ] || continue
    log=$LOGS/c-$(echo "$t" | tr / _).log
    "$t" >"$log" 2>&1
    add_c_log "$log"
    tail -n 1 "$log" | sed "s|^|  $t: |" >&2
  done
fi

if want lua; then
  echo "== Lua specs (busted)" >&2
  busted_run "$LOGS/lua.log" "$ROOT/build/qhost" tests/lua
fi

if want e2e; then
  echo "== end to end, embedded broker" >&2
  busted_run "$LOGS/e2e-embedded.log" "$ROOT/build/qhost" tests/e2e
fi

if want kafka; then
  echo "== end to end, real Kafka" >&2
  KDIR=$(mktemp -d "$ROOT/build/kafka-run.XXXXXX")
  trap 'tests/kafka/kafka.sh stop "$KDIR" >/dev/null 2>&1' EXIT
  if addr=$(tests/kafka/kafka.sh start "$KDIR"); then
    echo "  Kafka at $addr ($(ls build/kafka/libs | grep -o 'kafka_2.13-[0-9.]*[0-9]' | head -n1))" >&2
    busted_run "$LOGS/e2e-kafka.log" "$ROOT/build/qhost" tests/e2e QHOST_BROKER="$addr"
    # The client specs that need a real Kafka (transactions, hand-overs).
    busted_run "$LOGS/lua-kafka.log" "$ROOT/build/qhost" tests/lua/clients_spec.lua QHOST_BROKER="$addr"
    # Conformance: the same pipelines in Quix Streams and qhost, same input.
    if quix_python=$(tests/quix-venv.sh 2>"$LOGS/quix-venv.log"); then
      echo "== conformance with Quix Streams, real Kafka" >&2
      busted_run "$LOGS/conformance.log" "$ROOT/build/qhost" tests/conformance QHOST_BROKER="$addr" \
        QHOST_QUIX_PYTHON="$quix_python"
    else
      echo "  could not make the Quix Streams venv (see $LOGS/quix-venv.log): counted as one failure" >&2
      failed=$((failed + 1))
    fi
  else
    echo "  could not start Kafka: counted as one failure" >&2
    failed=$((failed + 1))
  fi
  tests/kafka/kafka.sh stop "$KDIR" >/dev/null 2>&1
  trap - EXIT
fi

if want san; then
  echo "== end to end, embedded broker, ASan+UBSan binary" >&2
  busted_run "$LOGS/e2e-san.log" "$ROOT/build/san/qhost" tests/e2e \
    QHOST_TEST_FLOW_MESSAGES=200000 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98
fi

if want bench; then
  echo "== benchmark smoke run" >&2
  BENCH_OUT="$ROOT/build/bench-smoke" bench/run.sh --smoke --no-quix >"$LOGS/bench-smoke.log" 2>&1
  add_c_log "$LOGS/bench-smoke.log"
  # what failed, with its run's last lines, so the CI log says why
  grep -A5 -E "(VERIFY|RUN) FAILED" "$LOGS/bench-smoke.log" | sed 's/^/  /' >&2 || true
  tail -n 1 "$LOGS/bench-smoke.log" | sed 's/^/  /' >&2
  echo "== benchmark guard: pipeline CPU per message, qhost against raw C" >&2
  BENCH_OUT="$ROOT/build/bench-guard" bench/guard.sh >"$LOGS/bench-guard.log" 2>&1
  add_c_log "$LOGS/bench-guard.log"
  tail -n 2 "$LOGS/bench-guard.log" | sed 's/^/  /' >&2
fi

if want fuzz; then
  echo "== fuzzing, 30 s per target" >&2
  names=()
  for f in tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    names+=("${n#fuzz_}")
  done
  if make -s "${names[@]/#/build/fuzz/fuzz_}" >"$LOGS/fuzz-build.log" 2>&1; then
    for n in "${names[@]}"; do
      if tests/fuzz/run.sh build/fuzz 30 "$n" >"$LOGS/fuzz-$n.log" 2>&1; then
        passed=$((passed + 1))
      else
        failed=$((failed + 1))
      fi
      sed 's/^/  /' "$LOGS/fuzz-$n.log" >&2
    done
  else
    echo "  could not build the fuzz targets (see $LOGS/fuzz-build.log): counted as one failure" >&2
    failed=$((failed + 1))
  fi
fi

if want install; then
  echo "== install: luarocks make and make install from a fresh clone" >&2
  tests/install.sh >"$LOGS/install.log" 2>&1
  add_c_log "$LOGS/install.log"
  grep -E '^(ok|FAIL) ' "$LOGS/install.log" | sed 's/^/  /' >&2
fi

if want faults; then
  echo "== fault scenarios, short, real Kafka" >&2
  "$ROOT/build/qhost" lua tests/faults/run.lua --short >"$LOGS/faults.log" 2>&1
  add_c_log "$LOGS/faults.log"
  grep -E '^\| [0-9]' "$LOGS/faults.log" | sed 's/^/  /' >&2
  tail -n 1 "$LOGS/faults.log" | sed 's/^/  /' >&2
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
