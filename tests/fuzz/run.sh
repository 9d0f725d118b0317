#!/usr/bin/env bash
# Runs libFuzzer targets built by `make fuzz`, each for a number of seconds.
#   tests/fuzz/run.sh BIN_DIR SECONDS NAME...
# Each target starts from tests/fuzz/corpus/NAME (read only) and the inputs
# it found in earlier runs (BIN_DIR/corpus-NAME, where new ones go), with
# tests/fuzz/NAME.dict if there is one. Its output goes to BIN_DIR/NAME.log,
# a crashing input to BIN_DIR/NAME-crash-*. Prints one line per target;
# exits non-zero if any target found a failure.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$1 seconds=$2
shift 2
status=0
for name in "$@"; do
  bin=$dir/fuzz_$name log=$dir/$name.log
  mkdir -p "$dir/corpus-$name"
  dict=()
  [ -f "$ROOT/tests/fuzz/$name.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$name.dict")
  # -max_len: CSV inputs may span the reader's 64 KiB chunks.
  max_len=20000
  [ "$name" = csv ] && max_len=140000
  # -timeout: an input taking seconds is a hang. -detect_leaks=0: Lua frees
  # in its own time, so almost no input frees what it allocates and the
  # per-input leak check would run for nearly every input (a hundred times
  # slower); LeakSanitizer still checks at exit.
  "$bin" -max_total_time="$seconds" -timeout=20 -max_len="$max_len" -detect_leaks=0 -print_final_stats=1 \
    -artifact_prefix="$dir/$name-" "${dict[@]}" "$dir/corpus-$name" "$ROOT/tests/fuzz/corpus/$name" \
    >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$')
  if [ "$rc" -eq 0 ]; then
    echo "fuzz_$name: ${execs:-?} runs in ${seconds}s, no failure"
  else
    echo "fuzz_$name: FAILED (exit $rc) after ${execs:-?} runs; see $log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_|artifact_prefix|Test unit written)' "$log" | head -n 8 | sed 's/^/  /'
    status=1
  fi
done
exit $status
