#!/usr/bin/env bash
# Installs the Debian packages qhost needs, only those missing.
#   install-deps.sh build   compiler, LuaJIT, librdkafka, libcsv, RocksDB, SQLite,
#                           libmicrohttpd (the metrics endpoint)
#   install-deps.sh test    also busted (Lua tests), Java and Maven (real Kafka),
#                           clang and its runtime libraries (libFuzzer, for tests/fuzz),
#                           curl (scrapes the metrics endpoint), luarocks and the headers
#                           of the Lua it runs on, lua5.2 (the rock's test: tests/install.sh)
set -euo pipefail

want=(gcc make pkg-config libc6-dev libluajit-5.1-dev librdkafka-dev libcsv-dev librocksdb-dev libsqlite3-dev libmicrohttpd-dev)
if [ "${1:-build}" = test ]; then
    want+=(lua-busted openjdk-17-jre-headless maven procps clang libclang-rt-14-dev curl luarocks liblua5.2-dev)
fi

missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
