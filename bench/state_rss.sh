#!/usr/bin/env bash
# State larger than memory: KEYS distinct keys (default 1,000,000) of about
# 1 KB each go through a stateful function that keeps each key's value in
# its state, on a real Kafka (tests/kafka/kafka.sh; the embedded broker would
# hold the input and the changelog in the app's own memory). Prints the
# app's peak RSS (VmHWM), the state's size on disk, the wall time, and the
# time a second instance takes to recover the whole changelog (state_dir
# deleted).
#   bench/state_rss.sh [KEYS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${1:-1000000}
QHOST=$ROOT/build/qhost
DIR=$(mktemp -d /tmp/qhost-state-rss.XXXXXX)
KDIR=$DIR/kafka
mkdir -p "$KDIR"
cleanup() { "$ROOT/tests/kafka/kafka.sh" stop "$KDIR" >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
BROKER=$("$ROOT/tests/kafka/kafka.sh" start "$KDIR")
echo "Kafka at $BROKER" >&2

cat > "$DIR/fill.lua" <<'LUA'
local qhost = require("qhost")
local app = qhost.Application{ broker_address = arg[1] }
local Fill = qhost.sources.Source:extend("Fill")
function Fill:run()
  local pad = string.rep("x", 1000)
  for i = 1, self.keys do
    self:produce{ key = string.format("key-%07d", i), value = '{"i":' .. i .. ',"blob":"' .. pad .. '"}' }
  end
end
app:add_source(Fill{ name = "fill", keys = tonumber(arg[2]) },
  app:topic("state-input", { config = qhost.TopicConfig{ num_partitions = 4 } }))
app:run()
LUA
cat > "$DIR/keep.lua" <<'LUA'
-- Keeps each key's latest value in state; counts what it has seen.
local qhost = require("qhost")
local app = qhost.Application{ broker_address = arg[1], consumer_group = arg[2], state_dir = arg[3],
  auto_offset_reset = "earliest" }
local sdf = app:dataframe(app:topic("state-input", { config = qhost.TopicConfig{ num_partitions = 4 } }))
local seen = 0
sdf = sdf:update(function(v, state)
  state:set("last", v)
  seen = seen + 1
end, { stateful = true })
-- collect = false: run{ count } would otherwise keep every output (as Quix).
app:run{ count = tonumber(arg[4]), timeout = 60, collect = false }
io.stderr:write("seen=", seen, "\n")
LUA
cd "$DIR"
t0=$(date +%s.%N)
"$QHOST" run fill.lua "$BROKER" "$KEYS" 2>fill.err
echo "input: $KEYS keys of ~1 KB in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s" >&2
/usr/bin/time -f "app_peak_rss_kb=%M wall_s=%e cpu_s=%U+%S" "$QHOST" run keep.lua "$BROKER" g1 "$DIR/state" "$KEYS" \
  2> keep.err || { tail -n 20 keep.err; exit 1; }
grep -E "seen=|app_peak_rss_kb" keep.err
echo "state_dir_bytes=$(du -sb "$DIR/state" | cut -f1)"
# Recovery: a new state_dir, same group: the whole changelog is replayed.
/usr/bin/time -f "recover_peak_rss_kb=%M recover_wall_s=%e" "$QHOST" run keep.lua "$BROKER" g1 "$DIR/state2" 1 \
  2> recover.err || { tail -n 20 recover.err; exit 1; }
grep -E "recovered from changelog|recover_peak" recover.err | sed 's/^.*INFO //'
