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
D="$PWD/.tmp/osmem"
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
  while :; do
    port=$((20000 + RANDOM % 40000))
    # A refused connection means nothing listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  done
  "$BIN" -addr "127.0.0.1:$port" -no-stdin-watch </dev/null >"$D/server.log" 2>&1 &
  echo $! >"$D/pid"
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port" >"$D/port"
      echo "export TSUNAGU_TEST_OPENSEARCH_URL=http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "osmem-server did not start; see $D/server.log" >&2
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
