#!/usr/bin/env bash
# bench/guard.sh: a regression guard on the per-message path, for CI.
# Runs the pipeline workload (200,000 messages, 3 repetitions, outputs
# verified) for qhost and for raw C on one Kafka, and fails when qhost's
# median CPU per message is more than LIMIT times raw's. A ratio within one
# run: the machine's speed and load hit both alike. Ten runs in a row on a
# 2-core machine gave 1.59 to 2.15 (median 1.85); 2.5 fails a per-message
# path that got a third slower, and no run of the ten came near it.
#   bench/guard.sh [--limit X]     (default QHOST_GUARD_LIMIT or 2.5)
# Writes under BENCH_OUT (default build/bench-guard); last line
# "1 passed, 0 failed" or "0 passed, 1 failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LIMIT=${QHOST_GUARD_LIMIT:-2.5}
N=${QHOST_GUARD_N:-200000}
while [ $# -gt 0 ]; do
  case $1 in
    --limit) LIMIT=$2; shift ;;
    *) echo "usage: bench/guard.sh [--limit X]" >&2; exit 2 ;;
  esac
  shift
done
OUT=${BENCH_OUT:-$ROOT/build/bench-guard}

rm -f "$OUT/results.json"
if ! BENCH_OUT="$OUT" bench/run.sh --n "$N" --reps 3 --workloads pipeline --no-quix --impls qhost,raw; then
  echo "guard: a pipeline run failed or its output did not verify (above)"
  echo "0 passed, 1 failed"
  exit 1
fi

# The ratio from results.json (bench/report.lua's "ratios"), read with
# qhost's own JSON decoder.
ratio=$("$ROOT/build/qhost" lua /dev/stdin "$OUT/results.json" <<'EOF'
local codec = require("qhost.codec")
local f = io.open(arg[1])
if not f then return end
local results = codec.json_decode(f:read("*a"))
f:close()
local r = results and results.ratios and results.ratios.pipeline
if r and r.cpu_per_msg_qhost_over_raw then print(string.format("%.2f", r.cpu_per_msg_qhost_over_raw)) end
EOF
)
if [ -z "$ratio" ]; then
  echo "guard: no CPU ratio in $OUT/results.json"
  echo "0 passed, 1 failed"
  exit 1
fi
if awk -v r="$ratio" -v l="$LIMIT" 'BEGIN { exit !(r <= l) }'; then
  echo "guard: pipeline CPU per message, qhost/raw = $ratio (limit $LIMIT): ok"
  echo "1 passed, 0 failed"
else
  echo "guard: pipeline CPU per message, qhost/raw = $ratio, over the limit $LIMIT: the per-message path got slower"
  echo "0 passed, 1 failed"
  exit 1
fi
