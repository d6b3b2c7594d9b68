#!/usr/bin/env bash
# A single-node Apache Kafka 4.x broker (KRaft, combined broker + controller) on 127.0.0.1,
# from jars that Maven fetches from Maven Central into a cache outside git. One script for
# tests, CI and the demo.
#
#   scripts/kafka.sh start DIR [PORT]   format DIR once (kept across restarts), start, wait until it answers
#   scripts/kafka.sh stop DIR           stop by PID, wait for the port to close (SIGKILL after 30 s)
#   scripts/kafka.sh cluster DIR [N]    N (default 3) combined KRaft nodes in DIR/node1..N: replication N,
#                                       min.insync.replicas N-1; DIR/bootstrap lists them. A node is
#                                       stopped, killed and restarted on its own: start|stop DIR/nodeI
#   scripts/kafka.sh cluster-stop DIR   stop every node of a cluster
#   scripts/kafka.sh jars               only fetch the jars
#
# DIR gets server.properties, data/, kafka.log, kafka.pid, kafka.port (a cluster node also
# cluster.env: its node id, the quorum and the replication settings).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")
LIB=${FINSENT_KAFKA_LIB:-${XDG_CACHE_HOME:-$HOME/.cache}/finsent/kafka-$KAFKA_VERSION}
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
port_open() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',int(sys.argv[1])),0.3)" "$1" 2>/dev/null; }

jars() {
  [ -f "$LIB/.complete" ] && return 0
  mkdir -p "$LIB"
  mvn -q -B -f "$HERE/kafka/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DoutputDirectory="$LIB" -DincludeScope=runtime
  touch "$LIB/.complete"
}

write_config() {  # DIR PORT CPORT
  local node=1 voters="1@127.0.0.1:$3" rf=1 isr=1
  # shellcheck disable=SC1091
  [ -f "$1/cluster.env" ] && . "$1/cluster.env"
  cat > "$1/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=PLAINTEXT://127.0.0.1:$2
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$1/data
num.partitions=4
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
default.replication.factor=$rf
min.insync.replicas=$isr
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
}

jvm_opts() {
  echo ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$1" -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties"
}

start() {
  local dir port cport
  dir=$(mkdir -p "$1" && cd "$1" && pwd)
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    echo "kafka already running: pid $(cat "$dir/kafka.pid") port $(cat "$dir/kafka.port")"; return 0
  fi
  jars
  # a second start reuses the data and the ports it was formatted with
  # (a cluster node's ports are chosen by `cluster`, before its first start)
  if [ -f "$dir/ports" ] && { [ -f "$dir/data/meta.properties" ] || [ -f "$dir/cluster.env" ]; }; then read -r port cport < "$dir/ports"
  else port=${2:-$(free_port)}; cport=$(free_port); echo "$port $cport" > "$dir/ports"; fi
  write_config "$dir" "$port" "$cport"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cid
    # shellcheck disable=SC1091
    [ -f "$dir/cluster.env" ] && . "$dir/cluster.env"
    [ -n "${cluster_id:-}" ] && cid=$cluster_id || cid=$(python3 -c "import uuid,base64; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('='))")
    # --cluster-id=ID, not "-t ID": an id may begin with '-' and would be read as an option
    # shellcheck disable=SC2046
    java $(jvm_opts "$dir") -cp "$LIB/*" kafka.tools.StorageTool format --cluster-id="$cid" -c "$dir/server.properties" \
      > "$dir/format.log" 2>&1 || { cat "$dir/format.log"; exit 1; }
  fi
  # shellcheck disable=SC2046
  nohup java $(jvm_opts "$dir") -cp "$LIB/*" kafka.Kafka "$dir/server.properties" > "$dir/kafka.log" 2>&1 &
  echo $! > "$dir/kafka.pid"; echo "$port" > "$dir/kafka.port"
  local t0=$SECONDS
  for _ in $(seq 1 900); do
    if port_open "$port"; then echo "kafka $KAFKA_VERSION up: pid $(cat "$dir/kafka.pid") 127.0.0.1:$port ($((SECONDS - t0)) s)"; return 0; fi
    kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null || { echo "kafka died:"; tail -40 "$dir/kafka.log"; exit 1; }
    sleep 0.1
  done
  echo "kafka not listening after 90 s"; tail -40 "$dir/kafka.log"; exit 1
}

stop() {
  local dir=$1 pid port
  [ -f "$dir/kafka.pid" ] || return 0
  pid=$(cat "$dir/kafka.pid"); port=$(cat "$dir/kafka.port" 2>/dev/null || echo 0)
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do port_open "$port" || break; sleep 0.1; done
  rm -f "$dir/kafka.pid"
}

cluster() {  # DIR N: write each node's ports and cluster.env, then start them together
  local dir n cid voters="" i
  dir=$(mkdir -p "$1" && cd "$1" && pwd); n=${2:-3}
  jars
  if [ ! -f "$dir/node1/cluster.env" ]; then
    cid=$(python3 -c "import uuid,base64; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('='))")
    for i in $(seq 1 "$n"); do mkdir -p "$dir/node$i"; echo "$(free_port) $(free_port)" > "$dir/node$i/ports"; done
    for i in $(seq 1 "$n"); do voters="$voters${voters:+,}$i@127.0.0.1:$(cut -d' ' -f2 "$dir/node$i/ports")"; done
    for i in $(seq 1 "$n"); do
      printf 'node=%s\nvoters=%s\nrf=%s\nisr=%s\ncluster_id=%s\n' "$i" "$voters" "$n" "$((n > 1 ? n - 1 : 1))" "$cid" \
        > "$dir/node$i/cluster.env"
    done
  fi
  # a node waits for a quorum before it listens: start all, then wait for each
  for i in $(seq 1 "$n"); do start "$dir/node$i" > "$dir/node$i/start.log" 2>&1 & done
  wait
  for i in $(seq 1 "$n"); do cat "$dir/node$i/start.log"; grep -q " up: \|already running" "$dir/node$i/start.log" || exit 1; done
  for i in $(seq 1 "$n"); do echo "127.0.0.1:$(cut -d' ' -f1 "$dir/node$i/ports")"; done | paste -sd, > "$dir/bootstrap"
  echo "cluster of $n: $(cat "$dir/bootstrap")"
}

case "${1:-}" in
  start) start "${2:?DIR}" "${3:-}" ;;
  stop) stop "${2:?DIR}" ;;
  cluster) cluster "${2:?DIR}" "${3:-3}" ;;
  cluster-stop) for d in "${2:?DIR}"/node*; do stop "$d" & done; wait ;;
  jars) jars ;;
  *) echo "usage: $0 start DIR [PORT] | stop DIR | cluster DIR [N] | cluster-stop DIR | jars" >&2; exit 2 ;;
esac
