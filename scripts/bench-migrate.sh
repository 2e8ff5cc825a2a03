#!/usr/bin/env bash
# Migration benchmark: a thin wrapper around `tsunagu migrate bench` (see docs/benchmarks.md).
#   scripts/bench-migrate.sh ROWS [MYSQL_URL]
# TSUNAGU_BENCH_SCHEMA=original31 runs the 31-table fixture instead of the sales one.
# Without MYSQL_URL it starts the throwaway MariaDB of scripts/test-peers/mariadb.sh with a
# buffer pool of TSUNAGU_MARIADB_BUFFER_POOL (default here 4G: sized for the data, and the
# raw LOAD DATA figure uses the same server, so the comparison stays fair).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:?usage: $0 ROWS [mysql://USER@HOST:PORT/DB]}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tsunagu-target}"
cargo build --release -p tsunagu --locked >&2
BIN="$CARGO_TARGET_DIR/release/tsunagu"
if [ -n "${2:-}" ]; then
  URL=$2
else
  export TSUNAGU_MARIADB_BUFFER_POOL="${TSUNAGU_MARIADB_BUFFER_POOL:-4G}"
  MARIADB_ENV=$(scripts/test-peers/mariadb.sh start)
  eval "$MARIADB_ENV"
  trap 'scripts/test-peers/mariadb.sh stop' EXIT
  URL=${TSUNAGU_TEST_MYSQL_URL%/*}/bench
fi
SCHEMA=${TSUNAGU_BENCH_SCHEMA:-sales}
W=$PWD/.tmp/bench-$ROWS; [ "$SCHEMA" = sales ] || W=$PWD/.tmp/bench-$SCHEMA-$ROWS
rm -rf "$W"
/usr/bin/time -f "whole bench (fixture, migration, raw load): %e s wall, peak RSS %M KiB" \
  "$BIN" migrate bench --schema "$SCHEMA" --rows "$ROWS" --target "$URL" --work-dir "$W" --json "$W.json" --quiet
