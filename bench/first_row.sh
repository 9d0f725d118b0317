#!/usr/bin/env bash
# Time from `qhost run` to the first printed row of a 100,000-row CSV
# (examples/csv_print.lua with compact print), on the embedded broker or, with
# QHOST_BROKER set, on that Kafka. Prints: first_row_s total_rows_s rows.
#   bench/first_row.sh [ROWS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROWS=${1:-100000}
DIR=$(mktemp -d /tmp/qhost-first-row.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
awk -v n="$ROWS" 'BEGIN { print "id,name,city,amount,ts";
  for (i = 0; i < n; i++) printf "%d,name%d,city%d,%.2f,%d\n", i, i, i % 100, (i * 7919) % 100000 / 100, 1700000000000 + i }' > "$DIR/input.csv"
sed 's/sdf:print{ metadata = true }/sdf:print{ pretty = false, metadata = true }/' \
  "$ROOT/examples/csv_print.lua" > "$DIR/app.lua"
cd "$DIR"
start=$(date +%s.%N)
"$ROOT/build/qhost" run app.lua > out.txt 2> err.txt &
pid=$!
first=""
while :; do
  if [ -z "$first" ] && [ -s out.txt ]; then first=$(date +%s.%N); fi
  if [ -n "$first" ] && [ "$(wc -l < out.txt)" -ge "$ROWS" ]; then break; fi
  kill -0 "$pid" 2>/dev/null || { echo "qhost exited early:" >&2; cat err.txt >&2; exit 1; }
  sleep 0.002
done
all=$(date +%s.%N)
kill -INT "$pid"
wait "$pid"
awk -v s="$start" -v f="$first" -v a="$all" -v n="$(wc -l < out.txt)" 'BEGIN { printf "first_row_s=%.3f all_rows_s=%.3f rows=%d\n", f - s, a - s, n }'
