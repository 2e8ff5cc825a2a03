#!/usr/bin/env bash
# Throwaway MariaDB for the migration tests.
#   scripts/test-peers/mariadb.sh start   installs MariaDB if missing, starts a server with a
#                                          fresh datadir under .tmp/mariadb on a free port, and
#                                          prints `export TSUNAGU_TEST_MYSQL_URL=...`
#   scripts/test-peers/mariadb.sh stop    stops it (by its pid file) and removes the datadir
#   scripts/test-peers/mariadb.sh install installs MariaDB if missing (before entering a
#                                          network namespace, where apt-get cannot reach out)
# TSUNAGU_MARIADB_DIR puts the server's files elsewhere than .tmp/mariadb (a second server,
# e.g. the one scripts/test-peers/falkordb.sh starts inside its network namespace).
# TSUNAGU_MARIADB_BUFFER_POOL sets the InnoDB buffer pool (default 256M; benchmarks size
# it for their data, e.g. 4G).
# Use: env=$(scripts/test-peers/mariadb.sh start) && eval "$env"
# (not `eval "$(...)"`, whose status is eval's own: a failed start would go unnoticed and
# leave an earlier TSUNAGU_TEST_MYSQL_URL in place).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
. scripts/test-peers/lib.sh
D="${TSUNAGU_MARIADB_DIR:-$PWD/.tmp/mariadb}"

install() {
  if ! command -v mariadbd >/dev/null 2>&1 || ! command -v mariadb-install-db >/dev/null 2>&1; then
    echo "installing mariadb-server (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq mariadb-server mariadb-client >&2
  fi
}

start() {
  install
  stop_quiet
  mkdir -p "$D"
  mariadb-install-db --no-defaults --user=root --datadir="$D/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$D/install.log" 2>&1
  local port
  port=$(free_port)
  mariadbd --no-defaults --user=root --datadir="$D/data" --socket="$D/sock" --pid-file="$D/pid" \
    --bind-address=127.0.0.1 --port="$port" --local-infile=1 --skip-name-resolve \
    --innodb-buffer-pool-size="${TSUNAGU_MARIADB_BUFFER_POOL:-256M}" --innodb-flush-log-at-trx-commit=2 \
    --log-error="$D/err.log" >/dev/null 2>&1 &
  local pid=$!
  # Up to 120 s: a shared machine under a build can take that long to start InnoDB. A
  # server that exits meanwhile is reported at once.
  for _ in $(seq 1 1200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
      mariadb-admin --no-defaults --socket="$D/sock" -uroot ping >/dev/null 2>&1; then
      echo "$port" >"$D/port"
      echo "export TSUNAGU_TEST_MYSQL_URL=mysql://root@127.0.0.1:$port/tsunagu_test"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "mariadb did not start on 127.0.0.1:$port; see $D/err.log" >&2
  cat "$D/err.log" >&2 || true
  return 1
}

stop_quiet() {
  stop_by_pid_file "$D"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_quiet ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
