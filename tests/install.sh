#!/usr/bin/env bash
# The two ways to install qhost, each from a fresh clone into a temporary
# prefix, end to end: the installed command runs examples/csv_print.lua
# (embedded broker) from a folder outside the clone, prints its five rows,
# and stops cleanly on SIGINT.
#   1. luarocks make qhost-<version>.rockspec --tree T   (Debian's luarocks)
#      then T/bin/qhost; luarocks remove takes the command away again
#   2. make install PREFIX=P, then P/bin/qhost
# Clones the repository this script is in (its committed HEAD). Needs the
# build packages and luarocks (tests/install-deps.sh test); no network.
# Prints "N passed, N failed" last.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/qhost-install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0

# check NAME CMD...: one test; its output goes to $WORK/NAME.log, shown on failure.
check() {
  local name=$1
  shift
  if "$@" >"$WORK/$name.log" 2>&1; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    tail -n 40 "$WORK/$name.log" | sed 's/^/    /'
    failed=$((failed + 1))
  fi
}

# runs_example QHOST: the example in a folder of its own; waits for the five
# rows (no fixed sleep), then SIGINT, which must end the run with status 0.
runs_example() {
  local qhost=$1 dir
  dir=$(mktemp -d "$WORK/run.XXXXXX")
  cp "$ROOT/examples/csv_print.lua" "$ROOT/examples/input.csv" "$dir/"
  (cd "$dir" && exec "$qhost" run csv_print.lua >out.txt 2>err.txt) &
  local pid=$! i
  for i in $(seq 1 1200); do   # 60 s at most: a hang fails, it does not block
    [ "$(grep -c '"key": "key' "$dir/out.txt" 2>/dev/null)" = 5 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -INT "$pid" 2>/dev/null
  for i in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"
  local rc=$?
  cat "$dir/err.txt"
  grep '"key": "key' "$dir/out.txt"
  [ "$rc" -eq 0 ] && [ "$(grep -c '"key": "key' "$dir/out.txt")" = 5 ]
}

check clone git clone -q "$ROOT" "$WORK/src"
cd "$WORK/src" || exit 1
ROCKSPEC=$(ls qhost-*.rockspec | head -n 1)

check luarocks_make luarocks make --tree "$WORK/tree" "$ROCKSPEC"
check rock_command_version "$WORK/tree/bin/qhost" version
check rock_command_runs_the_example runs_example "$WORK/tree/bin/qhost"
check luarocks_remove sh -c "luarocks remove --tree '$WORK/tree' qhost && [ ! -e '$WORK/tree/bin/qhost' ]"

# compiled_for_its_place DATADIR: every module of the library has its
# compiled chunk (host/bytecode.h) in DATADIR/bytecode, made for the file
# the installed command loads (its chunk name is that path).
compiled_for_its_place() {
  local datadir=$1 file module n=0
  for file in $(cd "$datadir" && find lua -name '*.lua'); do
    module=${file#lua/}; module=${module%.lua}; module=${module%/init}; module=${module//\//.}
    grep -qF "@$datadir/$file" "$datadir/bytecode/$module.ljbc" || { echo "no chunk for $file"; return 1; }
    n=$((n + 1))
  done
  echo "$n modules compiled"
  [ "$n" -gt 40 ]
}

check make_install make -s install PREFIX="$WORK/prefix"
check installed_library_is_compiled compiled_for_its_place "$WORK/prefix/share/qhost"
check installed_command_runs_the_example runs_example "$WORK/prefix/bin/qhost"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
