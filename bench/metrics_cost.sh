#!/usr/bin/env bash
# The CPU cost of metrics_port on the pipeline workload: bench/run.sh runs
# the same qhost build twice side by side, as "qhost" (no metrics) and as
# "qhost2" (QHOST_METRICS_PORT set, so the app counts and serves /metrics),
# while curl scrapes /metrics every second, as Prometheus would (more often
# than its usual 15 s). Prints the pipeline table of the results: compare
# the CPU columns of qhost and qhost2.
#   bench/metrics_cost.sh [--reps R] [--n N]      (default: 3 reps of 1,000,000)
# Any qhost app serves metrics with QHOST_METRICS_PORT set, the bench's too:
# QHOST_METRICS_PORT=9187 bench/run.sh runs every workload with them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/build/bench-metrics}
QHOST=${QHOST:-$ROOT/build/qhost}
PORT=${METRICS_PORT:-9187}
mkdir -p "$OUT"

WRAPPER=$OUT/qhost-with-metrics
printf '#!/bin/sh\nQHOST_METRICS_PORT=%d exec %q "$@"\n' "$PORT" "$QHOST" >"$WRAPPER"
chmod +x "$WRAPPER"

# The scraper: every second, whichever app is up (none between runs).
( while :; do curl -s -m 2 "http://127.0.0.1:$PORT/metrics" >/dev/null 2>&1 || true; sleep 1; done ) &
SCRAPER=$!
trap 'kill "$SCRAPER" 2>/dev/null' EXIT

BENCH_OUT=$OUT QHOST=$QHOST QHOST2=$WRAPPER "$ROOT/bench/run.sh" --workloads pipeline \
  --impls qhost,qhost2 --no-quix "$@" >"$OUT/run.log" 2>&1 || { tail -n 30 "$OUT/run.log"; exit 1; }
awk '/^## 1\. Pipeline/ { p = 1 } /^## / && !/^## 1\. Pipeline/ { p = 0 } p' "$OUT/results.md"
grep -iE 'qhost2' "$OUT/results.md" | grep -v '^| qhost2 ' || true
tail -n 1 "$OUT/run.log"
