#!/usr/bin/env bash
# Peak memory of a CSVSource streaming a large CSV (default 1 GiB) into the
# embedded broker (or QHOST_BROKER), as a standalone source: the source
# process's peak RSS (its own /proc VmHWM, logged at DEBUG) and the app's.
#   bench/csv_rss.sh [MiB]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIB=${1:-1024}
DIR=$(mktemp -d /tmp/qhost-csv-rss.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
awk -v bytes=$((MIB * 1024 * 1024)) 'BEGIN { print "id,name,city,amount,ts,note"; n = 0;
  for (i = 0; n < bytes; i++) { line = sprintf("%d,name%d,city%d,%.2f,%d,\"note, with a comma %d\"", i, i, i % 100, (i * 7919) % 100000 / 100, 1700000000000 + i, i); print line; n += length(line) + 1 } }' > "$DIR/big.csv"
cat > "$DIR/app.lua" <<'LUA'
local qhost = require("qhost")
local app = qhost.Application{ loglevel = "DEBUG" }
app:add_source(qhost.sources.CSVSource{ path = "big.csv", name = "big" })
app:run()
LUA
cd "$DIR"
rows=$(($(wc -l < big.csv) - 1))
/usr/bin/time -f "app_peak_rss_kb=%M wall_s=%e" "$ROOT/build/qhost" run app.lua 2> err.txt
grep -o "peak RSS [0-9]* kB" err.txt | sed 's/^/source /'
grep "app_peak_rss_kb" err.txt
echo "csv_bytes=$(stat -c %s big.csv) rows=$rows"
