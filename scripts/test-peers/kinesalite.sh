#!/usr/bin/env bash
# Throwaway kinesalite (an in-memory Kinesis) for the Kinesis adapter tests.
#   scripts/test-peers/kinesalite.sh start   installs kinesalite into .tmp/kinesalite (npm) if
#                                             missing, starts it on a free 127.0.0.1 port and
#                                             prints `export TSUNAGU_TEST_KINESIS_URL=...`
#   scripts/test-peers/kinesalite.sh stop    stops it (by its pid file)
# Use: eval "$(scripts/test-peers/kinesalite.sh start)"
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
. scripts/test-peers/lib.sh
D="${TSUNAGU_PEER_STATE_DIR:-$PWD/.tmp}/kinesalite-run"
PKG="$PWD/.tmp/kinesalite"

install() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq nodejs npm >&2
  fi
  if [ ! -d "$PKG/node_modules/kinesalite" ]; then
    echo "installing kinesalite into $PKG" >&2
    mkdir -p "$PKG"
    (cd "$PKG" && npm install --silent --no-audit --no-fund kinesalite@3.3.3 >&2)
  fi
}

start() {
  install
  stop_quiet
  mkdir -p "$D"
  local port
  port=$(free_port)
  # kinesalite's CLI has no host flag; this binds loopback only. Streams become ACTIVE at once.
  cat >"$D/server.js" <<JS
require('$PKG/node_modules/kinesalite')({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100})
  .listen(Number(process.argv[2]), '127.0.0.1')
JS
  node "$D/server.js" "$port" >"$D/server.log" 2>&1 &
  echo $! >"$D/pid"
  wait_for_port "$port" kinesalite "$D/server.log"
  echo "export TSUNAGU_TEST_KINESIS_URL=http://127.0.0.1:$port"
}

stop_quiet() {
  stop_by_pid_file "$D"
}

case "${1:-}" in
  start) start ;;
  stop) stop_quiet ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
