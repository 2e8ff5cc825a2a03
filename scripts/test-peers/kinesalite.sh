#!/usr/bin/env bash
# Throwaway kinesalite (an in-memory Kinesis) for the Kinesis adapter tests.
#   scripts/test-peers/kinesalite.sh start   installs kinesalite into .tmp/kinesalite (npm) if
#                                             missing, starts it on a free 127.0.0.1 port and
#                                             prints `export TSUNAGU_TEST_KINESIS_URL=...`
#   scripts/test-peers/kinesalite.sh stop    stops it (by its pid file)
# Use: eval "$(scripts/test-peers/kinesalite.sh start)"
set -euo pipefail
cd "$(dirname "$0")/../.."
D="$PWD/.tmp/kinesalite-run"
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
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  done
  # kinesalite's CLI has no host flag; this binds loopback only. Streams become ACTIVE at once.
  cat >"$D/server.js" <<JS
require('$PKG/node_modules/kinesalite')({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100})
  .listen(Number(process.argv[2]), '127.0.0.1')
JS
  node "$D/server.js" "$port" >"$D/server.log" 2>&1 &
  echo $! >"$D/pid"
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "export TSUNAGU_TEST_KINESIS_URL=http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "kinesalite did not start; see $D/server.log" >&2
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
