#!/usr/bin/env bash
# Throwaway moto server (DynamoDB, DynamoDB Streams, Kinesis basics) for the AWS adapter tests.
#   scripts/test-peers/moto.sh start   installs moto[server] into .tmp/moto-venv if missing,
#                                       starts it on a free 127.0.0.1 port and prints
#                                       `export AWS_ENDPOINT_URL=...` (plus test credentials)
#   scripts/test-peers/moto.sh stop    stops it (by its pid file)
# Use: eval "$(scripts/test-peers/moto.sh start)"
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
. scripts/test-peers/lib.sh
D="${TSUNAGU_PEER_STATE_DIR:-$PWD/.tmp}/moto"
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
  port=$(free_port)
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$D/server.log" 2>&1 &
  echo $! >"$D/pid"
  wait_for_port "$port" moto "$D/server.log"
  echo "$port" >"$D/port"
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
  # moto accepts any credentials; the SDK needs some to sign with.
  echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
}

stop_quiet() {
  stop_by_pid_file "$D"
}

case "${1:-}" in
  start) start ;;
  stop) stop_quiet ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
