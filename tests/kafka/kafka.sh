#!/usr/bin/env bash
# A real single-node Apache Kafka 4 broker (KRaft, broker+controller in one
# JVM) for tests, run from Maven Central jars (tests/kafka/pom.xml).
#
#   kafka.sh install     java 17+ and maven (apt-get if missing), jars into
#                        build/kafka/libs; quick no-op when already done
#   kafka.sh start DIR   start a broker whose files all live in DIR, on free
#                        127.0.0.1 ports; prints its bootstrap address
#                        (127.0.0.1:PORT) and writes it to DIR/broker.
#                        A DIR that already has server.properties restarts
#                        that broker with its data and ports: use a new or
#                        empty DIR for a fresh one.
#   kafka.sh stop DIR    stop the broker whose pid is in DIR/kafka.pid
#
# Several brokers may run at once, each in its own DIR.
# Environment: KAFKA_READY_TIMEOUT (seconds, default 90), KAFKA_HEAP (default
# -Xms256m -Xmx1g), MAVEN_OPTS (e.g. -Dmaven.repo.local=...) for install.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIBS=$ROOT/build/kafka/libs
STAMP=$ROOT/build/kafka/libs.pom   # the pom the jars in $LIBS came from

die() { echo "kafka.sh: $*" >&2; exit 1; }

java_major() {  # 17 for 'openjdk version "17.0.15"', 0 when there is no java
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1) || true
  echo "${v:-0}"
}

install() {
  local pkgs=()
  [ "$(java_major)" -ge 17 ] || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  if [ ${#pkgs[@]} -gt 0 ]; then
    # A fresh machine has no package lists: apt-get install would find nothing.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
    [ "$(java_major)" -ge 17 ] || die "java 17 or newer is needed, found: $(java -version 2>&1 | head -n1)"
  fi

  mkdir -p "$ROOT/build/kafka"
  # Two test runs may install at once: one copies, the other waits then skips.
  exec 9>"$ROOT/build/kafka/.lock"
  flock 9
  if ! cmp -s "$HERE/pom.xml" "$STAMP" || [ ! -d "$LIBS" ]; then
    local tmp log
    tmp=$(mktemp -d "$ROOT/build/kafka/libs.XXXXXX")
    log=$tmp.log
    if ! mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
         -DoutputDirectory="$tmp" >"$log" 2>&1; then
      cat "$log" >&2; rm -rf "$tmp" "$log"
      die "mvn could not fetch the Kafka jars"
    fi
    rm -rf "$LIBS" "$log"
    mv "$tmp" "$LIBS"
    cp "$HERE/pom.xml" "$STAMP"
  fi
  exec 9>&-
}

# A TCP port that no socket on this host uses, taken below the kernel's
# ephemeral range so that outgoing connections cannot grab it before Kafka
# binds it. Needs only bash and /proc (no python, no ss).
free_port() {
  local lo hex p
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  [ "$lo" -gt 11000 ] || lo=32768
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    hex=$(printf '%04X' "$p")
    # ":PORT " matches local and remote ports in any state: being
    # over-cautious costs nothing.
    if ! grep -q ":$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null && [ "$p" != "${1:-}" ]; then
      echo "$p"; return
    fi
  done
  die "no free port found"
}

# True while PID runs. A zombie counts as gone: `kill -0` would still succeed
# on a dead broker that its parent (or a container's init) has not reaped.
alive() {
  local state
  state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# True while PID is a live Kafka broker started for DIR; guards against a
# stale pid file whose pid the kernel has given to another process since.
is_our_broker() {
  alive "$1" &&
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $2/server.properties"
}

stop_pid() {  # TERM, up to 20 s for a clean shutdown, then KILL
  local pid=$1 dir=$2
  is_our_broker "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 200); do
    is_our_broker "$pid" "$dir" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    is_our_broker "$pid" "$dir" || return 0
    sleep 0.1
  done
  die "broker pid $pid in $dir does not die"
}

write_config() {  # DIR PORT CONTROLLER_PORT
  cat >"$1/server.properties" <<EOF
# Written by tests/kafka/kafka.sh: one node, broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$3
listeners=PLAINTEXT://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=PLAINTEXT://127.0.0.1:$2
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$1/data
num.partitions=1
auto.create.topics.enable=true
# A single broker: every internal topic gets one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer partitions than the default 50 make the first group and the first
# transaction ready sooner.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
# Tests should not wait 3 s for the first consumer group join.
group.initial.rebalance.delay.ms=0
EOF
}

# A cluster id as kafka.tools.StorageTool random-uuid makes it (base64url of
# 16 random bytes, no padding, not starting with '-'), without a JVM start.
cluster_id() {
  local id
  while :; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [ "${id:0:1}" = - ] || { echo "$id"; return; }
  done
}

start() {
  local dir=$1 port cport pid timeout=${KAFKA_READY_TIMEOUT:-90}
  install >&2
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/kafka.pid" ] && is_our_broker "$(cat "$dir/kafka.pid")" "$dir"; then
    die "a broker is already running in $dir (pid $(cat "$dir/kafka.pid"))"
  fi
  if [ ! -f "$dir/server.properties" ]; then
    port=$(free_port)
    cport=$(free_port "$port")
    write_config "$dir" "$port" "$cport"
  fi
  port=$(sed -n 's#^advertised.listeners=PLAINTEXT://127.0.0.1:##p' "$dir/server.properties")

  local cp="$LIBS/*"
  local heap jvm
  read -ra heap <<<"${KAFKA_HEAP:--Xms256m -Xmx1g}"
  jvm=(java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
       -Djava.awt.headless=true -Dlog4j2.configurationFile="$HERE/log4j2.properties")
  if [ ! -f "$dir/data/meta.properties" ]; then
    "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$(cluster_id)" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
      { cat "$dir/format.log" >&2; die "formatting $dir/data failed"; }
  fi

  : >"$dir/kafka.log"
  rm -f "$dir/broker"
  # All three fds are redirected so that $(kafka.sh start DIR) returns at once.
  "${jvm[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/kafka.pid"

  local why="not ready after ${timeout}s"
  for _ in $(seq $((timeout * 5))); do
    if grep -q 'Kafka Server started' "$dir/kafka.log"; then
      echo "127.0.0.1:$port" >"$dir/broker"
      echo "127.0.0.1:$port"
      return 0
    fi
    alive "$pid" || { why="died while starting"; break; }
    sleep 0.2
  done
  echo "kafka.sh: broker in $dir $why; end of $dir/kafka.log:" >&2
  tail -n 40 "$dir/kafka.log" >&2
  stop_pid "$pid" "$dir" || kill -KILL "$pid" 2>/dev/null || true
  exit 1
}

stop() {  # a DIR with no running broker (or no DIR at all) is not an error
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd) || return 0
  [ -f "$dir/kafka.pid" ] || return 0
  stop_pid "$(cat "$dir/kafka.pid")" "$dir"
  rm -f "$dir/kafka.pid" "$dir/broker"
}

case "${1:-}" in
  install) install ;;
  start) [ $# -eq 2 ] || die "usage: kafka.sh start DIR"; start "$2" ;;
  stop)  [ $# -eq 2 ] || die "usage: kafka.sh stop DIR"; stop "$2" ;;
  *) die "usage: kafka.sh install | start DIR | stop DIR" ;;
esac
