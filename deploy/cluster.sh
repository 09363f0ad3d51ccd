#!/usr/bin/env bash
# Try the README's several-node deployment on one machine: Redis (AOF, loopback), three
# nodes and nginx (deploy/nginx.conf), each with a PID file and a log under $RUN_DIR.
#
#   deploy/cluster.sh start     # Redis, nodes 8001-8003, nginx on 127.0.0.1:$FRONT_PORT
#   deploy/cluster.sh restart   # rolling: SIGTERM one node, wait for its exit, start it, wait /readyz
#   deploy/cluster.sh stop      # every process by its PID file
#
# Needs redis-server and nginx (apt-get install redis-server nginx-light) and the venv.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/run}
FRONT_PORT=${FRONT_PORT:-8080}
REDIS_PORT=${REDIS_PORT:-6379}
NODES=(8001 8002 8003)

wait_ready() {  # wait_ready URL
  for _ in $(seq 1 600); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2
  return 1
}

stop_pid() {  # stop_pid FILE: SIGTERM, then wait for the exit
  [ -s "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if kill -TERM "$pid" 2>/dev/null; then
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$1"
}

start_node() {  # start_node PORT
  CIDADAO_STORE=redis CIDADAO_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
  CIDADAO_JWT_SECRET="$(cat "$RUN_DIR/jwt-secret")" \
    nohup "$ROOT/.venv/bin/cidadao-trio" serve --host 127.0.0.1 --port "$1" --node-name "node-$1" \
      --drain-timeout 20 >>"$RUN_DIR/node-$1.log" 2>&1 &
  echo $! >"$RUN_DIR/node-$1.pid"
}

start() {
  mkdir -p "$RUN_DIR/redis"
  [ -s "$RUN_DIR/jwt-secret" ] || (umask 077; openssl rand -hex 32 >"$RUN_DIR/jwt-secret")
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --appendonly yes --appendfsync everysec --dir "$RUN_DIR/redis" \
    --daemonize yes --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log"
  for port in "${NODES[@]}"; do start_node "$port"; done
  sed -e "s|/run/cidadao/|$RUN_DIR/|g" -e "s|/var/log/cidadao/|$RUN_DIR/|g" \
      -e "s|listen 80;|listen 127.0.0.1:$FRONT_PORT;|" "$ROOT/deploy/nginx.conf" >"$RUN_DIR/nginx.conf"
  for port in "${NODES[@]}"; do wait_ready "http://127.0.0.1:$port/readyz"; done
  nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR"
  wait_ready "http://127.0.0.1:$FRONT_PORT/readyz"
  echo "cluster up: ws://127.0.0.1:$FRONT_PORT/ (logs and PIDs in $RUN_DIR)"
}

restart() {
  for port in "${NODES[@]}"; do
    stop_pid "$RUN_DIR/node-$port.pid"
    start_node "$port"
    wait_ready "http://127.0.0.1:$port/readyz"
    echo "node-$port restarted"
  done
}

stop() {
  stop_pid "$RUN_DIR/nginx.pid"
  for port in "${NODES[@]}"; do stop_pid "$RUN_DIR/node-$port.pid"; done
  stop_pid "$RUN_DIR/redis.pid"
  echo "cluster stopped"
}

case "${1:-}" in
  start) start ;;
  restart) restart ;;
  stop) stop ;;
  *) echo "usage: $0 start|restart|stop" >&2; exit 2 ;;
esac
