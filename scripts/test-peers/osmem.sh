#!/usr/bin/env bash
# Throwaway OpenSearch-compatible server (osmem-server from PyPI, in memory, single node)
# for the OpenSearch sink tests.
#   scripts/test-peers/osmem.sh start   installs osmem-server into a venv under .tmp/ if
#                                        missing, starts it on a free port and prints
#                                        `export TSUNAGU_TEST_OPENSEARCH_URL=...`
#   scripts/test-peers/osmem.sh stop    stops it (by its pid file)
# Use: eval "$(scripts/test-peers/osmem.sh start)"
# osmem shows documents at once (no refresh delay); the tests still refresh as real
# clusters need.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
. scripts/test-peers/lib.sh
D="${TSUNAGU_PEER_STATE_DIR:-$PWD/.tmp}/osmem"
VENV="$PWD/.tmp/osmem-venv"

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2 && python3 -m venv "$VENV" >&2; }
  fi
  if ! "$VENV/bin/python" -c 'import osmem_server' 2>/dev/null; then
    echo "installing osmem-server (pip)" >&2
    "$VENV/bin/pip" install -q 'osmem-server==0.1.6' >&2
  fi
  # The wheel bundles the server binary rather than installing a console script.
  BIN=$("$VENV/bin/python" -c 'import osmem_server; print(osmem_server.resolve_binary())')
}

start() {
  install
  stop_quiet
  mkdir -p "$D"
  local port
  port=$(free_port)
  "$BIN" -addr "127.0.0.1:$port" -no-stdin-watch </dev/null >"$D/server.log" 2>&1 &
  echo $! >"$D/pid"
  wait_for_port "$port" osmem-server "$D/server.log"
  echo "$port" >"$D/port"
  echo "export TSUNAGU_TEST_OPENSEARCH_URL=http://127.0.0.1:$port"
}

stop_quiet() {
  stop_by_pid_file "$D"
}

case "${1:-}" in
  start) start ;;
  stop) stop_quiet ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
