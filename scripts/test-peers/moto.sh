#!/usr/bin/env bash
# Throwaway moto server (DynamoDB, DynamoDB Streams, Kinesis basics) for the AWS adapter tests.
#   scripts/test-peers/moto.sh start   installs moto[server] into .tmp/moto-venv if missing,
#                                       starts it on a free 127.0.0.1 port and prints
#                                       `export AWS_ENDPOINT_URL=...` (plus test credentials)
#   scripts/test-peers/moto.sh stop    stops it (by its pid file)
# Use: eval "$(scripts/test-peers/moto.sh start)"
set -euo pipefail
cd "$(dirname "$0")/../.."
D="$PWD/.tmp/moto"
VENV="$PWD/.tmp/moto-venv"

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2 && python3 -m venv "$VENV" >&2; }
  fi
  if [ ! -x "$VENV/bin/moto_server" ]; then
    echo "installing moto[server] into $VENV" >&2
    "$VENV/bin/pip" install -q 'moto[server]==5.2.5' >&2
  fi
}

start() {
  install
  stop_quiet
  mkdir -p "$D"
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    # A refused connection means nothing listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  done
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$D/server.log" 2>&1 &
  echo $! >"$D/pid"
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port" >"$D/port"
      echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
      # moto accepts any credentials; the SDK needs some to sign with.
      echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
      return 0
    fi
    sleep 0.1
  done
  echo "moto did not start; see $D/server.log" >&2
  cat "$D/server.log" >&2 || true
  return 1
}

stop_quiet() {
  if [ -f "$D/pid" ]; then
    local pid
    pid=$(cat "$D/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$D"
}

case "${1:-}" in
  start) start ;;
  stop) stop_quiet ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
